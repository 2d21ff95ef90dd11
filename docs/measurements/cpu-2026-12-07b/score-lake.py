"""Score every ingested shard of a `qaq bench scale --keep` lake that has no qaq_scores yet, as the
bench scores (precomputed log-probs; the lake side timed), on a pool of worker processes: the
bench's scoring stage, run alone on a lake whose ingest it finished.
`.venv/bin/python docs/measurements/cpu-2026-12-07b/score-lake.py LAKE [WORKERS]` from the
repository's root."""

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from qaq_assets.benchmarks.scale import _score
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QAQ_SCORES, RAW_SAMPLES


def main() -> None:
    root, workers = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    lake = Lake(root)
    ingested = set(lake.scan(RAW_SAMPLES).select("shard").unique().collect()["shard"])
    scored = (
        set(lake.scan(QAQ_SCORES).select("shard").unique().collect()["shard"]) if lake.version(QAQ_SCORES) else set()
    )
    todo = sorted(ingested - scored)
    print(f"{len(todo)} shards to score ({len(scored)} scored)", flush=True)
    started, rows, lake_side = time.perf_counter(), 0, 0.0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for done, (count, seconds) in enumerate(pool.map(_score, [(root, shard) for shard in todo]), 1):
            rows, lake_side = rows + count, lake_side + seconds
            if done % 50 == 0 or done == len(todo):
                elapsed = time.perf_counter() - started
                print(
                    f"{done}/{len(todo)} shards, {rows:,} samples, {elapsed:.0f}s, {rows / elapsed:,.0f} samples/s",
                    flush=True,
                )
    print(f"score (lake side): {rows:,} samples in {time.perf_counter() - started:.1f}s on {workers} processes")


if __name__ == "__main__":  # the workers are spawned: they import this file
    main()
