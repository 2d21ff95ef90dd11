"""Scoring stage: token log-probs per shard x model (and the score cache they fill), then
per-sample QAQ scores."""

import math
import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from qaq_assets.defs.partitions import shard_model_partitions, shards_by_model
from qaq_assets.defs.resources import LakeResource, ProgressResource, ScoringModelsResource
from qaq_assets.defs.tables import table_metadata, table_spec
from qaq_assets.lib.scoring.metrics import distribution_summary
from qaq_assets.lib.scoring.shard_scoring import ScoringProgress, score_partition, write_qaq_scores
from qaq_assets.lib.store.columns import FINITE_SCORES, SUMMARISED_SCORES
from qaq_assets.lib.store.tables import QAQ_SCORES, SCORE_CACHE, TOKEN_LOGPROBS

LOGPROBS_CHECK = "schema_and_one_row_per_sample"
SCORES_CHECK = "schema_scores_finite_and_unique"


# The run log gets a progress line at most this often (the terminal bar moves every pass).
LOG_PROGRESS_SECONDS = 10.0


def _progress_logger(
    context: dg.AssetExecutionContext, progress_resource: ProgressResource, shard: str, model_key: str
):
    label = f"{shard}/{model_key}"
    last_logged: list[float] = []

    def report(progress: ScoringProgress) -> None:
        progress_resource.report(label, progress)
        now = time.monotonic()
        if not last_logged:
            context.log.info(
                f"scoring {shard} with {model_key}: {progress.samples_total:,} samples to score, "
                f"{progress.samples_cached:,} already scored (cache)"
            )
        elif progress.samples_done < progress.samples_total and now - last_logged[-1] < LOG_PROGRESS_SECONDS:
            return
        else:
            eta = progress.eta_seconds
            context.log.info(
                f"{label}: {progress.samples_done:,}/{progress.samples_total:,} samples, "
                f"{progress.tokens_done:,} tokens, {progress.tokens_per_second:,.0f} tokens/s, "
                f"ETA {'-' if eta is None else f'{eta:.0f}s'}"
            )
        last_logged.append(now)

    return report


def build_scoring_assets(model_keys: list[str], op_tags: dict | None = None) -> list[dg.AssetsDefinition]:
    partitions = shard_model_partitions(model_keys)

    scored = {"group_name": "scoring", "deps": ["raw_samples"], "automation_condition": dg.AutomationCondition.eager()}

    @dg.multi_asset(
        name="token_logprobs",
        specs=[
            table_spec(
                TOKEN_LOGPROBS,
                "Per-token log-probs of the query and answer spans in both orders ([Q;A] and [A;Q]) for shards "
                "and a model, from two forward passes per sample: each row names the score_cache row that "
                "holds its lists (stored once). Samples already in score_cache are reused.",
                kinds={"pytorch", "deltalake"},
                **scored,
            ),
            table_spec(
                SCORE_CACHE,
                "Every scored (model, template, query, answer) once, content-addressed, with its per-token "
                "log-prob lists: a sample seen again in any shard is never rescored, and a killed run resumes "
                "from its last commit.",
                kinds={"pytorch", "deltalake"},
                **scored,
            ),
        ],
        partitions_def=partitions,
        # Many small shards: one run scores a range of them, one commit per table.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="gpu",
        op_tags=op_tags or None,
        check_specs=[dg.AssetCheckSpec(LOGPROBS_CHECK, asset="token_logprobs", blocking=True)],
    )
    def token_logprobs(
        context: dg.AssetExecutionContext, lake: LakeResource, models: ScoringModelsResource, progress: ProgressResource
    ) -> Iterator[dg.MaterializeResult]:
        store = lake.lake()
        results = []
        for model_key, shards in shards_by_model(context).items():
            label = shards[0] if len(shards) == 1 else f"{len(shards)} shards"
            backend = models.scoring_backend(model_key)
            try:
                # One shard: streamed in one commit (a large shard's log-prob lists never sit in
                # memory at once); several small ones: collected, one commit for all.
                result, version = score_partition(
                    store,
                    shards[0] if len(shards) == 1 else shards,
                    backend,
                    commit_every=models.config.commit_every,
                    keep_lists=models.config.keep_token_logprobs,
                    on_progress=_progress_logger(context, progress, label, model_key),
                )
                forward = backend.describe_forward()
            finally:
                backend.close()
            results.append((model_key, shards, backend.identity, result, version, forward))
        yield from _logprobs_materialized(store, models.config.backend, results)

    @dg.asset(
        partitions_def=partitions,
        deps=[TOKEN_LOGPROBS.name],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="scoring",
        kinds={"polars", "deltalake"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec(SCORES_CHECK, asset="qaq_scores", blocking=True)],
        metadata=table_metadata(QAQ_SCORES),
        description="Mean NLLs, RMI (nats/token) and IFD (loss and perplexity ratios) per sample, shard and model.",
    )
    def qaq_scores(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        store = lake.lake()
        written = [
            write_qaq_scores(store, shards[0] if len(shards) == 1 else shards, model_key)
            for model_key, shards in shards_by_model(context).items()
        ]
        scores = pl.concat([frame for frame, _ in written])
        non_finite = sum(
            int(scores.select((~pl.col(c).is_finite()).fill_null(True).sum()).item()) for c in FINITE_SCORES
        )
        summary = distribution_summary(scores, list(SUMMARISED_SCORES))
        missing = store.missing_columns(QAQ_SCORES)
        unique = scores.select(pl.struct("model_key", "shard", "sample_id").is_unique().all()).item()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": scores.height,
                "table_uri": store.uri(QAQ_SCORES),
                "delta_version": max(version for _, version in written),
                "distribution": dg.MetadataValue.json(summary),
                "rmi_mean": summary.get("rmi", {}).get("mean", math.nan),
                "seconds": round(time.perf_counter() - started, 2),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SCORES_CHECK,
                    passed=non_finite == 0 and unique and not missing,
                    metadata={"non_finite_or_null_values": non_finite, "missing_columns": missing},
                )
            ],
        )

    return [token_logprobs, qaq_scores]


