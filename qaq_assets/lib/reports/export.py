"""Write a curated version's kept samples in formats SFT trainers read, and show its lineage."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.reports.export_formats import format_for
from qaq_assets.lib.reports.output_files import atomic_output
from qaq_assets.lib.reports.resolve import (
    previous_version,
    recorded_curation,
    recorded_versions,
    resolve_version,
    spans,
    version_damage,
)
from qaq_assets.lib.reports.trainer_records import messages_column, trainer_record
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, RAW_SAMPLES, TEXT_COLUMNS


def with_text(lake: Lake, rows: pl.DataFrame, lineage: dict) -> pl.DataFrame:
    """Curated ``rows`` with their id, text and conversation: read from raw_samples as of the
    version the curation read (its lineage), so an old curated version shows the text it was
    curated from. Versions written by older releases carry some of it already."""
    missing = [column for column in TEXT_COLUMNS if column not in rows.columns]
    if not missing:
        return rows
    raw_version = lineage["input_versions"].get("raw_samples")
    keys = rows.select("shard", "row_index")
    text = (
        lake.scan(RAW_SAMPLES, raw_version)
        # Shards named as a list: the scan skips the files whose statistics exclude them.
        .filter(pl.col("shard").is_in(keys["shard"].unique().to_list()))
        .select("shard", "row_index", *missing)
        .join(keys.lazy(), on=["shard", "row_index"], how="semi")
        .collect()
    )
    return rows.join(text, on=["shard", "row_index"], how="left")


def kept_samples(lake: Lake, version: int | str | None = None) -> pl.DataFrame:
    """Kept rows of ``curated_subset`` as of Delta ``version`` (default latest), with their text."""
    lineage = lineage_record(lake, version)
    kept = lake.scan(CURATED_SUBSET, lineage["curated_version"]).filter(pl.col("decision") == KEEP).collect()
    return with_text(lake, kept, lineage).sort("shard", "row_index")


def export_curated(lake: Lake, out: str | Path, fmt: str | None = None, version: int | str | None = None) -> int:
    """Write the kept samples to ``out`` (whole or not at all); returns the number written."""
    fmt = format_for(out, fmt)
    kept = kept_samples(lake, version)  # refuses an incomplete version
    with atomic_output(out) as partial:
        if fmt == "parquet":
            kept.select(*PARQUET_COLUMNS, messages_column()).write_parquet(partial)
        else:
            with open(partial, "w", encoding="utf-8") as handle:
                for row in kept.iter_rows(named=True):
                    handle.write(json.dumps(trainer_record(row, fmt), ensure_ascii=False) + "\n")
    return kept.height


PARQUET_COLUMNS = (
    "sample_id",
    "id",
    "shard",
    "row_index",
    "instruction",
    "response",
    "conversation",
    "record_style",
    "rmi",
    "nll_query",
    "reason",
    "curation_id",
)


def lineage_record(lake: Lake, version: int | str | None = None) -> dict:
    """The ``curation_runs`` record of curated_subset ``version`` (default latest; any form
    :func:`resolve_version` takes), JSON fields decoded. It is found by the curation id the
    version's rows carry; a version without one (its curation was interrupted before its lineage
    was written) is incomplete, and a version whose rows are not what its curation recorded
    (a commit cut or emptied) is damaged: LakeError, naming the last good version."""
    version = resolve_version(lake, version)
    record = recorded_curation(lake, version)
    if record is None:
        raise LakeError(
            f"curated_subset version {version} is incomplete: no lineage was recorded for it (an interrupted "
            f"curation); recorded versions: {spans(recorded_versions(lake))}"
        )
    damage = version_damage(lake, version, record)
    if damage:
        good = previous_version(lake, version)
        instead = f"the last good version is {good} (--version {good})" if good else "no earlier version is intact"
        raise LakeError(f"curated_subset version {version} is damaged ({damage}): not served; {instead}")
    record["curated_version"] = version
    for field in ("input_versions", "models", "selection_config", "counts", "decontamination"):
        record[field] = json.loads(record[field]) if record[field] is not None else None
    record["created_at"] = record["created_at"].isoformat()
    return record
