"""Selection stage: the curated subset over every scored shard, one Delta version per run."""

import json
import time

import dagster as dg
import polars as pl

from qaq_assets.defs.ingest.assets import markdown_counts
from qaq_assets.defs.resources import LakeResource, ScoringModelsResource
from qaq_assets.lib.curation import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    Curation,
    CurationError,
    curate,
    decision_counts,
)
from qaq_assets.lib.lake import Lake
from qaq_assets.lib.metrics import distribution_summary
from qaq_assets.lib.plots import curation_png, markdown_image
from qaq_assets.lib.selection import KEEP, SelectionConfig, keep_count
from qaq_assets.lib.tables import CURATED_SUBSET, CURATION_RUNS

CURATED_CHECK = "schema_decisions_valid_and_budget_met"
COUNTS_CHECK = "lineage_counts_add_up"
# Curations that see a newer one commit while they run start again from the new inputs.
PUBLISH_ATTEMPTS = 5


class CurationConfig(dg.Config):
    strategy: str = "auto"
    budget: float = 0.25
    band_low: float = 0.5
    strata: int = 10
    diff_threshold: float = 0.1
    min_stratum_size: int = 10
    seed: int = 0
    near_duplicate_threshold: float = 0.85

    def selection(self) -> SelectionConfig:
        return SelectionConfig(**self.model_dump())


# Re-curate when any shard's scores change, without waiting for shards that are not
# scored yet (plain eager() would wait forever on a missing dynamic partition).
CURATE_WHEN_SCORES_CHANGE = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def publish(store: Lake, model_keys: list[str], selection: SelectionConfig, run_id: str, log) -> tuple[int, Curation]:
    """Curate and commit a new curated_subset version; returns it and its curation.

    The lineage row is written first (keyed by curation id, which every curated row carries),
    so a reader never finds a version without its lineage. A curation that sees another one
    commit after it read its inputs starts again from the new inputs, so a slow curation never
    publishes a stale snapshot over a newer one."""
    for attempt in range(PUBLISH_ATTEMPTS):
        base = store.version(CURATED_SUBSET)
        curation_id = run_id if attempt == 0 else f"{run_id}.{attempt}"
        try:
            curation = curate(store, model_keys, selection, curation_id=curation_id)
        except CurationError as error:
            raise dg.Failure(description=str(error)) from error
        if store.version(CURATED_SUBSET) != base:
            log.warning("a newer curation committed while this one read its inputs; curating again")
            continue
        store.append(CURATION_RUNS, curation.lineage_row(None, run_id, selection))
        version = store.overwrite(CURATED_SUBSET, curation.frame)
        store.upsert(CURATION_RUNS, curation.lineage_row(version, run_id, selection), keys=["curation_id"])
        if base is None or version == base + 1:
            return version, curation
        log.warning(f"another curation committed between this one's read and its commit (v{version}); curating again")
    raise dg.Failure(description=f"curated_subset kept changing under {PUBLISH_ATTEMPTS} curation attempts")


@dg.asset(
    deps=["qaq_scores"],
    group_name="selection",
    kinds={"polars", "deltalake"},
    automation_condition=CURATE_WHEN_SCORES_CHANGE,
    check_specs=[
        dg.AssetCheckSpec(CURATED_CHECK, asset="curated_subset", blocking=True),
        dg.AssetCheckSpec(COUNTS_CHECK, asset="curated_subset", blocking=True),
    ],
    description=(
        "Every ingested sample with a keep/drop decision and its reason, after exact and near-duplicate removal. "
        "Strategies: rmi-band (default with one model), diff (strong/weak, default with two), rmi-band+code, and "
        "the ifd, ppl and random baselines. Each run is a new Delta version, recorded in curation_runs."
    ),
)
def curated_subset(
    context: dg.AssetExecutionContext, config: CurationConfig, lake: LakeResource, models: ScoringModelsResource
) -> dg.MaterializeResult:
    started = time.perf_counter()
    store = lake.lake()
    selection = config.selection()
    version, curation = publish(store, models.model_keys(), selection, context.run.run_id, context.log)

    frame = store.scan(CURATED_SUBSET, version).collect()
    kept = frame.filter(pl.col("decision") == KEEP)
    candidates = frame.filter(~pl.col("reason_code").is_in([EXACT_DUPLICATE, NEAR_DUPLICATE]))
    expected = keep_count(candidates.height, selection.budget)
    valid = (
        frame.select(pl.struct("shard", "row_index").is_unique().all()).item()
        and kept["sample_id"].is_unique().all()
        and candidates.select(pl.col("rmi").is_finite().all()).item() is not False
        and frame["decision"].is_in(["keep", "drop"]).all()
    )
    missing = store.missing_columns(CURATED_SUBSET)
    recorded = store.scan(CURATION_RUNS).filter(pl.col("curation_id") == curation.curation_id).collect()
    recorded_counts = json.loads(recorded["counts"][0]) if recorded.height else {}
    stored_counts = decision_counts(frame)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "kept": kept.height,
            "kept_fraction": round(kept.height / max(candidates.height, 1), 4),
            "strategy": frame["strategy"][0] if frame.height else selection.resolved_strategy(len(models.models)),
            "shards": curation.shards,
            "shards_pending": curation.pending_shards,
            "models": dg.MetadataValue.json(curation.models),
            "input_versions": dg.MetadataValue.json(curation.input_versions),
            "selection_config": dg.MetadataValue.json(selection.__dict__),
            "decisions": dg.MetadataValue.md(markdown_counts(frame, "reason")),
            "picture": dg.MetadataValue.md(markdown_image(curation_png(frame), "RMI, NLL(Q) and decisions")),
            "kept_distribution": dg.MetadataValue.json(distribution_summary(kept, ["rmi", "nll_query", "ifd_loss"])),
            "table_uri": store.uri(CURATED_SUBSET),
            "delta_version": version,
            "seconds": round(time.perf_counter() - started, 2),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CURATED_CHECK,
                # Diff's fill rule and exact quotas both hit the rounded budget exactly.
                passed=bool(valid) and kept.height == expected and not missing,
                metadata={"kept": kept.height, "expected": expected, "missing_columns": missing},
            ),
            dg.AssetCheckResult(
                check_name=COUNTS_CHECK,
                # The lineage row's counts describe exactly the rows this version holds.
                passed=recorded_counts == stored_counts and sum(recorded_counts.values()) == frame.height,
                metadata={
                    "rows": frame.height,
                    "counted": sum(recorded_counts.values()),
                    "counts": dg.MetadataValue.json(recorded_counts),
                },
            ),
        ],
    )
