"""Score one shard with one model, through the content-addressed cache in the lake.

Samples already in ``score_cache`` under the same model fingerprint and template are
not scored again (wherever they were first seen). New samples are scored in chunks,
each chunk one Delta commit, so a killed run loses at most one chunk. The shard's
``token_logprobs`` rows then name the cache row of each sample: the per-token lists are stored
once, in the cache, and :func:`with_token_lists` reads them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa

from qaq_assets.lib.ingest.record_fields import text_sha
from qaq_assets.lib.scoring.backends.local import ScorerIdentity, ScoringBackend
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.scoring.engine.scorer import TRUNCATION_POLICY
from qaq_assets.lib.scoring.metrics import scores_from_logprobs
from qaq_assets.lib.scoring.token_lists import CACHE_KEY, earliest_rows, with_token_lists
from qaq_assets.lib.store.lake import Lake, partition_filter
from qaq_assets.lib.store.tables import (
    LOGPROBS,
    QAQ_SCORES,
    RAW_SAMPLES,
    SAMPLE_FEATURES,
    SCORE_CACHE,
    SCORED_PAIR,
    SUM_OF,
    TOKEN_LOGPROBS,
)

# What a token_logprobs row copies from its cache row: the small columns, not the lists.
PAIR_FACTS = [name for name in SCORED_PAIR if name not in CACHE_KEY]


@dataclass
class ScoringProgress:
    """Where a shard's scoring stands: reported before the first pass, after every pass and
    after every commit. Samples between commits are counted from the sequences scored."""

    samples_total: int
    samples_cached: int = 0
    samples_committed: int = 0
    sequences_in_flight: int = 0  # scored since the last commit (two per sample)
    tokens_done: int = 0  # forward tokens, template tokens included
    started: float = field(default_factory=time.perf_counter)
    rate_from: tuple[float, int] | None = None  # (time, samples done) when the first were done

    @property
    def samples_done(self) -> int:
        return min(self.samples_total, self.samples_committed + self.sequences_in_flight // 2)

    @property
    def tokens_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.tokens_done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the rate since the first samples were done: the model's load and the
        first pass's compilation are not the rate (they made first estimates several times too
        long). None until there are two points to measure between."""
        now, done = time.perf_counter(), self.samples_done
        if done == 0:
            return None
        if self.rate_from is None:
            self.rate_from = (now, done)
            return None
        since, before = self.rate_from
        if done <= before or now <= since:
            return None
        return (self.samples_total - done) / ((done - before) / (now - since))


@dataclass
class ShardScoring:
    token_logprobs: pl.DataFrame  # the shards' rows (keys of their cache rows, not the lists)
    rows: int  # one per (shard, distinct sample)
    samples_total: int
    samples_scored: int
    samples_cached: int
    tokens_scored: int
    forward_calls: int
    real_tokens: int
    padding_tokens: int
    seconds: float
    # Samples each worker scored, where several did (a device pool's GPUs, Ray's nodes).
    samples_by_replica: dict[str, int] = field(default_factory=dict)


def with_hashes(samples: pl.DataFrame) -> pl.DataFrame:
    """``samples`` with the exact-text cache key (the hashes ingest stored, where ``samples``
    carries them; computed here otherwise)."""
    for text, sha in (("instruction", "query_sha"), ("response", "answer_sha")):
        stored = samples[sha] if sha in samples.columns else pl.Series(sha, [None] * samples.height, pl.String)
        if stored.null_count():
            computed = [known or text_sha(value) for known, value in zip(stored, samples[text], strict=True)]
            stored = pl.Series(sha, computed, pl.String)
        samples = samples.with_columns(stored.alias(sha))
    return samples


def unique_pairs(samples: pl.DataFrame) -> pl.DataFrame:
    """One row per ``sample_id`` with the exact-text cache key."""
    pairs = with_hashes(samples.unique(subset="sample_id", keep="first", maintain_order=True))
    return pairs.select("sample_id", "instruction", "response", "query_sha", "answer_sha")


