"""What tests across the tree share: the tiny model, small code pairs, and ways to write
shards, run the graph and run ``qaq`` in process. Fixtures live in ``conftest.py``."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl

from qaq_assets.cli import main
from qaq_assets.definitions import build_assets, build_resources
from qaq_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, SHARDS
from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.ingest.registry import ShardRegistrationError, check, record, shard_files
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.lake import Lake, storage_options_exported

REPO = Path(__file__).resolve().parent.parent  # the repository root
TINY = "tiny=random:tiny-llama:0"
# The tiny model as `qaq` flags: exact float32 numbers, no compile step.
TINY_FLAGS = ["--model", TINY, "--template", "plain", "--dtype", "float32", "--forward", "fused-eager"]

# torch.compile on CPU needs a C++ compiler (.ci/run installs g++). Without one the fused
# forward runs its element-wise steps eagerly, and says so.
HAS_CXX = bool(shutil.which(os.environ.get("CXX") or "g++") or shutil.which("clang++"))
FUSED_FORWARD = "fused, compiled element-wise steps" if HAS_CXX else "fused, eager element-wise steps"

CODE_PAIRS = [
    ("Write a function add(a, b) that returns the sum of a and b.", "def add(a, b):\n    return a + b"),
    ("Reverse the string s.", "def reverse(s):\n    return s[::-1]"),
    ("Return the largest element of a non-empty list.", "def largest(xs):\n    return max(xs)"),
    ("Count the words in a text.", "def count_words(text):\n    return len(text.split())"),
    ("Check whether n is even.", "def is_even(n):\n    return n % 2 == 0"),
    ("Square every number in a list.", "def squares(xs):\n    return [x * x for x in xs]"),
    ("Join a list of strings with commas.", "def join(items):\n    return ','.join(items)"),
    ("Return the factorial of n.", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)"),
    ("Flatten a list of lists.", "def flatten(xss):\n    return [x for xs in xss for x in xs]"),
    ("Remove duplicates, keeping order.", "def dedup(xs):\n    return list(dict.fromkeys(xs))"),
    ("Sum the digits of n.", "def digit_sum(n):\n    return sum(int(d) for d in str(n))"),
    ("Capitalise every word.", "def title(text):\n    return text.title()"),
]


def rows_of(lake, scoring) -> pl.DataFrame:
    """A shard scoring's token_logprobs rows with their log-prob lists (read from ``lake``'s score
    cache), in sample order, without when they were scored (which differs between lakes)."""
    from qaq_assets.lib.scoring.token_lists import with_token_lists

    return with_token_lists(lake, scoring.token_logprobs).drop("scored_at").sort("sample_id")


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def register_files(lake: Lake, paths: list, replace_shard: bool = False) -> list[str]:
    """Record each file as a shard (one file = one shard), all or nothing, as the CLI and the
    sensor do before a run; raises :class:`ShardRegistrationError` naming the first file refused."""
    files, failures = shard_files(paths)
    accepted, refused = check(lake, files, replace_shard)
    failures |= refused
    if failures:
        raise ShardRegistrationError(next(iter(failures.values())))
    return record(lake, accepted)


def graph(lake, models=(TINY,), **settings):
    """The four assets and their resources, for a lake and models (``settings``: others)."""
    settings = Settings(
        lake=lake.root,
        models=models,
        template="plain",
        device="cpu",
        dtype="float32",
        storage_options=lake.storage_options or {},
        **settings,
    )
    return build_resources(settings), build_assets(settings)


def materialize_all(
    lake, paths, models=(TINY,), instance=None, budget=0.25, allow_shrink=False, scoring=None, **ingest
):
    """Register files, then materialize every asset partition with dagster.materialize()
    (storage options reach the runs through the environment, as in a deployment); ``scoring``:
    settings of the resources; ``ingest``: further settings of the ingest's run config."""
    with storage_options_exported(lake.storage_options or {}):
        return _materialize_all(
            lake, paths, models, instance, budget, {"allow_shrink": allow_shrink, **ingest}, scoring or {}
        )


def _materialize_all(lake, paths, models, instance, budget, ingest_settings, scoring):
    instance = instance or dg.DagsterInstance.ephemeral()
    resources, assets = graph(lake, models, **scoring)
    raw, token_logprobs, qaq_scores, curated = assets
    shards = register_files(lake, paths)
    instance.add_dynamic_partitions(SHARDS, shards)
    for shard in shards:
        ingest = {"ops": {"raw_samples": {"config": ingest_settings}}}
        assert dg.materialize(
            [raw], partition_key=shard, instance=instance, resources=resources, run_config=ingest
        ).success
        for model in models:
            key = dg.MultiPartitionKey({"shard": shard, "model": model.split("=")[0]})
            result = dg.materialize(
                [token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources
            )
            assert result.success
    result = dg.materialize(
        [curated],
        instance=instance,
        resources=resources,
        run_config={"ops": {"curated_subset": {"config": {"budget": budget}}}},
    )
    assert result.success
    return instance, result


def tick(sensor, instance, lake, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(root=lake.root)}
    )
    return sensor(context)


def requested_shards(result) -> list[str]:
    """The shards a landing-sensor tick asks to ingest, in order: single partitions and the
    ranges of batches (over the partitions as the tick adds them)."""
    added = [key for request in result.dynamic_partitions_requests for key in request.partition_keys]
    shards = []
    for request in result.run_requests:
        if request.partition_key is not None:
            shards.append(request.partition_key)
        else:
            first, last = request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
            shards += added[added.index(first) : added.index(last) + 1]
    return shards


def age(path, seconds=60):
    past = time.time() - seconds
    os.utime(path, (past, past))


LAST_LINE = re.compile(r"^samples_in=(\d+) samples_scored=(\d+) tokens_scored=(\d+) kept=(\d+) quarantined=(\d+)$")


def qaq(*args, env_extra=None) -> subprocess.CompletedProcess:
    """Run ``qaq ARGS`` through its entry point in this process (no DAGSTER_HOME unless given):
    exit status and what it printed, as a subprocess would report them. Tests of signals and
    kills start real processes instead."""
    saved = dict(os.environ)
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.update(env_extra or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(arg) for arg in args])
            except SystemExit as exit_:  # argparse's usage errors
                status = exit_.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def pair_records(items=CODE_PAIRS, prefix="") -> list[dict]:
    return [{"instruction": prefix + q, "response": a} for q, a in items]


def dagster_home(tmp_path) -> Path:
    """A DAGSTER_HOME whose gpu pool has one slot, as the CLI's runs use it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    return home


def spawn_curate(env, *args) -> subprocess.Popen:
    """``qaq curate ARGS`` with the tiny model in a real process (for kills and signals)."""
    return subprocess.Popen(
        [sys.executable, "-m", "qaq_assets.cli", "curate", *map(str, args), *TINY_FLAGS, "--commit-every", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def graphql(port: int, query: str) -> dict:
    """A Dagster webserver's GraphQL answer (its ``data``) on loopback."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]
