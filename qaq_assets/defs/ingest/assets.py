"""Ingest stage: one shard file -> its rows in raw_samples, quarantine and sample_features."""

import time

import dagster as dg
import polars as pl

from qaq_assets.defs.config import config_class
from qaq_assets.defs.partitions import shard_partitions
from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.ingest.file_formats import ShardReadError
from qaq_assets.lib.ingest.record_fields import FieldMap
from qaq_assets.lib.ingest.registry import ShardRegistrationError, source_path
from qaq_assets.lib.ingest.shard_ingest import ShardShrankError, ingest_shard
from qaq_assets.lib.reports.summary import markdown_counts
from qaq_assets.lib.settings import INGEST, Settings
from qaq_assets.lib.store.tables import RAW_SAMPLES

RAW_CHECK = "schema_rows_reconcile_and_unique"


class _IngestConfig(dg.Config):
    """Run config of raw_samples: the ingest settings (lib/settings.py)."""


def build_raw_samples(defaults: Settings | None = None) -> dg.AssetsDefinition:
    """raw_samples, its run config defaulting to ``defaults``' ingest settings."""
    IngestConfig = config_class("IngestConfig", _IngestConfig, INGEST, defaults=defaults)

    @dg.asset(
        partitions_def=shard_partitions,
        group_name="ingest",
        kinds={"polars", "deltalake"},
        check_specs=[dg.AssetCheckSpec(RAW_CHECK, asset="raw_samples", blocking=True)],
        description="Samples of one landed shard file, normalised; bad rows go to the quarantine table.",
    )
    def raw_samples(
        context: dg.AssetExecutionContext, config: IngestConfig, lake: LakeResource
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        shard = context.partition_key
        store = lake.lake()
        try:
            path = source_path(store, shard)
            ingested = ingest_shard(
                store,
                path,
                shard,
                config.label_field,
                config.max_record_bytes,
                allow_shrink=config.allow_shrink,
                fields=FieldMap.parse(config.fields),
            )
        except (ShardReadError, ShardRegistrationError, ShardShrankError) as error:
            raise dg.Failure(description=str(error)) from error  # the message names the file
        read, version = ingested.read, ingested.raw_version
        if ingested.shrunk_from is not None:
            context.log.warning(
                f"shard {shard} shrank from {ingested.shrunk_from} to {read.samples.height} samples (--allow-shrink)"
            )
        if read.quarantine.height:
            context.log.warning(
                f"{read.quarantine.height} of {read.rows_read} rows of {path} quarantined: "
                f"{read.quarantine.group_by('reason').len().rows()}"
            )
        written = store.scan(RAW_SAMPLES, version).filter(pl.col("shard") == shard).select("row_index").collect()
        reconciles = written.height + read.quarantine.height == read.rows_read
        unique = written["row_index"].n_unique() == written.height
        missing = store.missing_columns(RAW_SAMPLES)
        metadata = {
            "dagster/row_count": read.samples.height,
            "rows_read": read.rows_read,
            "ingested": read.samples.height,
            "quarantined": read.quarantine.height,
            "exact_duplicates": int(read.samples["is_duplicate"].sum()),
            "source_file": str(path),
            "source_format": read.source_format,
            "table_uri": store.uri(RAW_SAMPLES),
            "delta_version": version,
            "features_seconds": round(ingested.features_seconds, 2),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if read.quarantine.height:
            metadata["quarantine_reasons"] = dg.MetadataValue.md(markdown_counts(read.quarantine, "reason"))
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name=RAW_CHECK,
                    passed=reconciles and unique and not missing,
                    metadata={
                        "rows_read": read.rows_read,
                        "written": written.height,
                        "unique_rows": unique,
                        "missing_columns": missing,
                    },
                )
            ],
        )

    return raw_samples