def _cache_scan(lake: Lake, identity: ScorerIdentity) -> pl.LazyFrame:
    # Everything that changes a stored number keys the cache (README: the score cache).
    return lake.scan(SCORE_CACHE).filter(
        (pl.col("model_fingerprint") == identity.fingerprint)
        & (pl.col("template_version") == identity.template_version)
        & (pl.col("max_sequence_tokens") == identity.max_sequence_tokens)
    )


def cached_keys(lake: Lake, identity: ScorerIdentity, pairs: pl.DataFrame) -> pl.DataFrame:
    """The cache keys of ``pairs`` the cache holds, each with the ``scored_at``, token counts and
    flags of its earliest row (the row read back, where two runs stored a sample at once)."""
    return earliest_rows(
        _cache_scan(lake, identity)
        .select(*CACHE_KEY, "scored_at", *PAIR_FACTS)
        .join(pairs.lazy().select(CACHE_KEY), on=CACHE_KEY, how="semi")
        .collect(),
        CACHE_KEY,
    )


def shard_members(samples: pl.DataFrame, shard: str) -> pl.DataFrame:
    """One row per (shard, sample) with its cache key: ``samples`` of several shards carry a
    ``shard`` column, those of one may not (``shard`` names it)."""
    if "shard" not in samples.columns:
        samples = samples.with_columns(shard=pl.lit(shard))
    members = samples.unique(subset=["shard", "sample_id"], keep="first", maintain_order=True)
    return with_hashes(members).select("shard", "sample_id", *CACHE_KEY)