def _by_replica(scorings: list) -> dict[str, int]:
    merged: dict[str, int] = {}
    for scoring in scorings:
        for replica, samples in scoring.samples_by_replica.items():
            merged[replica] = merged.get(replica, 0) + samples
    return merged


def _logprobs_materialized(store, backend_name: str, results: list) -> Iterator[dg.MaterializeResult]:
    """token_logprobs' metadata and check over every (model, shards) scored in the run."""
    frames, checks = [], []
    for model_key, shards, _, result, version, _ in results:
        frame = (
            store.scan(TOKEN_LOGPROBS, version)
            .filter((pl.col("model_key") == model_key) & pl.col("shard").is_in(shards))
            .select("shard", "sample_id", "query_truncated", "answer_truncated")
            .collect()
        )
        frames.append(frame)
        checks.append(
            frame.height == result.rows and frame.select(pl.struct("shard", "sample_id").is_unique().all()).item()
        )
    frame = pl.concat(frames)
    scorings = [result for _, _, _, result, _, _ in results]

    def total(name: str) -> int:
        return sum(getattr(result, name) for result in scorings)

    identities = {model_key: vars(identity) for model_key, _, identity, _, _, _ in results}
    seconds = sum(result.seconds for result in scorings)
    padding = total("padding_tokens") / max(total("padding_tokens") + total("real_tokens"), 1)
    missing = store.missing_columns(TOKEN_LOGPROBS)
    yield dg.MaterializeResult(
        asset_key=TOKEN_LOGPROBS.name,
        metadata={
            "dagster/row_count": frame.height,
            "samples": total("samples_total"),
            "samples_scored": total("samples_scored"),
            "samples_from_cache": total("samples_cached"),
            "tokens_scored": total("tokens_scored"),
            "forward_passes": total("forward_calls"),
            "tokens_per_second": round(total("tokens_scored") / seconds, 1) if seconds else 0.0,
            "padding_fraction": round(padding, 4),
            "truncated_samples": int((frame["answer_truncated"] | frame["query_truncated"]).sum()),
            "seconds": round(seconds, 2),
            "template_version": ",".join(sorted({i["template_version"] for i in identities.values()})),
            "backend": backend_name,
            # Which worker (a Ray node, a GPU) scored how many samples, where several did.
            "samples_by_replica": dg.MetadataValue.json(_by_replica(scorings)),
            "forward": ", ".join(sorted({forward for *_, forward in results})),
            "model": dg.MetadataValue.json(next(iter(identities.values())) if len(identities) == 1 else identities),
            "table_uri": store.uri(TOKEN_LOGPROBS),
            "delta_version": max(version for *_, version, _ in results),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LOGPROBS_CHECK,
                asset_key=TOKEN_LOGPROBS.name,
                passed=all(checks) and not missing,
                metadata={"rows": frame.height, "distinct_samples": total("samples_total"), "missing_columns": missing},
            )
        ],
    )
    yield dg.MaterializeResult(
        asset_key=SCORE_CACHE.name,
        metadata={"samples_added": total("samples_scored"), "table_uri": store.uri(SCORE_CACHE)},
    )
