"""Ingest one shard file into the lake: its samples, its quarantined rows and its features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.ingest.record_formats import DEFAULT_MAX_RECORD_BYTES
from qaq_assets.lib.ingest.records import ShardRead, read_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES, SAMPLE_FEATURES


@dataclass
class Ingested:
    read: ShardRead
    raw_version: int
    features_seconds: float


def ingest_shard(
    lake: Lake,
    path: str | Path,
    shard: str,
    label_field: str = "defect",
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Ingested:
    """Replace the shard's partitions of raw_samples, quarantine and sample_features from ``path``
    (raises :class:`ShardReadError` for a file that cannot be read at all)."""
    read = read_shard(path, shard, label_field=label_field, max_record_bytes=max_record_bytes)
    raw_version = lake.replace_partition(RAW_SAMPLES, read.samples, {"shard": shard})
    lake.replace_partition(QUARANTINE, read.quarantine, {"shard": shard})
    # Hashes, code status and near-duplicate signatures: computed once here, read by every curation.
    started = time.perf_counter()
    lake.replace_partition(SAMPLE_FEATURES, sample_features(read.samples), {"shard": shard})
    return Ingested(read, raw_version, time.perf_counter() - started)
