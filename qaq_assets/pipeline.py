"""Run the asset graph over files through Dagster: the path behind ``qaq curate``.

Each stage runs as its job (the same assets the UI and sensors run), on the instance
named by ``DAGSTER_HOME`` when set, so the runs appear in the UI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from qaq_assets.definitions import build_definitions
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.lake import Lake
from qaq_assets.lib.selection import KEEP, SelectionConfig
from qaq_assets.lib.shards import register_files
from qaq_assets.lib.tables import CURATED_SUBSET, QAQ_SCORES, QUARANTINE, RAW_SAMPLES, TOKEN_LOGPROBS
from qaq_assets.settings import Settings


@dataclass
class CurationSummary:
    samples_in: int = 0
    samples_scored: int = 0
    tokens_scored: int = 0
    kept: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    versions: dict[str, int | None] = field(default_factory=dict)

    def last_line(self) -> str:
        return (
            f"samples_in={self.samples_in} samples_scored={self.samples_scored} "
            f"tokens_scored={self.tokens_scored} kept={self.kept} quarantined={self.quarantined}"
        )


def instance_for_cli() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (shared with the UI), else an ephemeral one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _metadata_sum(result: dg.ExecuteInProcessResult, name: str) -> int:
    total = 0
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get(name)
        if value is not None:
            total += int(value.value)
    return total


def _console_log_level(verbose: bool) -> dict:
    return {"loggers": {"console": {"config": {"log_level": "INFO" if verbose else "WARNING"}}}}


def curate_files(
    paths: list[str],
    settings: Settings,
    selection: SelectionConfig,
    label_field: str = "defect",
    instance: dg.DagsterInstance | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> CurationSummary:
    """Register ``paths`` as shards, then ingest, score (every model) and curate through Dagster."""
    started = time.perf_counter()
    instance = instance or instance_for_cli()
    defs = build_definitions(settings)
    lake = Lake(settings.lake, settings.storage_options)
    lake.ensure_all()
    shards = register_files(lake, paths)
    instance.add_dynamic_partitions(SHARDS, [s for s in shards if not instance.has_dynamic_partition(SHARDS, s)])
    summary = CurationSummary()
    quiet = _console_log_level(verbose)

    ingested = []
    ingest = defs.resolve_job_def("ingest_job")
    for shard in shards:
        result = ingest.execute_in_process(
            partition_key=shard,
            instance=instance,
            run_config={"ops": {"raw_samples": {"config": {"label_field": label_field}}}, **quiet},
            raise_on_error=False,
        )
        if result.success:
            ingested.append(shard)
            summary.samples_in += _metadata_sum(result, "rows_read")
            summary.quarantined += _metadata_sum(result, "quarantined")
        else:
            summary.failed.append(shard)
            log(f"ingest failed for shard {shard}: {_failure_message(result)}")

    scoring = defs.resolve_job_def("scoring_job")
    scoring_started = time.perf_counter()
    for shard in ingested:
        for spec in settings.model_specs:
            key = dg.MultiPartitionKey({"shard": shard, "model": spec.key})
            result = scoring.execute_in_process(
                partition_key=key, instance=instance, run_config=quiet, raise_on_error=False
            )
            if not result.success:
                summary.failed.append(f"{shard}/{spec.key}")
                log(f"scoring failed for {shard}/{spec.key}: {_failure_message(result)}")
                continue
            summary.samples_scored += _metadata_sum(result, "samples_scored")
            summary.tokens_scored += _metadata_sum(result, "tokens_scored")
            log(f"scored {shard}/{spec.key}")
    summary.scoring_seconds = time.perf_counter() - scoring_started

    curation = defs.resolve_job_def("curation_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"curated_subset": {"config": selection.__dict__}}, **quiet},
        raise_on_error=False,
    )
    if not curation.success:
        summary.failed.append("curated_subset")
        log(f"curation failed: {_failure_message(curation)}")
    else:
        summary.kept = lake.scan(CURATED_SUBSET).filter(pl.col("decision") == KEEP).select(pl.len()).collect().item()
    summary.versions = {
        t.name: lake.version(t) for t in (RAW_SAMPLES, QUARANTINE, TOKEN_LOGPROBS, QAQ_SCORES, CURATED_SUBSET)
    }
    summary.seconds = time.perf_counter() - started
    return summary


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            return event.step_failure_data.error.message.strip().splitlines()[-1]
    return "see the run's logs"
