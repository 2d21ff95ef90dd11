"""Build a curated subset from the lake: every ingested row with a decision and a reason,
plus the lineage record that makes the version explainable and reproducible."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from qaq_assets.lib.lake import Lake
from qaq_assets.lib.selection import DIFF, DROP, SelectionConfig, select_diff, select_rmi_band
from qaq_assets.lib.tables import CURATED_SUBSET, CURATION_RUNS, QAQ_SCORES, RAW_SAMPLES


class CurationError(ValueError):
    """The lake's scores cannot be combined into one consistent curation."""


@dataclass
class Curation:
    frame: pl.DataFrame
    shards: list[str]
    pending_shards: list[str]
    input_versions: dict[str, int | None]
    models: list[dict]
    template_versions: list[str]

    def counts(self) -> dict[str, int]:
        reasons = self.frame.group_by("decision", "reason").len().sort("decision", "reason")
        return {f"{row['decision']}:{row['reason'].split(':')[0]}": row["len"] for row in reasons.iter_rows(named=True)}

    def lineage_row(self, curation_id: str, curated_version: int, run_id: str, config: SelectionConfig) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "curation_id": curation_id,
                    "curated_version": curated_version,
                    "created_at": datetime.now(UTC),
                    "dagster_run_id": run_id,
                    "input_versions": json.dumps(self.input_versions, sort_keys=True),
                    "shards": self.shards,
                    "models": json.dumps(self.models, sort_keys=True),
                    "template_version": ",".join(self.template_versions),
                    "selection_config": config.to_json(),
                    "selection_config_sha": config.sha(),
                    "counts": json.dumps(self.counts(), sort_keys=True),
                }
            ],
            schema=CURATION_RUNS.schema,
        )


def _model_identities(scores: pl.DataFrame, model_keys: list[str]) -> list[dict]:
    identities = scores.select(
        "model_key", "model_id", "weights_sha256", "dtype", "model_fingerprint", "template_version"
    ).unique()
    models = []
    for key in model_keys:
        rows = identities.filter(pl.col("model_key") == key)
        if rows.height == 0:
            raise CurationError(f"no qaq_scores for model {key!r}; score the shards with it first")
        if rows.height > 1:
            raise CurationError(
                f"qaq_scores for model {key!r} mix weights or templates {rows.to_dicts()}; "
                "re-materialize its shards with one configuration"
            )
        models.append(rows.row(0, named=True))
    return models


def _mark_duplicates(raw: pl.DataFrame) -> pl.DataFrame:
    """The first occurrence (by shard, row) of each sample is canonical; others point at it."""
    return (
        raw.sort("shard", "row_index")
        .with_columns(
            canonical=(pl.col("shard") + ":" + pl.col("row_index").cast(pl.String)).first().over("sample_id"),
            is_first=pl.int_range(pl.len()).over("sample_id") == 0,
        )
    )


def curate(lake: Lake, model_keys: list[str], config: SelectionConfig, curation_id: str) -> Curation:
    """Select over every shard scored by all ``model_keys`` (strong first)."""
    if not model_keys:
        raise CurationError("no models configured")
    strategy = config.resolved_strategy(len(model_keys))
    versions = {"raw_samples": lake.version(RAW_SAMPLES), "qaq_scores": lake.version(QAQ_SCORES)}
    raw = lake.scan(RAW_SAMPLES, versions["raw_samples"]).drop("ingested_at", "extra_fields").collect()
    scores = (
        lake.scan(QAQ_SCORES, versions["qaq_scores"]).filter(pl.col("model_key").is_in(model_keys)).collect()
    )
    models = _model_identities(scores, model_keys)

    shards_with = [set(scores.filter(pl.col("model_key") == key)["shard"].unique()) for key in model_keys]
    complete = set.intersection(*shards_with) & set(raw["shard"].unique())
    pending = sorted(set(raw["shard"].unique()) - complete)
    raw = _mark_duplicates(raw.filter(pl.col("shard").is_in(sorted(complete))))

    canonical = raw.filter(pl.col("is_first"))
    by_model = {
        key: canonical.select("shard", "sample_id").join(
            scores.filter(pl.col("model_key") == key).select("shard", "sample_id", "nll_query", "rmi", "ifd_loss"),
            on=["shard", "sample_id"],
            how="inner",
        )
        for key in model_keys
    }
    if by_model[model_keys[0]].height != canonical.height:
        missing = canonical.height - by_model[model_keys[0]].height
        raise CurationError(f"{missing} ingested samples have no score; re-materialize token_logprobs for their shards")
    strong = by_model[model_keys[0]]
    if strategy == DIFF:
        selected = select_diff(strong, by_model[model_keys[1]], config)
    else:
        selected = select_rmi_band(strong, config).with_columns(
            weak_rmi_rank=pl.lit(None, pl.Float64), diff=pl.lit(None, pl.Float64)
        )

    duplicates = raw.filter(~pl.col("is_first")).with_columns(
        decision=pl.lit(DROP), reason=pl.lit("exact_duplicate_of:") + pl.col("canonical")
    )
    frame = (
        pl.concat(
            [
                canonical.join(selected.drop("shard"), on="sample_id", how="inner"),
                duplicates,
            ],
            how="diagonal_relaxed",
        )
        .with_columns(model_key=pl.lit(model_keys[0]), strategy=pl.lit(strategy), curation_id=pl.lit(curation_id))
        .sort("shard", "row_index")
    )
    return Curation(
        frame=CURATED_SUBSET.conform(frame),
        shards=sorted(complete),
        pending_shards=pending,
        input_versions=versions,
        models=models,
        template_versions=sorted({m["template_version"] for m in models}),
    )
