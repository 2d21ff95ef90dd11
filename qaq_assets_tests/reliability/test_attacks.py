"""Adversarial input, racing writers, kills, signals and planted secrets (issue: under attack)."""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import polars as pl
import pytest

from qaq_assets.cli import main
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.ingest.codecheck import check_code
from qaq_assets.lib.ingest.registry import register_files
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.reports.export import export_curated, lineage_record
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS, RAW_SAMPLES
from qaq_assets.runner.run_guard import PoolTimeout, reap_dead_runs, wait_for_pool
from qaq_assets_tests.conftest import CODE_PAIRS, TINY, graph, materialize_all, write_jsonl

MODEL = ["--model", TINY, "--template", "plain", "--dtype", "float32", "--forward", "fused-eager"]


def pairs(items=CODE_PAIRS, prefix=""):
    return [{"instruction": prefix + q, "response": a} for q, a in items]


# 1. One sample never stops a curation.


def test_a_repetition_loop_answer_is_recorded_not_fatal(tmp_path, lake):
    loop = {"instruction": "Explain.", "response": "the " * 2000}
    assert check_code(loop["instruction"], loop["response"]).status == "check_failed:MemoryError"
    shard = write_jsonl(tmp_path / "loop.jsonl", pairs() + [loop])
    materialize_all(lake, [shard], budget=0.5)
    curated = lake.scan(CURATED_SUBSET).collect()
    assert curated.height == len(CODE_PAIRS) + 1
    assert curated.filter(pl.col("code_status").str.starts_with("check_failed"))["code_status"].to_list() == [
        "check_failed:MemoryError"
    ]


# 2. Row-level quarantine is complete.


def test_hostile_rows_are_quarantined_one_by_one(tmp_path):
    good = json.dumps({"instruction": "Q1", "response": "A1"}).encode()
    lines = [
        b"\xef\xbb\xbf" + good,  # a UTF-8 BOM before the first, valid record
        b"[" * 10000 + b"]" * 10000,
        *[
            json.dumps(record).encode()
            for record in (
                {"instruction": "Q\ud800", "response": "A"},
                {"instruction": "Q", "response": "A\udfff"},
                {"instruction": "Q", "response": "A", "id": "x\ud800"},
                {"instruction": "Q", "response": "A", "defect": "\ud800"},
                {"instruction": "Q", "response": "A", "extra": ["\ud800"]},
                {"instruction": "Q", "response": "A", "k\ud800": 1},
                {"instruction": "Q", "response": "A", "id": "a\u0000b"},
                {"instruction": "Q", "response": "A", "defect": "x\u0000"},
                {"instruction": "Q", "response": "A", "meta": {"deep": "\u0000"}},
                {"instruction": "Q2", "response": "A2", "id": 7},
                {"instruction": "Q3", "response": "A3", "id": "7"},
                {"instruction": "", "input": "Reverse a list.", "response": "def r(xs):\n    return xs[::-1]"},
            )
        ],
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines))
    read = read_shard(path, "hostile")
    assert read.rows_read == len(lines) == read.samples.height + read.quarantine.height
    reasons = dict(zip(read.quarantine["row_index"], read.quarantine["reason"], strict=True))
    assert reasons == {
        2: "too_deeply_nested",
        **{row: "invalid_unicode" for row in range(3, 9)},
        **{row: "nul_character" for row in range(9, 12)},
        13: "duplicate_id",  # integer 7 and string "7" are the same id (ids are text)
    }
    samples = read.samples.sort("row_index")
    assert samples["row_index"].to_list() == [1, 12, 14]
    assert samples["instruction"].to_list() == ["Q1", "Q2", "Reverse a list."]  # Alpaca: input alone
    assert samples["id"].to_list() == [None, "7", None]
    # Every stored string encodes: the quarantine frame writes (the bad key is escaped in the detail).
    read.quarantine.write_parquet(tmp_path / "q.parquet")


