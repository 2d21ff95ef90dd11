"""Features over worker processes: the same rows, bit for bit, as one process; a killed worker
costs time, not rows."""

import logging
import os
import signal
from pathlib import Path

import polars as pl
import pytest

from qaq_assets.lib.ingest import feature_pool
from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.decontamination import humaneval_problems
from qaq_assets.lib.ingest.features import FEATURE_INPUTS, sample_features
from qaq_assets.lib.ingest.shard_ingest import benchmark
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets_tests import users_data

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def users_samples(tmp_path_factory) -> pl.DataFrame:
    """What users bring: every format and language, conversations, the evaluation corpora (third-party
    and standard-library code, HumanEval problems word for word), and answers the checks fail on.
    The pool tests compare features with execution off: running thousands of answers would test
    the sandbox's timing under load, not the pool (runs through workers: test_run_tests.py)."""
    root = tmp_path_factory.mktemp("users")
    files = [root / name for name in users_data.write_all(root)]
    files += sorted((REPO / "data" / "eval").glob("*.jsonl")) + sorted((REPO / "data" / "shards").glob("*.jsonl"))
    frames = [read_shard(path, f"s{index}").samples for index, path in enumerate(files)]
    hostile = pl.DataFrame(
        {
            "shard": ["hostile"] * 3,
            "row_index": [0, 1, 2],
            "sample_id": ["h0", "h1", "h2"],
            "instruction": ["Write a Python function.", "日本語で", ""],
            "response": ["the " * 2000, "```python\ndef f(:\n```", "```rust\nfn main() {"],
            "tests": [None, "assert f() == 1", None],
        },
        schema_overrides={"row_index": pl.Int64, "tests": pl.String},
    )
    problems = humaneval_problems()[:20]
    leaked = pl.DataFrame(
        {
            "shard": ["leaked"] * len(problems),
            "row_index": list(range(len(problems))),
            "sample_id": [p["task_id"] for p in problems],
            "instruction": [p["prompt"] for p in problems],
            "response": [p["canonical_solution"] for p in problems],
            "tests": [None] * len(problems),  # their prompts' doctests still run
        },
        schema_overrides={"row_index": pl.Int64, "tests": pl.String},
    )
    read = [frame.select(FEATURE_INPUTS).cast({"row_index": pl.Int64}) for frame in frames]
    samples = pl.concat([*read, hostile, leaked])
    assert samples.height > 3000
    return samples


@pytest.mark.slow
def test_features_from_worker_processes_equal_one_processs_bit_for_bit(users_samples):
    checked = benchmark(IngestConfig())
    alone = sample_features(users_samples, checked, execute=False)
    spread = feature_pool.start_features(users_samples, checked, workers=2, min_rows_per_worker=100, execute=False)()
    assert alone["benchmark_item"].drop_nulls().len() >= 20  # the leaked problems are found either way
    assert alone["code_status"].str.starts_with("check_failed").any()
    assert spread.equals(alone)


@pytest.mark.slow
def test_a_killed_worker_costs_time_not_rows(users_samples, caplog):
    checked = benchmark(IngestConfig())
    alone = sample_features(users_samples, checked, execute=False)
    pending = feature_pool.start_features(users_samples, checked, workers=2, min_rows_per_worker=100, execute=False)
    pool = feature_pool._pool
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING):
        recovered = pending()
    assert recovered.equals(alone)
    assert "feature workers failed" in caplog.text
    # The next ingest starts a fresh pool.
    assert feature_pool.start_features(
        users_samples, checked, workers=2, min_rows_per_worker=100, execute=False
    )().equals(alone)
    assert feature_pool._pool is not pool


@pytest.mark.slow
def test_features_started_file_by_file_equal_those_of_all_the_rows_at_once(users_samples):
    """Files of every size (empty, a few rows, more than a start's worth) added one by one: the
    first rows go to the workers before the last are added, and the rows come back in order."""
    checked = benchmark(IngestConfig())
    alone = sample_features(users_samples, checked, execute=False)
    stream = feature_pool.FeatureStream(checked, workers=2, min_rows_per_worker=100, execute=False)
    ends = [0, 7, 7, 500, 1300, 1301, 2900, users_samples.height]
    for start, end in zip(ends, ends[1:], strict=False):
        stream.add(users_samples.slice(start, end - start))
    assert len(stream._started) >= 3  # started while files were still being added
    assert stream.result().equals(alone)


def test_worker_count_follows_the_setting_the_cores_and_the_rows():
    assert feature_pool.resolved_workers(1, 1_000_000) == 1
    assert feature_pool.resolved_workers(4, 1_000_000) == 4
    assert feature_pool.resolved_workers(4, 3 * feature_pool.MIN_ROWS_PER_WORKER) == 3
    assert feature_pool.resolved_workers(0, 100) == 1  # too few rows to repay a process
    cores = feature_pool.available_cores()
    assert feature_pool.resolved_workers(0, 1_000_000) == min(cores, feature_pool.MAX_AUTO_WORKERS)
