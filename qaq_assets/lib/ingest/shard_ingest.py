"""Ingest one shard file into the lake: its samples, its quarantined rows and its features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.ingest.record_fields import FieldMap
from qaq_assets.lib.ingest.registry import record_shrink
from qaq_assets.lib.ingest.shard_reader import ShardRead, read_shard
from qaq_assets.lib.settings import BY_NAME
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES, SAMPLE_FEATURES


class ShardShrankError(QaqError):
    """A registered shard's file now yields fewer valid records than the lake holds from it."""


@dataclass
class Ingested:
    read: ShardRead
    raw_version: int
    features_seconds: float
    shrunk_from: int | None = None  # the rows held before an accepted shrink


def held_rows(lake: Lake, shard: str, path: str | Path) -> int:
    """Samples the lake holds for ``shard`` from ``path`` (none when another file held the key
    before a deliberate take-over)."""
    held = lake.scan(RAW_SAMPLES).filter((pl.col("shard") == shard) & (pl.col("source_file") == str(path)))
    return held.select(pl.len()).collect().item()


def ingest_shard(
    lake: Lake,
    path: str | Path,
    shard: str,
    label_field: str = BY_NAME["label_field"].default,
    max_record_bytes: int = BY_NAME["max_record_bytes"].default,
    allow_shrink: bool = False,
    fields: FieldMap = FieldMap(),
) -> Ingested:
    """Replace the shard's partitions of raw_samples, quarantine and sample_features from ``path``
    (raises :class:`ShardReadError` for a file that cannot be read at all).

    A file that now yields fewer valid records than the lake holds for its shard (an interrupted
    copy, a failed ``>`` redirect) replaces nothing and raises :class:`ShardShrankError`, unless
    ``allow_shrink``; an accepted shrink is recorded in ``shard_sources``."""
    read = read_shard(path, shard, label_field=label_field, max_record_bytes=max_record_bytes, fields=fields)
    held = held_rows(lake, shard, path)
    shrunk = read.samples.height < held
    if shrunk and not allow_shrink:
        raise ShardShrankError(
            f"shard {shard!r}: {path} now yields {read.samples.height} valid records, the lake holds {held} "
            f"from it (a cut or emptied copy?); nothing was replaced. If the file is smaller on purpose, "
            f"pass --allow-shrink"
        )
    raw_version = lake.replace_partition(RAW_SAMPLES, read.samples, {"shard": shard})
    lake.replace_partition(QUARANTINE, read.quarantine, {"shard": shard})
    if shrunk:
        record_shrink(lake, shard, held, read.samples.height)
    # Hashes, code status and near-duplicate signatures: computed once here, read by every curation.
    started = time.perf_counter()
    lake.replace_partition(SAMPLE_FEATURES, sample_features(read.samples), {"shard": shard})
    return Ingested(read, raw_version, time.perf_counter() - started, held if shrunk else None)
