"""Per-sample scores from per-token log-probs: mean NLLs, RMI and both IFD variants.

All NLLs are natural-log, per token. ``rmi = nll_query - nll_query_given_answer``:
how much reading the answer first makes the query easier to predict.
"""

from __future__ import annotations

import polars as pl

from qaq_assets.lib.store.tables import QAQ_SCORES


def mean_nll(column: str) -> pl.Expr:
    return -pl.col(column).list.mean().cast(pl.Float64)


def scores_from_logprobs(token_logprobs: pl.LazyFrame) -> pl.LazyFrame:
    """``qaq_scores`` rows from ``token_logprobs`` rows."""
    return (
        token_logprobs.with_columns(
            nll_query=mean_nll("query_logprobs"),
            nll_query_given_answer=mean_nll("query_given_answer_logprobs"),
            nll_answer=mean_nll("answer_logprobs"),
            nll_answer_given_query=mean_nll("answer_given_query_logprobs"),
            # The end token after a cut answer follows text the model never saw end: no signal.
            nll_answer_end=pl.when(~pl.col("answer_truncated") & (pl.col("answer_end_logprobs").list.len() > 0)).then(
                -pl.col("answer_end_logprobs").list.sum().cast(pl.Float64)
            ),
        )
        .with_columns(
            rmi=pl.col("nll_query") - pl.col("nll_query_given_answer"),
            # Cherry LLM / Data-Juicer: loss ratio. Superfiltering: perplexity ratio.
            ifd_loss=pl.col("nll_answer_given_query") / pl.col("nll_answer"),
            ifd_ppl=(pl.col("nll_answer_given_query") - pl.col("nll_answer")).exp(),
        )
        .select(QAQ_SCORES.schema.names())
    )


def distribution_summary(frame: pl.DataFrame, columns: list[str]) -> dict[str, dict[str, float]]:
    """Mean and quartiles of each column, for run metadata."""
    summary = {}
    for column in columns:
        values = frame.get_column(column).drop_nulls()
        if values.len() == 0:
            continue
        summary[column] = {
            name: round(float(value), 4)
            for name, value in {
                "mean": values.mean(),
                "p25": values.quantile(0.25),
                "p50": values.quantile(0.5),
                "p75": values.quantile(0.75),
            }.items()
        }
    return summary
