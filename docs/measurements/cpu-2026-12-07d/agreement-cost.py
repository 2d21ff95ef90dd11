"""What agreement adds to --run-untested: the features of the 1,007 natural answers (one shard,
no tests in the records), run alone, then the answers to one request called on their examples'
inputs, twice: `.venv/bin/python docs/measurements/cpu-2026-12-07d/agreement-cost.py` from the
repository's root (the log beside it is its output on the 2-core AMD EPYC)."""

import time

import polars as pl

from qaq_assets.lib.ingest.execution.agreement import with_agreement
from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.ingest.shard_reader import read_shard

samples = read_shard("data/eval/natural.jsonl", "s").samples  # as ingest reads it: no tests in the records
rows = samples.height
for attempt in range(2):
    started = time.perf_counter()
    features = sample_features(samples, execute=True, run_untested=True)
    alone = time.perf_counter() - started
    started = time.perf_counter()
    agreed = with_agreement(samples, features)
    compared = time.perf_counter() - started
    ran = features.filter(pl.col("exec_status") == "ran").height
    print(
        f"attempt {attempt + 1}: {rows} samples; run alone {alone:.1f} s ({ran} ran without evidence of a bug); "
        f"agreement {compared:.1f} s ({(agreed['exec_status'] == 'agreed').sum()} agreed), "
        f"{compared / rows * 1000:.1f} ms per sample, {compared / max(ran, 1) * 1000:.1f} ms per answer that ran"
    )
