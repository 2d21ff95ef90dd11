"""Per-sample scores from per-token log-probs: mean NLLs, RMI and both IFD variants.

All NLLs are natural-log, per token. ``rmi = nll_query - nll_query_given_answer``:
how much reading the answer first makes the query easier to predict.
"""

from __future__ import annotations

import polars as pl

from qaq_assets.lib.store.tables import QAQ_SCORES, SUM_OF


def _sum_of(column: str) -> pl.Expr:
    """The stored sum of a log-prob list: null for no tokens."""
    return pl.col(SUM_OF[column])


def mean_nll(column: str, count: str) -> pl.Expr:
    """A span's mean NLL per token: from its list where it was kept, else from its sum over the
    ``count`` column's tokens (keep_token_logprobs off)."""
    kept = pl.col(column)
    return (
        pl.when(kept.is_not_null())
        .then(-kept.list.mean().cast(pl.Float64))
        .when(pl.col(count) > 0)
        .then(-_sum_of(column) / pl.col(count))
    )


def scores_from_logprobs(token_logprobs: pl.LazyFrame) -> pl.LazyFrame:
    """``qaq_scores`` rows from ``token_logprobs`` rows with their lists and sums (see
    :func:`~qaq_assets.lib.scoring.token_lists.with_token_lists`)."""
    end = pl.col("answer_end_logprobs")
    return (
        token_logprobs.with_columns(
            nll_query=mean_nll("query_logprobs", "n_query_tokens"),
            nll_query_given_answer=mean_nll("query_given_answer_logprobs", "n_query_tokens"),
            nll_answer=mean_nll("answer_logprobs", "n_answer_tokens"),
            nll_answer_given_query=mean_nll("answer_given_query_logprobs", "n_answer_tokens"),
            # The end token after a cut answer follows text the model never saw end: no signal.
            nll_answer_end=pl.when(~pl.col("answer_truncated")).then(
                pl.when(end.is_not_null())
                .then(pl.when(end.list.len() > 0).then(-end.list.sum().cast(pl.Float64)))
                .otherwise(-_sum_of("answer_end_logprobs"))
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
