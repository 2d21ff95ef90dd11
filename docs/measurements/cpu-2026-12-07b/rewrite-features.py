"""Rewrite a lake's sample_features file by file with this release's writer settings (Snappy for
that table), each file's shards replaced in one commit: the table as a lake ingested by this
release holds it, without ingesting again. Rows are unchanged (a hash of them is compared).
`.venv/bin/python docs/measurements/cpu-2026-12-07b/rewrite-features.py LAKE` from the
repository's root."""

import sys
import time

import polars as pl

from qaq_assets.lib.selection.curation import shards_by_file
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SAMPLE_FEATURES


def rows_hash(lake: Lake) -> int:
    scan = lake.scan(SAMPLE_FEATURES).select("shard", "row_index", "sample_id", "minhash")
    return scan.select(pl.struct(pl.all()).hash().sum()).collect().item()


def main() -> None:
    lake = Lake(sys.argv[1])
    before = rows_hash(lake)
    shards = lake.scan(SAMPLE_FEATURES).select("shard").unique().collect()["shard"]
    groups = shards_by_file(shards, lake.shard_ranges(SAMPLE_FEATURES), 1)
    started = time.perf_counter()
    for done, group in enumerate(groups, 1):
        frame = lake.scan(SAMPLE_FEATURES).filter(pl.col("shard").is_in(group.to_list())).collect()
        lake.replace_partition(SAMPLE_FEATURES, frame, {"shard": group.to_list()})
        print(f"{done}/{len(groups)} files, {time.perf_counter() - started:.0f}s", flush=True)
    assert rows_hash(lake) == before, "rows changed"
    print("rows unchanged")


if __name__ == "__main__":
    main()
