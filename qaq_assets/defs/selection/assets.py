"""Selection stage: the curated subset over every scored shard, one Delta version per run, and
its lineage row in curation_runs."""

import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from qaq_assets.defs.config import DeclaredChecks, declared, with_defaults
from qaq_assets.defs.resources import LakeResource, ScoringModelsResource
from qaq_assets.defs.tables import table_spec
from qaq_assets.lib.reports.explain import examples, markdown_fragment
from qaq_assets.lib.reports.plots import curation_png, markdown_image
from qaq_assets.lib.reports.resolve import previous_version
from qaq_assets.lib.reports.summary import markdown_counts
from qaq_assets.lib.reports.version_diff import diff_versions, markdown
from qaq_assets.lib.scoring.metrics import distribution_summary
from qaq_assets.lib.selection.checks import check_curated, counts_agree
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import CurationError, candidates_of, curation_warnings, publish
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.columns import CURATED_SCORES
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS, QAQ_SCORES, RAW_SAMPLES, SAMPLE_FEATURES

CURATED_CHECK = "schema_decisions_valid_and_budget_met"
COUNTS_CHECK = "lineage_counts_add_up"


class CurationRunConfig(dg.Config, DeclaredChecks):
    """Run config of curated_subset: the fields of SelectionConfig (lib/selection/config.py)."""

    strategy: str = declared("strategy")
    budget: float = declared("budget")
    band_low: float = declared("band_low")
    band_guard: float = declared("band_guard")
    completeness_margin: float = declared("completeness_margin")
    strata: int = declared("strata")
    diff_threshold: float = declared("diff_threshold")
    min_stratum_size: int = declared("min_stratum_size")
    seed: int = declared("seed")
    near_duplicate_threshold: float = declared("near_duplicate_threshold")
    allow_partial: bool = declared("allow_partial")
    decisions: str = declared("decisions")

    def selection(self) -> SelectionConfig:
        return SelectionConfig(**self.model_dump())


# Re-curate when any shard's scores change, without waiting for shards that are not
# scored yet (plain eager() would wait forever on a missing dynamic partition). A new ingest
# alone is no reason: its samples have no scores yet (their scoring follows, and triggers this).
CURATE_WHEN_SCORES_CHANGE = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .ignore(dg.AssetSelection.assets(RAW_SAMPLES.name, SAMPLE_FEATURES.name))
)


def _explained(store, version: int, models: ScoringModelsResource, context) -> str:
    """Markdown explaining a few kept and dropped samples (see ``qaq explain``)."""
    try:
        tokenizer = models.tokenizer(models.model_keys()[0])
        return "\n".join(markdown_fragment(item) for item in examples(store, version, tokenizer))
    except Exception as error:  # noqa: BLE001 - the version is published; an explanation must not fail it
        context.log.warning(f"could not explain examples: {error}")
        return f"(no examples: {error})"


def _changes(store, version: int, previous: int | None) -> str:
    """What changed since the previous curated version (``qaq diff``), as Markdown."""
    if previous is None:
        return "the first curated version: nothing to compare it with"
    return markdown(diff_versions(store, previous, version))


def _check_results(
    store, frame: pl.DataFrame, selection, curation_id: str, previous: int | None
) -> list[dg.AssetCheckResult]:
    """The blocking checks of a published version (their logic: ``lib/selection/checks.py``)."""
    decided = ("shard", "row_index", "sample_id", "decision")
    earlier = None if previous is None else store.scan(CURATED_SUBSET, previous).select(decided).collect()
    checked = check_curated(frame, selection, earlier)
    missing = store.missing_columns(CURATED_SUBSET)
    recorded = store.scan(CURATION_RUNS).filter(pl.col("curation_id") == curation_id).collect()
    counts_ok, recorded_counts = counts_agree(frame, recorded["counts"][0] if recorded.height else None)
    return [
        dg.AssetCheckResult(
            check_name=CURATED_CHECK,
            asset_key=CURATED_SUBSET.name,
            # Diff's fill rule and exact quotas both hit the rounded budget exactly.
            passed=checked.passed and not missing,
            metadata={
                "kept": checked.kept,
                "expected": checked.expected,
                "missing_columns": missing,
                **({"earlier_decisions_flipped": checked.flipped} if checked.flipped is not None else {}),
            },
        ),
        dg.AssetCheckResult(
            check_name=COUNTS_CHECK,
            asset_key=CURATED_SUBSET.name,
            # The lineage row's counts describe exactly the rows this version holds.
            passed=counts_ok,
            metadata={
                "rows": frame.height,
                "counted": sum(recorded_counts.values()),
                "counts": dg.MetadataValue.json(recorded_counts),
            },
        ),
    ]


