"""Scoring stage: token log-probs per shard x model, then per-sample QAQ scores."""

import math
import time

import dagster as dg
import polars as pl

from qaq_assets.defs.partitions import shard_and_model, shard_model_partitions
from qaq_assets.defs.resources import LakeResource, ProgressResource, ScoringModelsResource
from qaq_assets.lib.scoring.metrics import distribution_summary
from qaq_assets.lib.scoring.shard_scoring import ScoringProgress, score_partition, write_qaq_scores
from qaq_assets.lib.store.tables import QAQ_SCORES, TOKEN_LOGPROBS

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

    @dg.asset(
        partitions_def=partitions,
        deps=["raw_samples"],
        group_name="scoring",
        kinds={"pytorch", "deltalake"},
        pool="gpu",
        op_tags=op_tags or None,
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec(LOGPROBS_CHECK, asset="token_logprobs", blocking=True)],
        description=(
            "Per-token log-probs of the query and answer spans in both orders ([Q;A] and [A;Q]) for one "
            "shard and model, from two forward passes per sample. Samples already in score_cache are reused."
        ),
    )
    def token_logprobs(
        context: dg.AssetExecutionContext, lake: LakeResource, models: ScoringModelsResource, progress: ProgressResource
    ) -> dg.MaterializeResult:
        shard, model_key = shard_and_model(context)
        store = lake.lake()
        backend = models.scoring_backend(model_key)
        try:
            # Streamed in one commit: the log-prob lists of a large shard never sit in memory at once.
            result, version = score_partition(
                store,
                shard,
                backend,
                commit_every=models.commit_every,
                on_progress=_progress_logger(context, progress, shard, model_key),
            )
            forward = backend.describe_forward()
        finally:
            backend.close()
        frame = (
            store.scan(TOKEN_LOGPROBS, version)
            .filter((pl.col("model_key") == model_key) & (pl.col("shard") == shard))
            .select("sample_id", "query_truncated", "answer_truncated")
            .collect()
        )
        truncated = int((frame["answer_truncated"] | frame["query_truncated"]).sum())
        missing = store.missing_columns(TOKEN_LOGPROBS)
        padding = result.padding_tokens / max(result.padding_tokens + result.real_tokens, 1)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "samples": result.samples_total,
                "samples_scored": result.samples_scored,
                "samples_from_cache": result.samples_cached,
                "tokens_scored": result.tokens_scored,
                "forward_passes": result.forward_calls,
                "tokens_per_second": round(result.tokens_scored / result.seconds, 1) if result.seconds else 0.0,
                "padding_fraction": round(padding, 4),
                "truncated_samples": truncated,
                "seconds": round(result.seconds, 2),
                "template_version": backend.identity.template_version,
                "backend": models.backend,
                "forward": forward,
                "model": dg.MetadataValue.json(vars(backend.identity)),
                "table_uri": store.uri(TOKEN_LOGPROBS),
                "delta_version": version,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=LOGPROBS_CHECK,
                    passed=frame.height == result.samples_total
                    and frame["sample_id"].is_unique().all()
                    and not missing,
                    metadata={
                        "rows": frame.height,
                        "distinct_samples": result.samples_total,
                        "missing_columns": missing,
                    },
                )
            ],
        )

    @dg.asset(
        partitions_def=partitions,
        deps=[token_logprobs],
        group_name="scoring",
        kinds={"polars", "deltalake"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[dg.AssetCheckSpec(SCORES_CHECK, asset="qaq_scores", blocking=True)],
        description="Mean NLLs, RMI (nats/token) and IFD (loss and perplexity ratios) per sample, shard and model.",
    )
    def qaq_scores(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        shard, model_key = shard_and_model(context)
        store = lake.lake()
        scores, version = write_qaq_scores(store, shard, model_key)
        numeric = ["nll_query", "nll_query_given_answer", "nll_answer", "nll_answer_given_query", "rmi", "ifd_loss"]
        non_finite = sum(int(scores.select((~pl.col(c).is_finite()).fill_null(True).sum()).item()) for c in numeric)
        summary = distribution_summary(scores, ["rmi", "nll_query", "nll_query_given_answer", "ifd_loss"])
        missing = store.missing_columns(QAQ_SCORES)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": scores.height,
                "table_uri": store.uri(QAQ_SCORES),
                "delta_version": version,
                "distribution": dg.MetadataValue.json(summary),
                "rmi_mean": summary.get("rmi", {}).get("mean", math.nan),
                "seconds": round(time.perf_counter() - started, 2),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SCORES_CHECK,
                    passed=non_finite == 0 and scores["sample_id"].is_unique().all() and not missing,
                    metadata={"non_finite_or_null_values": non_finite, "missing_columns": missing},
                )
            ],
        )

    return [token_logprobs, qaq_scores]