def shard_rows(identity: ScorerIdentity, members: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """The shards' token_logprobs rows: each member with the cache row that holds its lists
    (``stored``: every member's key, with the ``scored_at``, counts and flags of a cache row)."""
    chosen = members.join(earliest_rows(stored, CACHE_KEY), on=CACHE_KEY, how="inner")
    if chosen.height != members.height:
        raise RuntimeError(f"{members.height} samples but {chosen.height} cached scores")
    return TOKEN_LOGPROBS.conform(
        chosen.with_columns(
            model_key=pl.lit(identity.model_key),
            model_id=pl.lit(identity.model_id),
            weights_sha256=pl.lit(identity.weights_sha256),
            dtype=pl.lit(identity.dtype),
            model_fingerprint=pl.lit(identity.fingerprint),
            template_version=pl.lit(identity.template_version),
            max_sequence_tokens=pl.lit(identity.max_sequence_tokens),
            truncation_policy=pl.lit(TRUNCATION_POLICY),
        )
    )


def _logprob_lists(arrays: list[np.ndarray]) -> pl.Series:
    """One list column from per-sample arrays, built from their concatenation and offsets (no
    Python float per value: at thousands of samples per second, ``tolist()`` was a fifth of the
    lake side's time)."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(array) for array in arrays], out=offsets[1:])
    values = np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.empty(0, np.float32)
    return pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)))


def _sums(arrays: list[np.ndarray]) -> pl.Series:
    """Each array's sum in float64 over its float32 values; null for an empty one (no tokens)."""
    sums = [float(np.asarray(a, np.float32).sum(dtype=np.float64)) if len(a) else None for a in arrays]
    return pl.Series(sums, dtype=pl.Float64)


def cache_rows(
    identity: ScorerIdentity, chunk: pl.DataFrame, scored, keep_lists: bool = ScoringConfig.keep_token_logprobs
) -> pl.DataFrame:
    """``score_cache`` rows of one scored chunk (its ``query_sha`` and ``answer_sha`` in order):
    every token's log-prob where ``keep_lists``, each list's sum always."""
    tokens, logprobs = scored.tokens, scored.logprobs
    columns = {
        "query_logprobs": [lp.query for lp in logprobs],
        "answer_given_query_logprobs": [lp.answer_given_query for lp in logprobs],
        "answer_logprobs": [lp.answer for lp in logprobs],
        "query_given_answer_logprobs": [lp.query_given_answer for lp in logprobs],
        "answer_end_logprobs": [lp.answer_end for lp in logprobs],
    }
    not_kept = pl.repeat(None, chunk.height, dtype=LOGPROBS, eager=True)
    return pl.DataFrame(
        {
            "model_fingerprint": pl.repeat(identity.fingerprint, chunk.height, eager=True),
            "template_version": pl.repeat(identity.template_version, chunk.height, eager=True),
            "max_sequence_tokens": pl.repeat(identity.max_sequence_tokens, chunk.height, eager=True),
            "query_sha": chunk["query_sha"],
            "answer_sha": chunk["answer_sha"],
            "n_query_tokens": pl.Series([len(t.query_ids) for t in tokens], dtype=pl.Int32),
            "n_answer_tokens": pl.Series([len(t.answer_ids) for t in tokens], dtype=pl.Int32),
            "query_truncated": [t.query_truncated for t in tokens],
            "answer_truncated": [t.answer_truncated for t in tokens],
            **{name: _logprob_lists(arrays) if keep_lists else not_kept for name, arrays in columns.items()},
            **{SUM_OF[name]: _sums(arrays) for name, arrays in columns.items()},
            "scored_at": pl.repeat(datetime.now(UTC), chunk.height, eager=True),
        }
    ).select([pl.col(name).cast(dtype) for name, dtype in SCORE_CACHE.schema.items()])


CPU_CHUNK_SAMPLES = 256
# Samples whose log-prob lists are read at once to compute their scores: the lists of a long-answer
# shard of 10^5 samples would be gigabytes.
SCORES_BATCH_ROWS = 4096
# A GPU pass holds up to 262,144 tokens: a chunk of short samples should fill several, so that
# passes run back to back, and a commit every few seconds loses little to a kill.
GPU_CHUNK_SAMPLES = 2048


def chunk_samples(backend: ScoringBackend) -> int:
    """Samples per commit when the setting is 0 (auto): by where the backend's passes run."""
    return GPU_CHUNK_SAMPLES if backend.on_gpu else CPU_CHUNK_SAMPLES


def score_shard(
    lake: Lake,
    samples: pl.DataFrame,
    shard: str,
    backend: ScoringBackend,
    commit_every: int = 0,
    on_progress: Callable[[ScoringProgress], None] | None = None,
    keep_lists: bool = ScoringConfig.keep_token_logprobs,
) -> ShardScoring:
    """Score the samples of ``shard`` not yet in the cache and return its token_logprobs rows,
    committing every ``commit_every`` samples (0: :func:`chunk_samples`); ``keep_lists``: store
    every token's log-prob, not only each list's sum."""
    started = time.perf_counter()
    commit_every = commit_every or chunk_samples(backend)
    identity = backend.identity
    pairs = unique_pairs(samples)
    cached = cached_keys(lake, identity, pairs)
    todo = pairs.join(cached, on=CACHE_KEY, how="anti")
    stored = [cached]  # every key of the shard with the scoring time of the row it reads back
    # Chunks of similar length pad less; the scorer sorts within a chunk too. A total order,
    # so a resumed run (or another backend) forms the same chunks and batches.
    todo = todo.with_columns(_length=pl.col("instruction").str.len_bytes() + pl.col("response").str.len_bytes())
    todo = todo.sort("_length", "sample_id").drop("_length")
    chunks = list(todo.iter_slices(commit_every))
    progress = ScoringProgress(samples_total=todo.height, samples_cached=pairs.height - todo.height)
    totals = {"tokens": 0, "forward_calls": 0, "real": 0, "padding": 0}
    by_replica: dict[str, int] = {}
    report = on_progress or (lambda _progress: None)
    report(progress)

    def on_pass(sequences: int, tokens: int) -> None:
        progress.sequences_in_flight += sequences
        progress.tokens_done += tokens
        report(progress)

    scored_chunks = backend.score_chunks(
        ((c["instruction"].to_list(), c["response"].to_list()) for c in chunks), on_pass
    )
    for chunk, scored in zip(chunks, scored_chunks, strict=True):
        rows = cache_rows(identity, chunk, scored, keep_lists)
        lake.append(SCORE_CACHE, rows)
        stored.append(rows.select(*CACHE_KEY, "scored_at", *PAIR_FACTS))
        totals["tokens"] += sum(len(t.query_ids) + len(t.answer_ids) for t in scored.tokens)
        totals["forward_calls"] += scored.forward_calls
        totals["real"] += scored.real_tokens
        totals["padding"] += scored.padding_tokens
        if scored.replica:
            by_replica[scored.replica] = by_replica.get(scored.replica, 0) + chunk.height
        progress.samples_committed += chunk.height
        progress.sequences_in_flight = 0
        # Remote backends report no passes: their forward tokens arrive with each chunk.
        progress.tokens_done = max(progress.tokens_done, totals["real"])
        report(progress)

    members = shard_members(samples, shard)
    return ShardScoring(
        token_logprobs=shard_rows(identity, members, pl.concat(stored, how="vertical_relaxed")),
        rows=members.height,
        samples_total=pairs.height,
        samples_scored=todo.height,
        samples_cached=pairs.height - todo.height,
        tokens_scored=totals["tokens"],
        forward_calls=totals["forward_calls"],
        real_tokens=totals["real"],
        padding_tokens=totals["padding"],
        seconds=time.perf_counter() - started,
        samples_by_replica=by_replica,
    )


def shard_samples(lake: Lake, shards: str | list[str]) -> pl.DataFrame:
    """The shards' samples as scoring reads them: text and, where ingest stored them, hashes."""
    wanted = pl.col("shard").is_in([shards] if isinstance(shards, str) else shards)
    hashes = lake.scan(SAMPLE_FEATURES).filter(wanted).select("shard", "row_index", "query_sha", "answer_sha")
    return (
        lake.scan(RAW_SAMPLES)
        .filter(wanted)
        .select("shard", "row_index", "sample_id", "instruction", "response")
        .join(hashes, on=["shard", "row_index"], how="left")
        .sort("shard", "row_index")
        .collect()
    )


def score_partition(
    lake: Lake,
    shards: str | list[str],
    backend: ScoringBackend,
    commit_every: int = 0,
    on_progress: Callable[[ScoringProgress], None] | None = None,
    keep_lists: bool = ScoringConfig.keep_token_logprobs,
) -> tuple[ShardScoring, int]:
    """Score shards with ``backend`` through the cache and replace their token_logprobs partitions
    in one commit; returns the scoring and the table version written."""
    label = shards if isinstance(shards, str) else ",".join(shards[:3])
    result = score_shard(lake, shard_samples(lake, shards), label, backend, commit_every, on_progress, keep_lists)
    partition = {"model_key": backend.identity.model_key, "shard": shards}
    return result, lake.replace_partition(TOKEN_LOGPROBS, result.token_logprobs, partition)


def write_qaq_scores(
    lake: Lake, shards: str | list[str], model_key: str, batch_rows: int = SCORES_BATCH_ROWS
) -> tuple[pl.DataFrame, int]:
    """Replace the shards' qaq_scores partitions from their token_logprobs (the lists read from the
    cache ``batch_rows`` samples at a time); returns the scores and version."""
    partition = {"model_key": model_key, "shard": shards}
    rows = lake.scan(TOKEN_LOGPROBS).filter(partition_filter(partition)).select(TOKEN_LOGPROBS.schema.names())
    batches = list(rows.collect().iter_slices(batch_rows))
    scores = pl.concat(
        [scores_from_logprobs(with_token_lists(lake, batch).lazy()).collect() for batch in batches]
        or [scores_from_logprobs(with_token_lists(lake, TOKEN_LOGPROBS.empty()).lazy()).collect()]
    )
    return scores, lake.replace_partition(QAQ_SCORES, scores, partition)
