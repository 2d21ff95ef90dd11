"""Ingest shard files into the lake: their samples, quarantined rows and features.

Several shards are ingested together in one commit per table (a directory of thousands of
small files costs three commits, not three per file); each file is read, checked and refused on
its own: one bad file fails alone, with one line, and its shard's rows stay as they were.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest import field_sidecars
from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.decontamination import Benchmark, load_benchmarks
from qaq_assets.lib.ingest.execution.agreement import with_agreement
from qaq_assets.lib.ingest.feature_pool import FeatureStream
from qaq_assets.lib.ingest.file_formats import ShardReadError
from qaq_assets.lib.ingest.record_fields import FieldMap
from qaq_assets.lib.ingest.registry import file_signature, ingest_signature, record_ingested, record_shrinks
from qaq_assets.lib.ingest.shard_reader import ShardRead, read_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES, SAMPLE_FEATURES

# Raised whenever reading or the features computed at ingest change, so unchanged files are read again.
READER_VERSION = "7"
# What running answers alone writes: 2 adds agreement between answers to one request. Only lakes
# ingested with --run-untested read their shards again for it.
RUN_ALONE_VERSION = "2"


class ShardShrankError(QaqError):
    """A registered shard's file now yields fewer valid records than the lake holds from it."""


def benchmark(config: IngestConfig) -> Benchmark | None:
    """The benchmarks ``config`` decontaminates against (None: ``none``)."""
    names = tuple(name for name in config.decontaminate if name.lower() != "none")
    return load_benchmarks(names) if names else None


def ingest_key(config: IngestConfig) -> str:
    """What, besides a file's bytes, decides what its ingest writes (and the reader's version)."""
    checked = benchmark(config)
    described = (
        f"{READER_VERSION}|{config.label_field}|{config.max_record_bytes}|{config.execute}"
        f"|{f'True/{RUN_ALONE_VERSION}' if config.run_untested else False}"
        f"|{sorted(vars(FieldMap.parse(config.fields)).items())}|{checked.key if checked else ''}"
    )
    return hashlib.sha256(described.encode()).hexdigest()[:16]


@dataclass
class Ingested:
    """The shards of one ingest: what each read, and each refused shard's one-line cause."""

    reads: dict[str, ShardRead] = field(default_factory=dict)
    failures: dict[str, QaqError] = field(default_factory=dict)
    shrunk_from: dict[str, int] = field(default_factory=dict)  # rows held before an accepted shrink
    signatures: dict[str, str] = field(default_factory=dict)  # what each shard's ingest read
    raw_version: int | None = None
    features_seconds: float = 0.0

    @property
    def read(self) -> ShardRead:
        """The one shard's read (single-shard ingests)."""
        [read] = self.reads.values()
        return read


def held_rows(lake: Lake, shards: Sequence[str]) -> dict[tuple[str, str], int]:
    """Samples the lake holds per (shard, source file)."""
    held = (
        lake.scan(RAW_SAMPLES)
        .filter(pl.col("shard").is_in(list(shards)))
        .group_by("shard", "source_file")
        .len()
        .collect()
    )
    return {(shard, source): n for shard, source, n in held.iter_rows()}


def ingest_shards(lake: Lake, files: Sequence[tuple[str, Path]], config: IngestConfig = IngestConfig()) -> Ingested:
    """Replace the shards' rows of raw_samples, quarantine and sample_features from their files,
    one commit per table. A file that cannot be read, or that now yields fewer valid records
    than the lake holds from it (an interrupted copy, a failed ``>`` redirect; unless
    ``allow_shrink``), leaves its shard as it was and is reported in ``failures``."""
    result = Ingested()
    key = ingest_key(config)
    # Hashes, code status and near-duplicate signatures: computed once here, read by every
    # curation; in worker processes while this one reads the next files and commits.
    features = FeatureStream(
        benchmark(config), config.ingest_workers, execute=config.execute, run_untested=config.run_untested
    )
    held = held_rows(lake, [shard for shard, _ in files])
    for shard, path in files:
        try:
            signature = file_signature(path)  # before the read: a later change reads again
            fields = FieldMap.parse(field_sidecars.fields_for(path, config.fields))
            read = read_shard(path, shard, config.label_field, config.max_record_bytes, fields)
        except ShardReadError as error:
            result.failures[shard] = error
            continue
        except OSError as error:
            result.failures[shard] = ShardReadError(f"{path}: cannot read: {error.strerror or error}")
            continue
        before = held.get((shard, str(path)), 0)  # none after a deliberate take-over by another file
        if read.samples.height < before:
            if not config.allow_shrink:
                result.failures[shard] = ShardShrankError(
                    f"shard {shard!r}: {path} now yields {read.samples.height} valid records, the lake holds "
                    f"{before} from it (a cut or emptied copy?); nothing was replaced. If the file is smaller on "
                    "purpose, pass --allow-shrink"
                )
                continue
            result.shrunk_from[shard] = before
        result.reads[shard] = read
        result.signatures[shard] = ingest_signature(*signature, field_sidecars.keyed(key, path))
        features.add(read.samples)
    if result.reads:
        _write(lake, result, features, config.run_untested)
    return result


def _write(lake: Lake, result: Ingested, features: FeatureStream, run_untested: bool) -> None:
    shards = {"shard": list(result.reads)}
    samples = pl.concat([read.samples for read in result.reads.values()])
    quarantined = pl.concat([read.quarantine for read in result.reads.values()])
    result.raw_version = lake.replace_partition(RAW_SAMPLES, samples, shards)
    lake.replace_partition(QUARANTINE, quarantined, shards)
    if result.shrunk_from:
        record_shrinks(lake, {s: (n, result.reads[s].samples.height) for s, n in result.shrunk_from.items()})
    record_ingested(lake, result.signatures)
    started = time.perf_counter()  # what the features add to the ingest beyond the other commits
    computed = features.result()
    if run_untested:  # answers to one request compared: they may lie in different batches
        computed = with_agreement(samples, computed)
    lake.replace_partition(SAMPLE_FEATURES, computed, shards)
    result.features_seconds = time.perf_counter() - started
