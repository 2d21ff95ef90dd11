"""Nothing lost, nothing passed off as success: a shrunken file, a stale cache key, a partial
corpus, bad settings, a torn output file, lake and disk faults, two lakes on one instance."""

import json
import os
import re
import shutil
import subprocess
import sys

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest

from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, RAW_SAMPLES, SHARD_SOURCES
from qaq_assets.runner.curate import failure_message
from qaq_assets_tests.helpers import CODE_PAIRS, LAST_LINE, TINY, TINY_FLAGS, qaq, register_files, write_jsonl


def records(prefix, pairs=CODE_PAIRS):
    return [{"instruction": f"{prefix} {q}", "response": a} for q, a in pairs]


def last_line(result):
    return LAST_LINE.match(result.stdout.strip().splitlines()[-1]).groups()


# 1. A cut or emptied file never silently shrinks its shard.


@pytest.mark.slow  # runs the qaq command in processes
def test_a_truncated_or_emptied_file_is_refused_and_the_others_go_on(tmp_path):
    lake_dir = tmp_path / "lake"
    a = write_jsonl(tmp_path / "a.jsonl", records("a"))
    b = write_jsonl(tmp_path / "b.jsonl", records("b"))
    assert qaq("curate", a, b, "--lake", lake_dir, *TINY_FLAGS).returncode == 0
    lake = Lake(lake_dir)
    held = lake.scan(RAW_SAMPLES).group_by("shard").len().sort("shard").collect().rows()
    kept_before = lake.scan(CURATED_SUBSET).filter(pl.col("decision") == "keep").collect().height

    data = a.read_bytes()
    a.write_bytes(data[: int(len(data) * 0.4)])  # an interrupted copy: 40% and half a line
    b.write_text(b.read_text() + json.dumps({"instruction": "b new", "response": "def n():\n    return 1"}) + "\n")
    result = qaq("curate", a, b, "--lake", lake_dir, *TINY_FLAGS)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "shard 'a'" in line]
    assert f"{a} now yields 4 valid records, the lake holds 12" in line and "--allow-shrink" in line
    assert "shards failed: a" in result.stdout
    after = dict(lake.scan(RAW_SAMPLES).group_by("shard").len().collect().rows())
    assert after == {"a": 12, "b": 13}  # a untouched, b grew: growing is an update
    assert lake.scan(CURATED_SUBSET).collect().height == 25

    a.write_text("")
    assert qaq("curate", a, "--lake", lake_dir, *TINY_FLAGS).returncode == 2  # its only file failed: nothing usable
    assert dict(lake.scan(RAW_SAMPLES).group_by("shard").len().collect().rows())["a"] == 12

    # On purpose: accepted and recorded.
    result = qaq("curate", a, "--lake", lake_dir, "--allow-shrink", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "a" not in dict(lake.scan(RAW_SAMPLES).group_by("shard").len().collect().rows())
    source = lake.scan(SHARD_SOURCES).filter(pl.col("shard") == "a").collect().row(0, named=True)
    assert (source["shrunk_from"], source["shrunk_to"]) == (12, 0) and source["shrunk_at"] is not None
    assert held == [("a", 12), ("b", 12)] and kept_before == 6


def test_ingest_refuses_a_file_that_changed_since_it_was_registered(tmp_path, lake):
    from qaq_assets.lib.ingest.registry import source_paths
    from qaq_assets_tests.helpers import register_files

    path = write_jsonl(tmp_path / "s.jsonl", records("s"))
    register_files(lake, [path])
    assert source_paths(lake, ["s"]) == ({"s": path.resolve()}, {})
    with open(path, "a") as handle:  # a writer still appending
        handle.write('{"instruction": "half')
    paths, refused = source_paths(lake, ["s"])
    assert paths == {} and re.search(
        r"changed since it was registered as shard 's' \(\d+ -> \d+ bytes", str(refused["s"])
    )


# 2. Every setting that changes a stored number keys the score cache and is in the lineage.


def test_the_sequence_limit_keys_the_cache_and_the_lineage(tmp_path):
    lake_dir = tmp_path / "lake"
    shard = write_jsonl(tmp_path / "d4.jsonl", records("d4"))
    short = qaq("curate", shard, "--lake", lake_dir, *TINY_FLAGS, "--max-sequence-tokens", "64")
    assert short.returncode == 0 and last_line(short)[1] == "12"
    again = qaq("curate", shard, "--lake", lake_dir, *TINY_FLAGS)  # the default, 2048: scored again
    assert again.returncode == 0 and last_line(again)[1] == "12", again.stdout
    same = qaq("curate", shard, "--lake", lake_dir, *TINY_FLAGS)
    assert last_line(same)[1] == "0"
    lineage = json.loads(qaq("lineage", "--lake", lake_dir).stdout)
    assert [model["max_sequence_tokens"] for model in lineage["models"]] == [2048]
    short_lineage = json.loads(qaq("lineage", "--lake", lake_dir, "--version", 1).stdout)
    assert [model["max_sequence_tokens"] for model in short_lineage["models"]] == [64]


# 3. A curation never publishes part of the corpus as the latest version.


def test_a_new_model_scores_every_shard_before_it_curates(tmp_path):
    lake_dir = tmp_path / "lake"
    paths = [write_jsonl(tmp_path / f"d{i}.jsonl", records(f"d{i}", CODE_PAIRS[:6])) for i in (1, 2, 3)]
    assert qaq("curate", *paths[:2], "--lake", lake_dir, *TINY_FLAGS).returncode == 0
    other = [*TINY_FLAGS[:1], "other=random:tiny-llama:1", *TINY_FLAGS[2:]]
    result = qaq("curate", paths[2], "--lake", lake_dir, *other)
    assert result.returncode == 0, result.stderr
    assert "also scoring 2 shard(s) curated earlier" in result.stdout
    assert last_line(result)[1] == "18"  # the earlier shards too, with the new model
    curated = Lake(lake_dir).scan(CURATED_SUBSET).collect()
    assert sorted(curated["shard"].unique()) == ["d1", "d2", "d3"] and set(curated["model_key"]) == {"other"}


def test_a_curation_that_would_leave_shards_out_is_refused_unless_asked(tmp_path, monkeypatch):
    from qaq_assets.lib.scoring import shard_scoring

    lake_dir = tmp_path / "lake"
    paths = [write_jsonl(tmp_path / f"d{i}.jsonl", records(f"d{i}", CODE_PAIRS[:6])) for i in (1, 2)]
    assert qaq("curate", *paths, "--lake", lake_dir, *TINY_FLAGS).returncode == 0
    real = shard_scoring.score_partition

    def fail_for_d2(lake, shards, *args, **kwargs):
        if "d2" in ([shards] if isinstance(shards, str) else shards):
            raise RuntimeError("the GPU fell off the bus")
        return real(lake, shards, *args, **kwargs)

    monkeypatch.setattr(shard_scoring, "score_partition", fail_for_d2)
    monkeypatch.setattr("qaq_assets.defs.scoring.assets.score_partition", fail_for_d2)
    other = [*TINY_FLAGS[:1], "other=random:tiny-llama:1", *TINY_FLAGS[2:]]
    versions = Lake(lake_dir).version(CURATED_SUBSET)
    refused = qaq("curate", paths[0], "--lake", lake_dir, *other)
    assert refused.returncode == 2
    assert "left out of the curation (not scored by every model): d2" in refused.stdout
    assert "1 shard(s) lack scores from a configured model: d2 (other); nothing was published" in refused.stderr
    assert Lake(lake_dir).version(CURATED_SUBSET) == versions
    allowed = qaq("curate", paths[0], "--lake", lake_dir, *other, "--allow-partial")
    assert allowed.returncode == 1  # d2's scoring failed, and says so
    assert "left out of the curation (not scored by every model): d2" in allowed.stdout
    curated = Lake(lake_dir).scan(CURATED_SUBSET).collect()
    assert sorted(curated["shard"].unique()) == ["d1"]
    assert json.loads(qaq("lineage", "--lake", lake_dir).stdout)["selection_config"]["allow_partial"] is True


def test_the_curation_asset_refuses_a_partial_corpus(tmp_path, lake):
    from qaq_assets.defs.partitions import SHARDS
    from qaq_assets_tests.helpers import graph, register_files

    instance = dg.DagsterInstance.ephemeral()
    resources, (raw, token_logprobs, qaq_scores, curated) = graph(lake)
    shards = register_files(lake, [write_jsonl(tmp_path / f"p{i}.jsonl", records(f"p{i}")) for i in (1, 2)])
    instance.add_dynamic_partitions(SHARDS, shards)
    for shard in shards:
        assert dg.materialize([raw], partition_key=shard, instance=instance, resources=resources).success
    key = dg.MultiPartitionKey({"shard": "p1", "model": "tiny"})
    assert dg.materialize(
        [token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources
    ).success
    result = dg.materialize([curated], instance=instance, resources=resources, raise_on_error=False)
    assert not result.success and lake.version(CURATED_SUBSET) is None
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "p2 (tiny)" in failure.step_failure_data.error.cause.message
    partial = {"ops": {"curated_subset": {"config": {"allow_partial": True}}}}
    assert dg.materialize([curated], instance=instance, resources=resources, run_config=partial).success
    assert set(lake.scan(CURATED_SUBSET).collect()["shard"]) == {"p1"}


# 4. Settings are checked before any work.


@pytest.mark.parametrize(
    ("flags", "cause"),
    [
        (["--budget", "25"], "--budget (QAQ_BUDGET) must be in (0, 1], not 25.0"),
        (["--budget", "nan"], "--budget (QAQ_BUDGET) must be a finite number"),
        (["--strata", "0"], "--strata (QAQ_STRATA) must be in [1, 10000], not 0"),
        (["--strategy", "diff"], "--strategy diff needs two models"),
        (["--commit-every", "-1"], "--commit-every (QAQ_COMMIT_EVERY) must be in [0, 16777216], not -1"),
        (["--near-duplicate-threshold", "nan"], "must be a finite number"),
        (["--near-duplicate-threshold", "0"], "must be >= 0.5, not 0.0"),
        (["--max-sequence-tokens", "10"], "must be in [64, 1048576], not 10"),
        (["--device", "gpu"], "--device (QAQ_DEVICE) must match"),
        (["--model", "m=/no/such/model"], "model spec '/no/such/model' is not a bundled alias"),
        (["--model", "hf:nobody/nothing"], "model hf:nobody/nothing: not in the local Hugging Face cache"),
        (["--decontaminate", "/nonexistent.jsonl"], "--decontaminate /nonexistent.jsonl: "),
        (["--max-sequence-tokens", "3000000000"], "must be in [64, 1048576], not 3000000000"),
        # The bundled model's chat template takes 51 of 64 tokens: no room for a query and an answer.
        (
            ["--model", "smollm2-135m", "--max-sequence-tokens", "64"],
            "too little room for a query and a 16-token answer",
        ),
        (["QAQ_COMMIT_EVERY=1e20"], "QAQ_COMMIT_EVERY='1e20': expected int"),
        (["QAQ_COMMIT_EVERY=100000000000000000000"], "must be in [0, 16777216]"),
        (["QAQ_SCORING_OP_TAGS=" + "[" * 100_000], "QAQ_SCORING_OP_TAGS: JSON nested too deeply"),
    ],
)
def test_bad_settings_fail_in_one_line_before_anything_is_read_or_written(tmp_path, flags, cause):
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    model = [] if flags[0] == "--model" else TINY_FLAGS
    env = dict(flag.split("=", 1) for flag in flags if flag.startswith("QAQ_"))
    flags = [flag for flag in flags if not flag.startswith("QAQ_")]
    result = qaq("curate", shard, "--lake", tmp_path / "lake", *model, *flags, env_extra=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"qaq curate: {result.stderr.split(': ', 1)[1].strip()}"]
    assert cause in result.stderr
    assert not (tmp_path / "lake").exists()


def test_the_environment_and_the_launchpad_are_held_to_the_same_rules(tmp_path):
    from qaq_assets_tests.helpers import graph

    result = qaq("curate", tmp_path / "s.jsonl", "--lake", tmp_path / "lake", env_extra={"QAQ_BUDGET": "2"})
    assert result.returncode == 2 and "--budget (QAQ_BUDGET) must be in (0, 1], not 2.0" in result.stderr
    lake = Lake(tmp_path / "lake")
    resources, assets = graph(lake)
    bad = {"ops": {"curated_subset": {"config": {"budget": 25.0}}}}
    with pytest.raises(Exception, match=r"must be in \(0, 1\]"):
        dg.materialize([assets[3]], resources=resources, run_config=bad)


def test_the_launchpad_reads_benchmarks_only_where_the_deployment_allows(tmp_path):
    """Run config naming a host file as a benchmark is refused before it is read; one in the
    lake (or the landing directory, or beside a file the deployment configured) is read."""
    from qaq_assets_tests.helpers import graph

    secret = tmp_path / "elsewhere" / "secrets.jsonl"
    secret.parent.mkdir()
    write_jsonl(secret, [{"instruction": "TOKEN=hunter2 " * 20, "response": "x"}])
    lake = Lake(tmp_path / "lake")
    resources, assets = graph(lake)
    lake.ensure_all()
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, register_files(lake, [shard]))
    config = {"ops": {"raw_samples": {"config": {"decontaminate": [str(secret)]}}}}
    result = dg.materialize(
        [assets[0]],
        partition_key="s",
        instance=instance,
        resources=resources,
        run_config=config,
        raise_on_error=False,
    )
    assert not result.success
    assert "outside the directories this deployment reads benchmarks from" in failure_message(result)
    events = " ".join(str(event) for event in instance.all_logs(result.run_id))
    assert "hunter2" not in events
    in_lake = write_jsonl(tmp_path / "lake" / "benchmarks.jsonl", [{"prompt": "a b c"}])
    config = {"ops": {"raw_samples": {"config": {"decontaminate": [str(in_lake)]}}}}
    assert dg.materialize(
        [assets[0]], partition_key="s", instance=instance, resources=resources, run_config=config
    ).success


# 5. Files a user keeps are written whole or not at all; 6. lake and disk faults.


def _small_disk(script: str, env: dict, size_kb: int = 8192) -> subprocess.CompletedProcess:
    """Run ``script`` in a private mount namespace with a tmpfs of ``size_kb`` at $DISK."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare -rm (a private mount namespace) to make a small disk")
    full = f'mount -t tmpfs -o size={size_kb}k tmpfs "$DISK" && {script}'
    env = {**os.environ, "RUST_BACKTRACE": "0", **env}
    return subprocess.run(["unshare", "-rm", "sh", "-c", full], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    shard = write_jsonl(root / "s.jsonl", records("s"))
    assert qaq("curate", shard, "--lake", root / "lake", *TINY_FLAGS).returncode == 0
    return root


@pytest.mark.slow  # a real process on a small tmpfs
def test_a_full_disk_leaves_the_previous_export_whole_and_commits_nothing(small_lake, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    qaq_bin = f"{sys.executable} -m qaq_assets.cli"
    new = write_jsonl(tmp_path / "n.jsonl", records("n"))
    script = f"""
cp -r {small_lake}/lake "$DISK/lake"
{qaq_bin} export --lake "$DISK/lake" --out "$DISK/train.jsonl" > /dev/null
sha256sum "$DISK/train.jsonl" > "$DISK/before"
dd if=/dev/zero of="$DISK/filler" bs=4k 2>/dev/null
{qaq_bin} export --lake "$DISK/lake" --out "$DISK/train.jsonl"; echo "export=$?"
{qaq_bin} export --lake "$DISK/lake" --format parquet --out "$DISK/train.parquet"; echo "parquet=$?"
{qaq_bin} curate {new} --lake "$DISK/lake" {" ".join(TINY_FLAGS)} > /dev/null; echo "curate=$?"
sha256sum -c "$DISK/before" > /dev/null && echo "export intact"
ls "$DISK" | tr '\\n' ' '; echo
rm "$DISK/filler"
{qaq_bin} summary --lake "$DISK/lake" | head -1
"""
    result = _small_disk(script, {"DISK": str(disk), "PYTHONPATH": os.getcwd()})
    out, err = result.stdout, result.stderr
    assert "export=1" in out and "parquet=1" in out and "curate=1" in out, (out, err)
    assert "export intact" in out
    assert "train.parquet" not in out and ".partial" not in out  # no torn or temporary file left
    assert (
        f"qaq export: cannot write {disk}/train.jsonl: No space left on device; the previous file is untouched" in err
    )
    assert "qaq curate: shard_sources: no space left on device" in err
    assert "Traceback" not in err
    assert "curated_subset version 1: 12 rows" in out  # nothing torn was committed: v1 is intact and latest


@pytest.mark.slow  # a real process on a small tmpfs
def test_a_full_dagster_home_fails_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    script = f"""
dd if=/dev/zero of="$DISK/filler" bs=4k 2>/dev/null
{sys.executable} -m qaq_assets.cli curate {shard} --lake {tmp_path}/lake {" ".join(TINY_FLAGS)}; echo "curate=$?"
"""
    result = _small_disk(script, {"DISK": str(home), "DAGSTER_HOME": str(home), "PYTHONPATH": os.getcwd()}, 1024)
    assert "curate=1" in result.stdout, result.stderr
    assert "no space left on device" in result.stderr and "Traceback" not in result.stderr


def _break(lake_dir, how):
    log = lake_dir / "curated_subset" / "_delta_log"
    commits = sorted(log.glob("*.json"))
    if how == "truncated":
        data = commits[-1].read_bytes()
        commits[-1].write_bytes(data[: len(data) // 2])
    elif how == "gap":
        commits[1].unlink()
    elif how == "missing file":
        from deltalake import DeltaTable

        for uri in DeltaTable(str(lake_dir / "curated_subset")).file_uris():
            os.remove(uri.removeprefix("file://"))


@pytest.mark.parametrize(
    ("how", "cause", "readable"),
    [
        ("truncated", "curated_subset: a commit in _delta_log is truncated or corrupt", "0-2"),
        ("gap", "curated_subset: the commit log has a gap after version 0 (a commit file is missing)", "0"),
        ("missing file", "missing (deleted, or removed by a vacuum): this version cannot be read", None),
    ],
)
@pytest.mark.slow  # runs the qaq command in processes
def test_a_broken_lake_is_named_in_one_line_and_older_versions_stay_readable(tmp_path, how, cause, readable):
    lake_dir = tmp_path / "lake"
    shard = tmp_path / "s.jsonl"
    for version in range(3):
        write_jsonl(shard, records(f"v{version}"))
        assert qaq("curate", shard, "--lake", lake_dir, *TINY_FLAGS).returncode == 0
    _break(lake_dir, how)
    for command in (["summary"], ["lineage"], ["export", "--out", tmp_path / "o.jsonl"]):
        result = qaq(*command, "--lake", lake_dir)
        assert result.returncode == 1, (command, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert cause in line, line
        if readable:
            assert line.endswith(f"readable versions of curated_subset: {readable} (pass --version N)")
    if how == "truncated":
        exported = qaq("export", "--lake", lake_dir, "--version", 2, "--out", tmp_path / "v2.jsonl")
        assert exported.returncode == 0 and "wrote 3 samples" in exported.stdout


@pytest.mark.slow  # runs the qaq command in processes
def test_a_read_only_lake_fails_in_one_line(tmp_path):
    lake_dir = tmp_path / "lake"
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    assert qaq("curate", shard, "--lake", lake_dir, *TINY_FLAGS).returncode == 0
    new = write_jsonl(tmp_path / "n.jsonl", records("n"))
    script = f"""
mount --bind {lake_dir} "$DISK" && mount -o remount,ro,bind "$DISK"
{sys.executable} -m qaq_assets.cli curate {new} --lake "$DISK" {" ".join(TINY_FLAGS)}; echo "curate=$?"
{sys.executable} -m qaq_assets.cli summary --lake "$DISK" | head -1
"""
    disk = tmp_path / "ro"
    disk.mkdir()
    result = _small_disk(script.replace("mount -t tmpfs", ""), {"DISK": str(disk), "PYTHONPATH": os.getcwd()})
    assert "curate=1" in result.stdout, result.stderr
    assert "read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert "curated_subset version 1" in result.stdout


# 7. One lake, one instance.


@pytest.mark.slow  # runs the qaq command in processes
def test_an_instance_belongs_to_one_lake(tmp_path):
    home = tmp_path / "home"
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    env = {"DAGSTER_HOME": str(home)}
    assert qaq("curate", shard, "--lake", tmp_path / "one", *TINY_FLAGS, env_extra=env).returncode == 0
    other = qaq("curate", shard, "--lake", tmp_path / "two", *TINY_FLAGS, env_extra=env)
    assert other.returncode == 2
    assert f"belongs to lake {tmp_path / 'one'}, not {tmp_path / 'two'}" in other.stderr
    assert not (tmp_path / "two").exists()
    code = (
        "import qaq_assets.definitions as d\ntry:\n    d.defs()\nexcept Exception as e:\n    print(type(e).__name__)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "QAQ_LAKE": str(tmp_path / "two"), "QAQ_MODELS": TINY},
    )
    assert loaded.stdout.strip() == "InstanceLakeMismatch", loaded.stderr


# 8. Smaller.


def test_records_over_the_size_limit_are_named_as_such(tmp_path):
    shard = write_jsonl(tmp_path / "s.jsonl", records("s"))
    result = qaq("curate", shard, "--lake", tmp_path / "lake", *TINY_FLAGS, "--max-record-bytes", "50")
    assert result.returncode == 2  # the only file is unusable
    assert "every record is larger than --max-record-bytes (50 bytes)" in result.stderr
    assert "not JSONL" not in result.stderr


def files_holding(lake, table: str, shard: str) -> list:
    """The data files of ``table``'s latest version that hold rows of ``shard`` (by the log's
    statistics: shards sit side by side in files)."""
    from deltalake import DeltaTable

    actions = pl.DataFrame(pa.table(DeltaTable(str(lake / table)).get_add_actions(flatten=True)))
    held = actions.filter((pl.col("min.shard") <= shard) & (pl.col("max.shard") >= shard))
    return [lake / table / path for path in held["path"]]


@pytest.mark.slow  # runs the qaq command in processes
def test_repair_restores_a_shard_whose_file_was_deleted_and_says_what_it_cannot(tmp_path):
    a, b = write_jsonl(tmp_path / "a.jsonl", records("a")), write_jsonl(tmp_path / "b.jsonl", records("b"))
    lake = tmp_path / "lake"
    # Two runs: a's rows and b's in files of their own (one run writes its batch's shards together).
    assert qaq("curate", a, "--lake", lake, *TINY_FLAGS).returncode == 0
    assert qaq("curate", a, b, "--lake", lake, *TINY_FLAGS).returncode == 0
    [lost] = files_holding(lake, "raw_samples", "a")
    lost.unlink()
    [scores] = files_holding(lake, "qaq_scores", "b")
    scores.unlink()
    assert qaq("export", "--lake", lake, "--out", tmp_path / "x.jsonl").returncode == 1  # unusable

    dry = qaq("repair", "--lake", lake, "--dry-run")
    assert dry.returncode == 0 and "shard a: would be re-ingested" in dry.stdout and "nothing changed" in dry.stdout
    assert qaq("export", "--lake", lake, "--out", tmp_path / "x.jsonl").returncode == 1  # still as it was

    repaired = qaq("repair", "--lake", lake)
    assert repaired.returncode == 0, repaired.stderr
    assert f"raw_samples: 1 file(s) missing ({lost.name})" in repaired.stdout
    assert "shard a: re-ingested from its registered file" in repaired.stdout
    assert "scores of b: computed again by the next `qaq curate`" in repaired.stdout
    again = qaq("curate", a, b, "--lake", lake, *TINY_FLAGS)
    assert again.returncode == 0, again.stderr
    # Nothing read again; b's scores written again from the score cache (no forward pass).
    assert "scored b/tiny" in again.stdout and re.search(r"^samples_in=0 samples_scored=0 ", again.stdout, re.M)
    assert qaq("export", "--lake", lake, "--out", tmp_path / "x.jsonl").returncode == 0
    assert qaq("repair", "--lake", lake).stdout.startswith("no damage found")

    # A lost file whose source changed since cannot be restored: said, exit 1.
    for lost in files_holding(lake, "raw_samples", "b"):
        lost.unlink()
    b.write_text(b.read_text() + json.dumps({"instruction": "new", "response": "x"}) + "\n")
    refused = qaq("repair", "--lake", lake)
    assert refused.returncode == 1 and "shard b: cannot be restored: " in refused.stdout
    assert "changed since it was registered" in refused.stdout


@pytest.mark.slow  # runs the qaq command in processes
def test_repair_of_a_lost_score_cache_file_scores_the_shards_whose_lists_it_held(tmp_path):
    """The per-token lists are stored once, in the score cache: a shard whose lists were in a lost
    cache file loses its scores too, and the next curate scores it again (only it)."""
    a, b = write_jsonl(tmp_path / "a.jsonl", records("a")), write_jsonl(tmp_path / "b.jsonl", records("b"))
    lake = tmp_path / "lake"
    assert qaq("curate", a, "--lake", lake, *TINY_FLAGS).returncode == 0
    holding_a = set((lake / "score_cache").rglob("*.parquet"))
    assert qaq("curate", a, b, "--lake", lake, *TINY_FLAGS).returncode == 0
    for path in holding_a:
        path.unlink()

    dry = qaq("repair", "--lake", lake, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"score_cache: {len(holding_a)} file(s) missing" in dry.stdout
    assert "scores of a: computed again by the next `qaq curate`" in dry.stdout and "nothing changed" in dry.stdout
    repaired = qaq("repair", "--lake", lake)
    assert repaired.returncode == 0 and "scores of a: computed again" in repaired.stdout, repaired.stderr
    again = qaq("curate", a, b, "--lake", lake, *TINY_FLAGS)
    assert again.returncode == 0, again.stderr
    assert "scored a/tiny" in again.stdout and "scored b/tiny" not in again.stdout
    assert re.search(rf"^samples_in=0 samples_scored={len(CODE_PAIRS)} ", again.stdout, re.M)
    assert qaq("export", "--lake", lake, "--out", tmp_path / "x.jsonl").returncode == 0
    assert qaq("repair", "--lake", lake).stdout.startswith("no damage found")
