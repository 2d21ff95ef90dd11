"""Names, schemas and partition columns of every Delta table in the lake.

One place defines each table's shape so that writers, readers, asset checks and
empty partitions agree, and so a table can be pre-created before concurrent writers.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from qaq_assets.lib.store.columns import CURATED_SCORES, MODEL_IDENTITY, SCORE_COLUMNS, SELECTION_FEATURES

LOGPROBS = pl.List(pl.Float32)
CONVERSATION = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


# Tables with rows per shard are not partitioned by it: a shard is often one small file, and a
# partition per shard cost every table a Parquet file and a log entry per shard (a lake of
# one-record files was 48x their size). A commit writes one file for all the shards of a batch;
# a shard is read by the min/max statistics of `shard` in the log, and replaced with a predicate
# overwrite of its rows. Lakes written before keep their layout (Lake.partition_columns).
PER_SHARD: tuple[str, ...] = ()
PER_MODEL = ("model_key",)

# String columns rows are looked up by: they keep min/max statistics, as numbers, times and flags do.
LOOKUP_STRINGS = frozenset({"shard", "sample_id", "id", "model_key"})


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pl.Schema
    partition_by: tuple[str, ...] = ()
    # ZSTD: text and hex keys a fifth to a third smaller than with Snappy, at little write cost.
    compression: str = "ZSTD"
    # Dictionary encoding of every column but the statistics columns (see _writer_properties).
    dictionary: bool = True

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def statistics_columns(self) -> list[str]:
        """The columns whose Parquet files and Delta log entries carry min/max statistics: numbers,
        times, flags and the lookup strings. Free text, lists and structs carry none: no reader
        filters on them, and in a small file their statistics cost more than the data (a
        one-record shard's file and log entry were 8 KB for a 1.3 KB record, 2.4 KB without)."""
        return [
            column
            for column, dtype in self.schema.items()
            if column in LOOKUP_STRINGS or not (dtype == pl.String or isinstance(dtype, (pl.List, pl.Struct)))
        ]

    def conform(
        self, frame: pl.DataFrame, optional: tuple[str, ...] = (), leave_out: tuple[str, ...] = ()
    ) -> pl.DataFrame:
        """Select and cast ``frame`` to this table's columns (but ``leave_out``), in order;
        ``optional`` columns may be absent and are then null."""
        schema = {c: t for c, t in self.schema.items() if c not in leave_out}
        missing = [c for c in schema if c not in frame.columns and c not in optional]
        if missing:
            raise ValueError(f"{self.name}: missing columns {missing}")
        return frame.select(
            [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in schema.items()]
        )


SHARD_SOURCES = TableSpec(
    "shard_sources",
    pl.Schema(
        {
            "shard": pl.String,
            "path": pl.String,
            "size_bytes": pl.Int64,
            "mtime_ns": pl.Int64,
            "registered_at": pl.Datetime("us", "UTC"),
            # The source this shard read before a deliberate take-over (--replace-shard).
            "previous_path": pl.String,
            # The last accepted shrink (--allow-shrink): valid records held before and after, and when.
            "shrunk_from": pl.Int64,
            "shrunk_to": pl.Int64,
            "shrunk_at": pl.Datetime("us", "UTC"),
            # What the last successful ingest read: "<size>:<mtime>:<ingest options key>". A file
            # registered again unchanged, under the same options, is not read again.
            "ingested": pl.String,
        }
    ),
)

RAW_SAMPLES = TableSpec(
    "raw_samples",
    pl.Schema(
        {
            "shard": pl.String,
            "row_index": pl.Int64,
            "id": pl.String,
            "sample_id": pl.String,
            # QAQ's (Q, A): the user's text (or the dialogue before the answer) and the answer.
            "instruction": pl.String,
            "response": pl.String,
            # Every turn, where the record holds more than one exchange or a system turn.
            "conversation": CONVERSATION,
            # The record's own tests (tests/test/unit_tests/test_list), run against the answer at ingest.
            "tests": pl.String,
            # How the record came (pair, alpaca, messages, sharegpt): exports can write it back so.
            "record_style": pl.String,
            "label": pl.String,
            "is_duplicate": pl.Boolean,
            "duplicate_of": pl.String,
            "source_file": pl.String,
            "source_format": pl.String,
            # Fields no role took, as lossless JSON (lib/ingest/lossless_json.py).
            "extra_fields": pl.String,
            # The whole record as it came (lossless JSON; text it shares with instruction and
            # response refers to those columns): what export --format original writes.
            "original": pl.String,
            "ingested_at": pl.Datetime("us", "UTC"),
        }
    ),
    partition_by=PER_SHARD,
)

QUARANTINE = TableSpec(
    "quarantine",
    pl.Schema(
        {
            "shard": pl.String,
            "row_index": pl.Int64,
            "reason": pl.String,
            "detail": pl.String,
            "raw": pl.String,
            "source_file": pl.String,
            "quarantined_at": pl.Datetime("us", "UTC"),
        }
    ),
    partition_by=PER_SHARD,
)

# Per-sample features computed once at ingest (see lib/ingest/features.py): what curation reads
# instead of the text.
SAMPLE_FEATURES = TableSpec(
    "sample_features",
    pl.Schema(
        {
            "shard": pl.String,
            "row_index": pl.Int64,
            "sample_id": pl.String,
            "query_sha": pl.String,
            "answer_sha": pl.String,
            # What the checks found (lib/ingest/codecheck.py, lib/ingest/execution): see
            # columns.SELECTION_FEATURES.
            **SELECTION_FEATURES,
            # Delta has no unsigned types: the 128 uint32 values as 512 little-endian bytes, and
            # the 8 uint64 band keys with their bits read as int64 (they are only compared).
            "minhash": pl.Binary,
            "band_keys": pl.List(pl.Int64),
            # The benchmark item the sample shares word n-grams with (decontamination), and what
            # was checked: benchmarks, content hash, n-gram words and minimum shared (null: none).
            "benchmark_item": pl.String,
            "benchmark_key": pl.String,
            # Tests passed of those run (exec_status and exec_detail say how the run ended).
            "exec_passed": pl.Int32,
            "exec_total": pl.Int32,
        }
    ),
    partition_by=PER_SHARD,
    # Every curation reads each row's 512 random bytes of MinHash signature (its near-duplicate
    # candidates are spread over every file): Snappy decodes them 5x faster than ZSTD, which
    # saves nothing on random bytes (the table is ~19% larger: its hex keys compress less).
    compression="SNAPPY",
)

# One scored (query, answer) pair: its content key, token counts and truncation flags.
SCORED_PAIR = {
    "query_sha": pl.String,
    "answer_sha": pl.String,
    "n_query_tokens": pl.Int32,
    "n_answer_tokens": pl.Int32,
    "query_truncated": pl.Boolean,
    "answer_truncated": pl.Boolean,
}

# Its per-token log-probs of both passes, stored once: in score_cache, which token_logprobs
# rows refer to (lib/scoring/token_lists.py reads them back). Null where they were not kept
# (keep_token_logprobs off): each list's sum in TOKEN_SUMS then gives the scores.
TOKEN_LISTS = {
    "query_logprobs": LOGPROBS,
    "answer_given_query_logprobs": LOGPROBS,
    "answer_logprobs": LOGPROBS,
    "query_given_answer_logprobs": LOGPROBS,
    # The end of the answer's turn after [Q;A] (templates v2 on; null in older rows).
    "answer_end_logprobs": LOGPROBS,
}

# Each list's sum (null in rows of older releases, which always kept the lists), by list.
SUM_OF = {name: name.removesuffix("_logprobs") + "_logprob_sum" for name in TOKEN_LISTS}
TOKEN_SUMS = dict.fromkeys(SUM_OF.values(), pl.Float64)

# Content-addressed: one row per (model fingerprint, template, query text, answer text).
# Scoring commits here in chunks, so a killed run resumes from its last commit and a
# sample seen again in any shard is never rescored.
SCORE_CACHE = TableSpec(
    "score_cache",
    pl.Schema(
        {
            "model_fingerprint": pl.String,
            "template_version": pl.String,
            # The configured sequence limit (part of the key; null in rows of older releases,
            # which are then never reused).
            "max_sequence_tokens": pl.Int32,
            **SCORED_PAIR,
            **TOKEN_LISTS,
            **TOKEN_SUMS,
            "scored_at": pl.Datetime("us", "UTC"),
        }
    ),
    partition_by=("model_fingerprint",),
    # Nearly all of it is float log-probs, which a dictionary only inflates: on the bundled model's
    # lists, 393 KB with dictionaries and Snappy, 244 KB without and with ZSTD (lossless).
    dictionary=False,
)

# A shard's samples and the score_cache row that holds each one's log-probs: the model's
# identity and the pair's content key, plus ``scored_at`` (null in rows of older releases, which
# also held the lists themselves). The lists are not copied here: they would double the lake.
TOKEN_LOGPROBS = TableSpec(
    "token_logprobs",
    pl.Schema(
        {
            "shard": pl.String,
            "model_key": pl.String,
            "sample_id": pl.String,
            **MODEL_IDENTITY,
            "truncation_policy": pl.String,
            **SCORED_PAIR,
            "scored_at": pl.Datetime("us", "UTC"),
        }
    ),
    partition_by=PER_MODEL,
)

QAQ_SCORES = TableSpec(
    "qaq_scores",
    pl.Schema(
        {
            "shard": pl.String,
            "model_key": pl.String,
            "sample_id": pl.String,
            **MODEL_IDENTITY,
            "n_query_tokens": pl.Int32,
            "n_answer_tokens": pl.Int32,
            "query_truncated": pl.Boolean,
            "answer_truncated": pl.Boolean,
            # Per-sample scores in nats (columns.SCORES says what each is and who reads it).
            **dict.fromkeys(SCORE_COLUMNS, pl.Float64),
        }
    ),
    partition_by=PER_MODEL,
)

# Decisions, not text: readers join raw_samples at the version recorded in curation_runs.
CURATED_SUBSET = TableSpec(
    "curated_subset",
    pl.Schema(
        {
            "shard": pl.String,
            "row_index": pl.Int64,
            "sample_id": pl.String,
            "label": pl.String,
            "model_key": pl.String,
            **dict.fromkeys(CURATED_SCORES, pl.Float64),
            "stratum": pl.Int32,
            "rmi_rank": pl.Float64,
            "weak_rmi_rank": pl.Float64,
            "diff": pl.Float64,
            "keep_score": pl.Float64,
            "code_status": pl.String,
            "answer_language": pl.String,
            "exec_status": pl.String,
            "strategy": pl.String,
            "decision": pl.String,
            # What decided, as a code (rmi_in_band, exact_duplicate, ...); ``reason`` says it in words.
            "reason_code": pl.String,
            "reason": pl.String,
            "curation_id": pl.String,
        }
    ),
)

# Text columns of raw_samples that readers of a curated version join back (older versions
# stored them in curated_subset itself).
TEXT_COLUMNS = ("id", "instruction", "response", "conversation", "record_style", "original")

# Columns only some strategies produce (diff's ranks, the band's strata).
CURATED_STRATEGY_COLUMNS = ("stratum", "rmi_rank", "weak_rmi_rank", "diff", "keep_score")

CURATION_RUNS = TableSpec(
    "curation_runs",
    pl.Schema(
        {
            "curation_id": pl.String,
            "curated_version": pl.Int64,
            "created_at": pl.Datetime("us", "UTC"),
            "dagster_run_id": pl.String,
            "input_versions": pl.String,
            "shards": pl.List(pl.String),
            "models": pl.String,
            "template_version": pl.String,
            "selection_config": pl.String,
            "selection_config_sha": pl.String,
            "counts": pl.String,
            # Which benchmarks the curated shards were checked against, and how (JSON).
            "decontamination": pl.String,
        }
    ),
)

ALL_TABLES = (
    SHARD_SOURCES,
    RAW_SAMPLES,
    QUARANTINE,
    SAMPLE_FEATURES,
    SCORE_CACHE,
    TOKEN_LOGPROBS,
    QAQ_SCORES,
    CURATED_SUBSET,
    CURATION_RUNS,
)
