"""The lake side of scoring one shard (precomputed log-probs, as `qaq bench scale` scores) on a
lake `qaq bench scale --keep` left: what the score cache's lookups cost as the cache grows.
`.venv/bin/python docs/measurements/cpu-2026-12-07/score-one-shard.py LAKE SHARD` from the
repository's root (SHARD: an ingested shard not yet scored)."""

import sys
import time

import qaq_assets.lib.scoring.shard_scoring as shard_scoring
from qaq_assets.benchmarks.scale import _score

root, shard = sys.argv[1], sys.argv[2]
lookup = shard_scoring.cached_keys


def timed_lookup(*args, **kwargs):
    started = time.perf_counter()
    found = lookup(*args, **kwargs)
    print(f"  cache lookup {time.perf_counter() - started:.2f}s")
    return found


shard_scoring.cached_keys = timed_lookup
rows, seconds = _score((root, shard))
print(f"{shard}: {rows} rows, lake side {seconds:.1f}s")