def build_curated_subset(defaults: Settings | None = None) -> dg.AssetsDefinition:
    """curated_subset, its run config defaulting to ``defaults``' selection settings."""
    CurationConfig = with_defaults(CurationRunConfig, defaults)

    # Both tables come from one reading of the scores, the samples' ids and labels and their features.
    curated = {
        "group_name": "selection",
        "automation_condition": CURATE_WHEN_SCORES_CHANGE,
        "deps": [QAQ_SCORES.name, RAW_SAMPLES.name, SAMPLE_FEATURES.name],
    }

    @dg.multi_asset(
        name="curated_subset",
        specs=[
            table_spec(
                CURATED_SUBSET,
                "Every ingested sample with a keep/drop decision and its reason, after exact and near-duplicate "
                "removal. Strategies: rmi-band+checks (default with one model: execution, completeness, code and "
                "signature checks, then the paper's RMI band), rmi-band (the paper's rule), diff (strong/weak, default "
                "with two), rmi-band+code, ppl+checks, and the ifd, ppl and random baselines. Each run is a new Delta "
                "version, recorded in curation_runs.",
                **curated,
            ),
            table_spec(
                CURATION_RUNS,
                "The lineage of each curated version: its settings, the input tables' versions, the shards and "
                "models, the counts per decision and reason (qaq lineage).",
                **curated,
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(CURATED_CHECK, asset=CURATED_SUBSET.name, blocking=True),
            dg.AssetCheckSpec(COUNTS_CHECK, asset=CURATED_SUBSET.name, blocking=True),
        ],
    )
    def curated_subset(
        context: dg.AssetExecutionContext, config: CurationConfig, lake: LakeResource, models: ScoringModelsResource
    ) -> Iterator[dg.MaterializeResult]:
        started = time.perf_counter()
        store = lake.lake()
        selection = config.selection()
        try:
            version, curation = publish(store, models.model_keys(), selection, context.run.run_id, context.log)
        except CurationError as error:
            raise dg.Failure(description=str(error)) from error
        if curation.pending_shards:
            context.log.warning(
                f"curated without {len(curation.pending_shards)} shard(s) not yet scored by every model "
                f"({', '.join(models.model_keys())}): {', '.join(curation.pending_shards)}"
            )

        frame = store.scan(CURATED_SUBSET, version).collect()
        previous = previous_version(store, version)  # the diff and the stable-decisions check compare with it
        strategy = frame["strategy"][0] if frame.height else selection.resolved_strategy(len(models.model_keys()))
        warnings = curation_warnings(frame, selection.budget)
        for warning in warnings:
            context.log.warning(warning)
        kept = frame.filter(pl.col("decision") == KEEP)
        candidates = candidates_of(frame)
        yield dg.MaterializeResult(
            asset_key=CURATED_SUBSET.name,
            metadata={
                "dagster/row_count": frame.height,
                "kept": kept.height,
                "kept_fraction": round(kept.height / max(candidates.height, 1), 4),
                "strategy": strategy,
                "shards": curation.shards,
                "shards_pending": curation.pending_shards,
                "warnings": warnings,
                "models": dg.MetadataValue.json(curation.models),
                "input_versions": dg.MetadataValue.json(curation.input_versions),
                # The rule that ran (not "auto"), as the lineage records it.
                "selection_config": dg.MetadataValue.json({**selection.__dict__, "strategy": strategy}),
                "decisions": dg.MetadataValue.md(markdown_counts(frame, "reason_code")),
                "picture": dg.MetadataValue.md(markdown_image(curation_png(frame), "RMI, NLL(Q) and decisions")),
                "explained_examples": dg.MetadataValue.md(_explained(store, version, models, context)),
                "changes": dg.MetadataValue.md(_changes(store, version, previous)),
                "kept_distribution": dg.MetadataValue.json(distribution_summary(kept, list(CURATED_SCORES))),
                "table_uri": store.uri(CURATED_SUBSET),
                "delta_version": version,
                "seconds": round(time.perf_counter() - started, 2),
            },
            check_results=_check_results(store, frame, selection, curation.curation_id, previous),
        )
        yield dg.MaterializeResult(
            asset_key=CURATION_RUNS.name,
            metadata={
                "curation_id": curation.curation_id,
                "curated_version": version,
                "table_uri": store.uri(CURATION_RUNS),
            },
        )

    return curated_subset
