"""Write a curated version's kept samples in formats SFT trainers read, and show its lineage."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from qaq_assets.lib.lake import Lake
from qaq_assets.lib.selection import KEEP
from qaq_assets.lib.tables import CURATED_SUBSET, CURATION_RUNS

FORMATS = ("messages-jsonl", "alpaca-jsonl", "parquet")


def kept_samples(lake: Lake, version: int | None = None) -> pl.DataFrame:
    """Kept rows of ``curated_subset`` as of Delta ``version`` (default latest)."""
    return lake.scan(CURATED_SUBSET, version).filter(pl.col("decision") == KEEP).sort("shard", "row_index").collect()


def export_curated(lake: Lake, out: str | Path, fmt: str, version: int | None = None) -> int:
    """Write the kept samples to ``out``; returns the number written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    kept = kept_samples(lake, version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        kept.select(
            "sample_id",
            "id",
            "shard",
            "row_index",
            "instruction",
            "response",
            "rmi",
            "nll_query",
            "reason",
            "curation_id",
        ).write_parquet(out)
        return kept.height
    with open(out, "w", encoding="utf-8") as handle:
        for row in kept.iter_rows(named=True):
            if fmt == "messages-jsonl":
                record = {
                    "messages": [
                        {"role": "user", "content": row["instruction"]},
                        {"role": "assistant", "content": row["response"]},
                    ],
                    "sample_id": row["sample_id"],
                }
            else:
                record = {
                    "instruction": row["instruction"],
                    "input": "",
                    "output": row["response"],
                    "sample_id": row["sample_id"],
                }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return kept.height


def lineage_record(lake: Lake, version: int | None = None) -> dict:
    """The ``curation_runs`` record of curated_subset ``version`` (default latest), JSON fields decoded."""
    runs = lake.scan(CURATION_RUNS).collect()
    if runs.height == 0:
        raise LookupError(f"no curation has been recorded in {lake.root}")
    target = version if version is not None else runs["curated_version"].max()
    rows = runs.filter(pl.col("curated_version") == target)
    if rows.height == 0:
        known = sorted(runs["curated_version"].to_list())
        raise LookupError(f"no curation recorded for curated_subset version {target}; recorded: {known}")
    record = rows.row(0, named=True)
    for field in ("input_versions", "models", "selection_config", "counts"):
        record[field] = json.loads(record[field])
    record["created_at"] = record["created_at"].isoformat()
    return record
