"""The per-token log-prob lists of token_logprobs rows, read from score_cache.

They are stored once, in the content-addressed cache; a token_logprobs row names its cache row
by the model's identity, the pair's content key and when it was scored.
"""

from __future__ import annotations

import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SCORE_CACHE, TOKEN_LISTS, TOKEN_SUMS

CACHE_KEY = ["query_sha", "answer_sha"]
# What a cache row is found by, from a token_logprobs row: the model and limits, then the text.
CACHE_ROW_KEY = ["model_fingerprint", "template_version", "max_sequence_tokens", *CACHE_KEY]


class LostLogprobsError(QaqError, RuntimeError):
    """token_logprobs rows whose score_cache rows are gone (a lost file): `qaq repair` finds them."""


def earliest_rows(rows: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """One row per ``key``: the earliest scored (two runs that stored a sample at once both hold
    it; every reader takes the same one)."""
    return rows.sort("scored_at", *key, nulls_last=True).unique(subset=key, keep="first", maintain_order=True)


def with_token_lists(lake: Lake, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` of token_logprobs with their per-token log-prob lists and each list's sum, read
    from score_cache, in the same order (lists null where they were not kept, sums null in rows
    of older releases). :class:`LostLogprobsError` where the cache no longer holds a row."""
    stored = {**TOKEN_LISTS, **TOKEN_SUMS}
    rows = rows.drop([name for name in stored if name in rows.columns])
    if rows.is_empty():
        return rows.with_columns([pl.lit(None, dtype).alias(name) for name, dtype in stored.items()])
    # Named as lists: the scan skips the partitions and files whose values exclude them.
    models, queries = (rows[name].unique().to_list() for name in ("model_fingerprint", "query_sha"))
    wanted = pl.col("model_fingerprint").is_in(models) & pl.col("query_sha").is_in(queries)
    # The rows' scoring times bound the files read (their min/max statistics): the cache's keys
    # are random and prune nothing. Rows of older releases carry no time: the whole cache then.
    if rows["scored_at"].null_count() == 0:
        wanted &= pl.col("scored_at").is_between(rows["scored_at"].min(), rows["scored_at"].max())
    lists = earliest_rows(
        lake.scan(SCORE_CACHE).filter(wanted).select(*CACHE_ROW_KEY, "scored_at", *stored).collect(),
        CACHE_ROW_KEY,
    ).drop("scored_at")
    # Rows of older releases may hold no limit (null): they match cache rows without one.
    found = lists.with_columns(_found=pl.lit(True))
    joined = rows.join(found, on=CACHE_ROW_KEY, how="left", maintain_order="left", nulls_equal=True)
    lost = joined.filter(pl.col("_found").is_null())
    if lost.height:
        shards = sorted(lost["shard"].unique().to_list())
        raise LostLogprobsError(
            f"{lost.height} sample(s) of shard(s) {', '.join(shards[:5])}{', ...' if len(shards) > 5 else ''} "
            "have no log-probs in score_cache (a lost file?): `qaq repair` drops their scores, the next "
            "`qaq curate` computes them again"
        )
    return joined.drop("_found")