def _peak_rss_of(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh process; its own peak RSS in MiB (the high-water mark inherited
    through fork is reset first) and what it printed."""
    prologue = "from pathlib import Path\nPath('/proc/self/clear_refs').write_text('5')\n"
    epilogue = (
        "\nimport re\nprint(int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1]) / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", prologue + code + epilogue], capture_output=True, text=True, check=True
    )
    *out, peak = done.stdout.strip().splitlines()
    return float(peak), "\n".join(out)


def test_a_gzip_bomb_is_read_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as handle:
        handle.write(json.dumps({"instruction": "Q", "response": "A"}).encode() + b"\n")
        block = b"\x00" * (1 << 20)
        for _ in range(512):  # a 512 MiB line without a newline
            handle.write(block)
        handle.write(b"\n" + json.dumps({"instruction": "Q2", "response": "A2"}).encode() + b"\n")
    assert bomb.stat().st_size < 4 << 20
    peak, out = _peak_rss_of(
        f"from qaq_assets.lib.ingest.shard_reader import read_shard\nr = read_shard({str(bomb)!r}, 'b')\n"
        "print(r.samples.height, r.quarantine['reason'].to_list())"
    )
    assert out == "2 ['record_too_large']"
    assert peak < 400, f"peak RSS {peak:.0f} MiB while reading a 512 MiB line"


# 3. Concurrent writers.


def test_racing_replacements_of_one_partition_keep_one_copy(lake):
    frame = pl.DataFrame({"shard": ["s"] * 40, "row_index": range(40)})
    rows = RAW_SAMPLES.conform(frame, optional=tuple(c for c in RAW_SAMPLES.schema if c not in frame.columns))
    for trial in range(6):
        shard = f"race-{trial}"
        batch = rows.with_columns(shard=pl.lit(shard))
        barrier, versions = threading.Barrier(2), []

        def write(batch=batch, shard=shard, barrier=barrier, versions=versions):
            barrier.wait()
            versions.append(lake.replace_partition(RAW_SAMPLES, batch, {"shard": shard}))

        threads = [threading.Thread(target=write) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for version in versions:  # each writer's version holds exactly one copy
            assert lake.scan(RAW_SAMPLES, version).filter(pl.col("shard") == shard).collect().height == 40
        assert lake.scan(RAW_SAMPLES).filter(pl.col("shard") == shard).collect().height == 40


def test_a_replacement_that_merged_with_another_writer_is_redone(lake, monkeypatch):
    frame = RAW_SAMPLES.conform(
        pl.DataFrame({"shard": ["s"] * 5, "row_index": range(5)}),
        optional=tuple(c for c in RAW_SAMPLES.schema if c not in ("shard", "row_index")),
    )
    real_commit, calls = type(lake)._commit, []

    def commit(self, table, data, mode, predicate=None):
        calls.append(mode)
        if len(calls) == 1:  # what delta-rs let through: both writers' rows side by side
            real_commit(self, table, data, mode="append")
            return real_commit(self, table, data, mode="append")
        return real_commit(self, table, data, mode, predicate)

    monkeypatch.setattr(type(lake), "_commit", commit)
    version = lake.replace_partition(RAW_SAMPLES, frame, {"shard": "s"})
    assert lake.scan(RAW_SAMPLES, version).collect().height == 5 and len(calls) == 2


def _scored_lake(lake, tmp_path, names):
    instance = dg.DagsterInstance.ephemeral()
    resources, (raw, token_logprobs, qaq_scores, curated) = graph(lake)
    shards = register_files(lake, [write_jsonl(tmp_path / f"{n}.jsonl", pairs(prefix=n)) for n in names])
    instance.add_dynamic_partitions(SHARDS, shards)
    for shard in shards:
        assert dg.materialize([raw], partition_key=shard, instance=instance, resources=resources).success
        key = dg.MultiPartitionKey({"shard": shard, "model": "tiny"})
        assert dg.materialize([token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources)
    return instance, resources, curated


def test_a_slow_curation_never_publishes_a_stale_snapshot(tmp_path, lake, monkeypatch):
    import qaq_assets.lib.selection.curation as curation_module

    instance, resources, curated = _scored_lake(lake, tmp_path, ["one"])
    real_curate, calls = curation_module.curate, []

    def slow_curate(store, model_keys, config, curation_id):
        result = real_curate(store, model_keys, config, curation_id)
        calls.append(curation_id)
        if len(calls) == 1:  # while A holds its one-shard snapshot, shard two lands and B curates
            _scored_lake(lake, tmp_path, ["two"])
            curation_module.publish(store, model_keys, config, "run-b")
        return result

    monkeypatch.setattr(curation_module, "curate", slow_curate)
    assert dg.materialize([curated], instance=instance, resources=resources).success
    final = lineage_record(lake)
    assert sorted(final["shards"]) == ["one", "two"] and len(calls) == 3  # A, B, then A again
    assert set(lake.scan(CURATED_SUBSET).collect()["shard"]) == {"one", "two"}


def test_lineage_is_written_before_the_subset_and_found_by_curation_id(tmp_path, lake, monkeypatch):
    instance, resources, curated = _scored_lake(lake, tmp_path, ["one"])
    assert dg.materialize([curated], instance=instance, resources=resources).success
    published = lineage_record(lake)["curated_version"]

    # Killed between the lineage row and the subset's commit: readers still see the last version.
    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("kill -9")

    monkeypatch.setattr(type(lake), "overwrite", killed)
    with pytest.raises(BaseException):  # noqa: B017 - the "kill"
        dg.materialize([curated], instance=instance, resources=resources, raise_on_error=True)
    monkeypatch.undo()
    assert lake.version(CURATED_SUBSET) == published
    assert lineage_record(lake)["curated_version"] == published
    assert export_curated(lake, tmp_path / "out.jsonl", "messages-jsonl") == 3

    # A version committed without its lineage (what the old order left after a kill) is refused.
    rows = lake.scan(CURATED_SUBSET).collect().with_columns(curation_id=pl.lit("never-recorded"))
    lake.overwrite(CURATED_SUBSET, rows)
    with pytest.raises(LakeError, match="incomplete"):
        lineage_record(lake)
    with pytest.raises(LakeError, match="incomplete"):
        export_curated(lake, tmp_path / "x.jsonl", "messages-jsonl")
    assert lake.scan(CURATION_RUNS).collect().height >= 2


# 4. Crashes and signals.


def _dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    return home


def _hold_slot(instance, pid: int) -> str:
    """A started run tagged as a CLI run of process ``pid``, holding the gpu pool's one slot."""
    job = dg.Definitions(jobs=[dg.define_asset_job("held")], assets=[dg.asset(lambda: None, name="a")])
    run = instance.create_run_for_job(
        job.resolve_job_def("held"), tags={"qaq/pid": str(pid), "qaq/host": os.uname().nodename}
    )
    instance.run_storage.handle_run_event(
        run.run_id, dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=run.job_name)
    )
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", run.run_id, "token_logprobs").is_claimed
    return run.run_id


