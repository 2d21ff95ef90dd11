"""The features of 1,000 records without tests (the 480 natural held-out answers, 520 of pypi's),
with and without --run-untested, twice each: `.venv/bin/python docs/measurements/cpu-2026-12-07/run-untested-cost.py`
from the repository's root (the log beside it is its output on the 2-core AMD EPYC, quiet)."""

import json
import time

import polars as pl

from qaq_assets.lib.ingest.features import sample_features


def read(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


rows = read("data/eval/natural_heldout.jsonl") + read("data/eval/pypi.jsonl")[:520]
samples = pl.DataFrame(
    {
        "shard": ["s"] * len(rows),
        "row_index": list(range(1, len(rows) + 1)),
        "sample_id": [str(i) for i in range(len(rows))],
        "instruction": [r["instruction"] for r in rows],
        "response": [r["response"] for r in rows],
        "tests": [None] * len(rows),
    }
)
for untested in (False, True, False, True):
    t0 = time.perf_counter()
    f = sample_features(samples, execute=True, run_untested=untested)
    dt = time.perf_counter() - t0
    ran = f.filter(pl.col("exec_status").is_in(["ran", "raised"])).height
    rate, per_run = len(rows) / dt, dt / max(ran, 1) * 1000
    print(
        f"run_untested={untested}: {len(rows)} samples in {dt:.1f} s ({rate:.0f} samples/s); "
        f"answers run alone: {ran}; per answer run {per_run:.0f} ms wall over 2 threads"
    )
