"""SIGTERM stops ``qaq curate`` and publishes nothing."""

import os
import signal
import time

import pytest

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS
from qaq_assets_tests.helpers import pair_records, spawn_curate, write_jsonl

pytestmark = pytest.mark.slow  # real processes, signalled


def test_sigterm_stops_the_command_and_publishes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"PYTHONUNBUFFERED": "1"}
    small = write_jsonl(tmp_path / "a-small.jsonl", pair_records())
    big = write_jsonl(
        tmp_path / "b-big.jsonl",
        [
            {"instruction": f"Task {i}: add {i} to x.", "response": f"def f(x):\n    return x + {i}"}
            for i in range(6000)
        ],
    )
    lake = tmp_path / "lake"
    process = spawn_curate(env, small, big, "--lake", lake)
    cache_log = lake / "score_cache" / "_delta_log"
    deadline = time.monotonic() + 300
    while len(list(cache_log.glob("*.json"))) < 2:  # a chunk is committed: the shards are being scored
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM; nothing further was published" in err

    store = Lake(lake)
    assert store.scan(CURATED_SUBSET).collect().height == 0 and store.scan(CURATION_RUNS).collect().height == 0
