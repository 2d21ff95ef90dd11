"""Ingest stage: shard files -> their rows in raw_samples, quarantine and sample_features, and
what was read in shard_sources (one step writes the four tables)."""

import os
import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from qaq_assets.defs.config import DeclaredChecks, declared, with_defaults
from qaq_assets.defs.partitions import shard_partitions
from qaq_assets.defs.resources import LakeResource
from qaq_assets.defs.tables import table_spec
from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.decontamination import benchmark_files, refuse_files_outside
from qaq_assets.lib.ingest.registry import source_paths
from qaq_assets.lib.ingest.shard_ingest import Ingested, ingest_shards
from qaq_assets.lib.reports.summary import markdown_counts
from qaq_assets.lib.setting_fields import values_of
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES, SAMPLE_FEATURES, SHARD_SOURCES

RAW_CHECK = "schema_rows_reconcile_and_unique"


class IngestRunConfig(dg.Config, DeclaredChecks):
    """Run config of raw_samples: the fields of IngestConfig (lib/ingest/config.py)."""

    label_field: str = declared("label_field")
    max_record_bytes: int = declared("max_record_bytes")
    fields: list[str] = declared("fields")
    decontaminate: list[str] = declared("decontaminate")
    ingest_workers: int = declared("ingest_workers")
    execute: bool = declared("execute")
    run_untested: bool = declared("run_untested")
    allow_shrink: bool = declared("allow_shrink")


def build_raw_samples(defaults: Settings | None = None) -> dg.AssetsDefinition:
    """raw_samples, its run config defaulting to ``defaults``' ingest settings."""
    RawSamplesConfig = with_defaults(IngestRunConfig, defaults)
    readable = benchmark_directories(defaults or Settings())

    ingest = {"group_name": "ingest"}

    @dg.multi_asset(
        name="raw_samples",
        specs=[
            table_spec(
                RAW_SAMPLES,
                "Samples of landed shard files, normalised; bad rows go to quarantine.",
                **ingest,
            ),
            table_spec(QUARANTINE, "Rows of landed files that are not samples, each with its reason.", **ingest),
            table_spec(
                SAMPLE_FEATURES,
                "Per sample, computed at ingest: text hashes, the code's status and language, the signature check, "
                "the execution verdict, MinHash band keys and any benchmark overlap.",
                **ingest,
            ),
            table_spec(
                SHARD_SOURCES,
                "Each shard's source file and what its last ingest read (a changed file is read again).",
                **ingest,
            ),
        ],
        partitions_def=shard_partitions,
        # Many small files: one run ingests a range of shards, one commit per table.
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(RAW_CHECK, asset="raw_samples", blocking=True)],
    )
    def raw_samples(
        context: dg.AssetExecutionContext, config: RawSamplesConfig, lake: LakeResource
    ) -> Iterator[dg.MaterializeResult]:
        started = time.perf_counter()
        refuse_files_outside(config.decontaminate, readable)
        shards = context.partition_keys
        store = lake.lake()
        paths, refused = source_paths(store, shards)
        files = [(shard, paths[shard]) for shard in shards if shard in paths]
        ingested = ingest_shards(store, files, values_of(IngestConfig, config))
        failures = {**refused, **ingested.failures}
        if failures:
            # The others are written; a single-run range fails whole in Dagster, so the runner
            # runs them again without these (their partitions are then recorded as materialized).
            raise shard_failures(failures)
        for shard, before in ingested.shrunk_from.items():
            context.log.warning(
                f"shard {shard} shrank from {before} to {ingested.reads[shard].samples.height} samples (--allow-shrink)"
            )
        for shard, read in ingested.reads.items():
            if read.quarantine.height:
                context.log.warning(
                    f"{read.quarantine.height} of {read.rows_read} rows of {paths[shard]} quarantined: "
                    f"{read.quarantine.group_by('reason').len().rows()}"
                )
        yield from _materialized(store, ingested, paths, time.perf_counter() - started)

    return raw_samples


def benchmark_directories(settings: Settings) -> list[str]:
    """Where run config may name benchmark files: the landing directory, a local lake, and the
    directories of the files the deployment itself configured (QAQ_DECONTAMINATE, the CLI's flag)."""
    directories = [
        settings.landing_dir,
        *(os.path.dirname(os.path.abspath(f)) for f in benchmark_files(settings.decontaminate)),
    ]
    if "://" not in settings.lake:
        directories.append(settings.lake)
    return directories


def shard_failures(failures: dict) -> dg.Failure:
    """One failure for the shards of a run that failed, each with its one-line cause (metadata
    ``failed_shards``, which the runner reads)."""
    first, cause = next(iter(failures.items()))
    description = str(cause) if len(failures) == 1 else f"{len(failures)} shards failed; {first}: {cause}"
    return dg.Failure(
        description=description,
        metadata={"failed_shards": dg.MetadataValue.json({shard: str(error) for shard, error in failures.items()})},
    )


def _materialized(store, ingested: Ingested, paths: dict, seconds: float) -> Iterator[dg.MaterializeResult]:
    reads = ingested.reads
    samples = pl.concat([read.samples for read in reads.values()])
    quarantined = pl.concat([read.quarantine for read in reads.values()])
    rows_read = sum(read.rows_read for read in reads.values())
    written = (
        store.scan(RAW_SAMPLES, ingested.raw_version)
        .filter(pl.col("shard").is_in(list(reads)))
        .select("shard", "row_index")
        .collect()
    )
    reconciles = written.height + quarantined.height == rows_read
    unique = written.select(pl.struct("shard", "row_index").is_unique().all()).item()
    missing = store.missing_columns(RAW_SAMPLES)
    metadata = {
        "dagster/row_count": samples.height,
        "shards": len(reads),
        "rows_read": rows_read,
        "ingested": samples.height,
        "quarantined": quarantined.height,
        "exact_duplicates": int(samples["is_duplicate"].sum()),
        "source_formats": sorted({read.source_format for read in reads.values()}),
        "table_uri": store.uri(RAW_SAMPLES),
        "delta_version": ingested.raw_version,
        "features_seconds": round(ingested.features_seconds, 2),
        "seconds": round(seconds, 2),
    }
    if len(reads) == 1:
        metadata["source_file"] = str(next(iter(paths.values())))
    if quarantined.height:
        metadata["quarantine_reasons"] = dg.MetadataValue.md(markdown_counts(quarantined, "reason"))
    yield dg.MaterializeResult(
        asset_key=RAW_SAMPLES.name,
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=RAW_CHECK,
                asset_key=RAW_SAMPLES.name,
                passed=reconciles and unique and not missing,
                metadata={
                    "rows_read": rows_read,
                    "written": written.height,
                    "unique_rows": unique,
                    "missing_columns": missing,
                },
            )
        ],
    )
    # The other tables this step wrote, for the same shards.
    written_rows = [(QUARANTINE, quarantined.height), (SAMPLE_FEATURES, samples.height), (SHARD_SOURCES, len(reads))]
    for table, rows in written_rows:
        yield dg.MaterializeResult(
            asset_key=table.name, metadata={"dagster/row_count": rows, "table_uri": store.uri(table)}
        )
