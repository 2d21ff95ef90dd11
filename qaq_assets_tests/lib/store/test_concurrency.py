"""Several processes curate different shards into one lake at the same time: every commit
lands (conflicts are retried), no row is lost or duplicated; racing replacements of one
partition keep one copy. Processes are spawned, never
forked: deltalake panics in a forked child."""

import multiprocessing
import threading

import polars as pl
import pytest

from qaq_assets.lib.reports.export import lineage_record
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import (
    CURATED_SUBSET,
    CURATION_RUNS,
    QAQ_SCORES,
    RAW_SAMPLES,
    SHARD_SOURCES,
    TOKEN_LOGPROBS,
)
from qaq_assets_tests.helpers import TINY, write_jsonl

WORKERS = 4
PER_SHARD = 40


def in_spawned_pool(function, jobs: list) -> list:
    """``function`` over ``jobs`` in spawned processes (deltalake panics in a forked child). The pool
    is closed and joined, not terminated: terminating can kill a worker holding the task queue's
    lock and leave the others waiting on it forever."""
    pool = multiprocessing.get_context("spawn").Pool(WORKERS)
    try:
        return pool.map(function, jobs)
    finally:
        pool.close()
        pool.join()


def curate_one(job: tuple[str, str]) -> tuple[int, int, list[str]]:
    import dagster as dg

    from qaq_assets.lib.settings import Settings
    from qaq_assets.runner.curate import curate_files

    lake, path = job
    settings = Settings(
        lake=lake, models=(TINY,), template="plain", dtype="float32", commit_every=10, forward="fused-eager"
    )
    summary = curate_files([path], settings, instance=dg.DagsterInstance.ephemeral(), log=lambda _: None)
    return summary.samples_in, summary.samples_scored, summary.failed


@pytest.mark.slow
def test_parallel_shard_runs_all_commit(tmp_path):
    lake_dir = tmp_path / "lake"
    paths = []
    for worker in range(WORKERS):
        records = [
            {
                "instruction": f"Shard {worker} task {i}: add {i} and {worker}.",
                "response": f"def f(x):\n    return x + {i * worker}",
            }
            for i in range(PER_SHARD)
        ]
        paths.append(str(write_jsonl(tmp_path / f"part-{worker}.jsonl", records)))

    results = in_spawned_pool(curate_one, [(str(lake_dir), path) for path in paths])
    assert all(failed == {} for _, _, failed in results), results
    assert sum(samples for samples, _, _ in results) == WORKERS * PER_SHARD

    lake = Lake(lake_dir)
    raw = lake.scan(RAW_SAMPLES).collect()
    assert raw.height == WORKERS * PER_SHARD and raw["sample_id"].is_unique().all()
    assert raw.group_by("shard").len()["len"].to_list() == [PER_SHARD] * WORKERS
    for table in (TOKEN_LOGPROBS, QAQ_SCORES):
        frame = lake.scan(table).collect()
        assert (
            frame.height == WORKERS * PER_SHARD
            and frame.select(pl.struct("shard", "sample_id").is_unique().all()).item()
        )
    assert sorted(lake.scan(SHARD_SOURCES).collect()["shard"]) == [f"part-{w}" for w in range(WORKERS)]
    # Each committed curated version has its lineage (a curation that saw a newer one commit curated
    # again, so there may be more versions than processes), and the last one holds every shard.
    runs = lake.scan(CURATION_RUNS).collect()
    assert runs.height >= WORKERS and runs["curated_version"].is_unique().all()
    for run in runs.iter_rows(named=True):
        ids = lake.scan(CURATED_SUBSET, run["curated_version"]).select("curation_id").unique().collect()
        assert ids["curation_id"].to_list() == [run["curation_id"]]
    assert lineage_record(lake)["shards"] == [f"part-{w}" for w in range(WORKERS)]


def overwrite_repeatedly(job: tuple[str, int, str]) -> list:
    from qaq_assets.lib.store.lake import Lake
    from qaq_assets.lib.store.tables import TableSpec

    root, writer, mode = job
    lake = Lake(root)
    whole = TableSpec("whole", pl.Schema({"writer": pl.Int64, "i": pl.Int64}))
    parts = TableSpec("parts", pl.Schema({"shard": pl.String, "i": pl.Int64}), ("shard",))
    flat = TableSpec("flat", parts.schema)  # shards side by side in files, replaced by predicate
    wrong = []
    for attempt in range(10):
        if mode == "whole":
            version = lake.overwrite(whole, pl.DataFrame({"writer": [writer] * 50, "i": list(range(50))}))
            got = lake.scan(whole, version).collect()
            if got.height != 50 or set(got["writer"]) != {writer}:
                wrong.append((version, got.height))
        else:
            shard, values = f"{mode}-{writer}", list(range(attempt * 1000, attempt * 1000 + 50))
            rows = pl.DataFrame({"shard": [shard] * 50, "i": values})
            table = parts if mode == "parts" else flat
            version = lake.replace_partition(table, rows, {"shard": shard})
            # The returned version holds exactly this write's rows in its partition.
            got = lake.scan(table, version).filter(pl.col("shard") == shard).collect()
            if sorted(got["i"]) != values:
                wrong.append((mode, version, got.height))
    return wrong


@pytest.mark.slow
def test_racing_writers_each_get_back_exactly_their_own_commit(tmp_path):
    """The version a write returns holds that writer's rows and nothing else, even when
    whole-table overwrites race (delta-rs can merge two that read an empty snapshot)."""
    root = str(tmp_path / "lake")
    jobs = [(root, writer, mode) for mode in ("whole", "parts", "flat") for writer in range(WORKERS)]
    assert in_spawned_pool(overwrite_repeatedly, jobs) == [[]] * len(jobs)


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