def test_a_killed_runs_pool_slot_is_freed_and_a_live_one_is_waited_for_with_a_bound(tmp_path):
    with dg.instance_for_test(temp_dir=str(_dagster_home(tmp_path))) as instance:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        held = _hold_slot(instance, dead.pid)
        messages = []
        assert reap_dead_runs(instance, messages.append) == [held]
        assert instance.get_run_by_id(held).status == dg.DagsterRunStatus.FAILURE
        wait_for_pool(instance, "gpu", 1.0, messages.append)  # free now: returns at once

        live = _hold_slot(instance, os.getpid())
        assert reap_dead_runs(instance, messages.append) == []
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=rf"pool 'gpu' stayed full .*run {live[:8]}.*pid {os.getpid()}"):
            wait_for_pool(instance, "gpu", 0.5, messages.append, poll_seconds=0.1)
        assert time.monotonic() - started < 5
        assert any("waiting for pool 'gpu'" in m for m in messages)


def _spawn_curate(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "qaq_assets.cli", "curate", *map(str, args), *MODEL, "--commit-every", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_after_kill_9_the_next_curate_does_not_hang(tmp_path):
    home = _dagster_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    big = write_jsonl(
        tmp_path / "big.jsonl",
        [
            {"instruction": f"Task {i}: add {i} to x.", "response": f"def f(x):\n    return x + {i}"}
            for i in range(4000)
        ],
    )
    lake = tmp_path / "lake"
    first = _spawn_curate(env, big, "--lake", lake)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        deadline = time.monotonic() + 120
        while not instance.event_log_storage.get_concurrency_info("gpu").active_slot_count:
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
    first.kill()  # SIGKILL while it holds the gpu slot
    first.wait()
    second = _spawn_curate(env, big, "--lake", lake)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "marked failed; its pool slots freed" in err
    # The file was ingested before the kill and is unchanged: not read again, only scored to the end.
    assert re.search(r"^samples_in=0 samples_scored=\d+ ", out, re.M)


def test_sigterm_stops_the_command_and_publishes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"PYTHONUNBUFFERED": "1"}
    small = write_jsonl(tmp_path / "a-small.jsonl", pairs())
    big = write_jsonl(
        tmp_path / "b-big.jsonl",
        [
            {"instruction": f"Task {i}: add {i} to x.", "response": f"def f(x):\n    return x + {i}"}
            for i in range(6000)
        ],
    )
    lake = tmp_path / "lake"
    process = _spawn_curate(env, small, big, "--lake", lake)
    cache_log = lake / "score_cache" / "_delta_log"
    deadline = time.monotonic() + 300
    while len(list(cache_log.glob("*.json"))) < 2:  # a chunk is committed: the shards are being scored
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM; nothing further was published" in err
    from qaq_assets.lib.store.lake import Lake

    store = Lake(lake)
    assert store.scan(CURATED_SUBSET).collect().height == 0 and store.scan(CURATION_RUNS).collect().height == 0


# 5. Secrets never reach Dagster's storage or its UI.


def test_storage_option_secrets_stay_out_of_dagster(tmp_path, capsys, monkeypatch):
    secret = "planted-secret-7c1e9a"
    home = _dagster_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    shard = write_jsonl(tmp_path / "s.jsonl", pairs())
    args = ["curate", str(shard), "--lake", str(tmp_path / "lake"), *MODEL]
    assert main([*args, "--storage-option", f"AWS_SECRET_ACCESS_KEY={secret}"]) == 0
    assert os.environ.get("QAQ_STORAGE_OPTIONS") is None  # restored after the runs
    leaked = [path for path in home.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaked == [] and any(home.rglob("*.db"))
    # What the UI shows of the lake resource: its config fields, none of which holds options.
    from qaq_assets.definitions import build_resources
    from qaq_assets.lib.settings import Settings

    monkeypatch.setenv("QAQ_STORAGE_OPTIONS", json.dumps({"AWS_SECRET_ACCESS_KEY": secret}))
    lake_resource = build_resources(Settings.from_env())["lake"]
    assert secret not in json.dumps(lake_resource.model_dump())
    assert lake_resource.lake().storage_options == {"AWS_SECRET_ACCESS_KEY": secret}
