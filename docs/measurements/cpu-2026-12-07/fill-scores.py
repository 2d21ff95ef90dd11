"""Give every unscored shard of a `qaq bench scale --keep` lake qaq_scores rows copied from scored
shards (their numbers, its sample ids): a 10^7-row qaq_scores for measuring curation alone, where
the disk cannot hold the token tables that scoring 10^7 samples writes (about 5.8 KB a sample).
The numbers are another shard's precomputed scores, so only curation's time and memory mean
anything on the result, not its decisions.
`.venv/bin/python docs/measurements/cpu-2026-12-07/fill-scores.py LAKE` from the repository's root."""

import sys
import time

import polars as pl

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QAQ_SCORES, RAW_SAMPLES

SHARDS_PER_COMMIT = 40

lake = Lake(sys.argv[1])
scored = lake.scan(QAQ_SCORES).select("shard").unique().collect()["shard"].sort().to_list()
ingested = lake.scan(RAW_SAMPLES).select("shard").unique().collect()["shard"].sort().to_list()
unscored = sorted(set(ingested) - set(scored))
print(f"{len(scored)} scored, {len(unscored)} to fill", flush=True)
template = lake.scan(QAQ_SCORES).filter(pl.col("shard").is_in(scored[:3])).collect()
for offset in range(0, len(unscored), SHARDS_PER_COMMIT):
    started = time.perf_counter()
    batch = unscored[offset : offset + SHARDS_PER_COMMIT]
    ids = (
        lake.scan(RAW_SAMPLES)
        .filter(pl.col("shard").is_in(batch))
        .select("shard", "sample_id")
        .unique(maintain_order=True)
        .collect()
    )
    parts = []
    for shard, group in ids.group_by("shard", maintain_order=True):
        rows = template.head(group.height)
        parts.append(rows.with_columns(shard=pl.lit(shard[0]), sample_id=group["sample_id"]))
    frame = pl.concat(parts).select(QAQ_SCORES.schema.names())
    lake.replace_partition(QAQ_SCORES, frame, {"model_key": "bench", "shard": batch})
    print(
        f"{offset + len(batch)}/{len(unscored)} shards, {frame.height:,} rows, {time.perf_counter() - started:.1f}s",
        flush=True,
    )
