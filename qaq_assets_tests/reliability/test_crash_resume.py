"""Kill -9 in the middle of scoring a shard; the rerun redoes nothing committed, loses nothing,
duplicates nothing, and curates exactly what an uninterrupted run curates."""

import os
import random
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, QAQ_SCORES, SCORE_CACHE, TOKEN_LOGPROBS
from qaq_assets_tests.helpers import LAST_LINE, TINY, qaq, write_jsonl

SAMPLES = 600
COMMIT_EVERY = 25


def big_shard(path):
    rng = random.Random(7)
    words = "parse the list of values and return a sorted dictionary keyed by name with counts".split()
    records = []
    for i in range(SAMPLES):
        query = f"Task {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        body = "\n".join(f"    x{j} = {rng.randint(0, 99)}" for j in range(rng.randint(2, 12)))
        answer = f"def f{i}(xs):\n{body}\n    return sorted(xs)"  # uses its parameter: no signature check drops it
        records.append({"instruction": query, "response": answer})
    return write_jsonl(path, records)


def curate_command(shard, lake):
    return [
        sys.executable,
        "-m",
        "qaq_assets.cli",
        "curate",
        str(shard),
        "--lake",
        str(lake),
        "--model",
        TINY,
        "--template",
        "plain",
        "--dtype",
        "float32",
        "--commit-every",
        str(COMMIT_EVERY),
        "--forward",
        "fused-eager",  # compiling is tested elsewhere; here it would only cost each process seconds
    ]


def environment():
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def committed_appends(lake_dir) -> int:
    log = lake_dir / SCORE_CACHE.name / "_delta_log"
    return max(len(list(log.glob("*.json"))) - 1, 0) if log.is_dir() else 0


def run_to_end(command):
    done = qaq(*command[3:])  # in this process: only the killed run needs its own
    assert done.returncode == 0, done.stderr[-3000:]
    return [int(v) for v in LAST_LINE.match(done.stdout.strip().splitlines()[-1]).groups()]


@pytest.mark.slow
def test_sigkill_mid_scoring_then_resume(tmp_path):
    shard = big_shard(tmp_path / "big.jsonl")
    lake_dir = tmp_path / "lake"
    process = subprocess.Popen(
        curate_command(shard, lake_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment()
    )
    deadline = time.time() + 300
    while committed_appends(lake_dir) < 3:
        if process.poll() is not None:
            pytest.fail("the run finished before it could be killed; make the shard larger")
        assert time.time() < deadline, "no score-cache commit within 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()

    lake = Lake(lake_dir)
    committed = lake.scan(SCORE_CACHE).select(pl.len()).collect().item()
    assert committed % COMMIT_EVERY == 0 and 3 * COMMIT_EVERY <= committed < SAMPLES
    # Nothing partial is visible downstream: a shard's rows appear in one commit or not at all.
    for table in (TOKEN_LOGPROBS, QAQ_SCORES, CURATED_SUBSET):
        assert lake.scan(table).select(pl.len()).collect().item() == 0

    samples_in, scored, _, kept, _ = run_to_end(curate_command(shard, lake_dir))
    # The file was ingested before the kill and is unchanged: it is not read again, and the
    # committed chunks are not scored again.
    assert samples_in == 0 and scored == SAMPLES - committed
    assert lake.scan(SCORE_CACHE).select(pl.len()).collect().item() == SAMPLES
    logprobs = lake.scan(TOKEN_LOGPROBS).collect()
    assert logprobs.height == SAMPLES and logprobs["sample_id"].is_unique().all()

    reference_dir = tmp_path / "uninterrupted"
    assert run_to_end(curate_command(shard, reference_dir))[1] == SAMPLES
    reference = Lake(reference_dir)
    columns = ["sample_id", "decision", "reason", "rmi"]
    resumed = lake.scan(CURATED_SUBSET).select(columns).sort("sample_id").collect()
    assert resumed.equals(reference.scan(CURATED_SUBSET).select(columns).sort("sample_id").collect())
    assert kept == resumed.filter(pl.col("decision") == "keep").height == 150
