"""The content-addressed score cache: nothing is scored twice, commits come in chunks."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.local import LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard, write_qaq_scores
from qaq_assets.lib.scoring.token_lists import LostLogprobsError, with_token_lists
from qaq_assets.lib.store.columns import SCORE_COLUMNS
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SCORE_CACHE, TOKEN_LISTS, TOKEN_LOGPROBS, TOKEN_SUMS
from qaq_assets_tests.helpers import CODE_PAIRS, rows_of


def new_scorer(tiny_model, template="plain") -> PairScorer:
    return PairScorer(
        tiny_model.model, build_layouts(template, tiny_model.tokenizer), tiny_model.tokenizer.pad_token_id
    )


def score(lake: Lake, path, shard, tiny_model, scorer, commit_every=256):
    """Every token's log-prob kept (not the default): these tests compare the lists."""
    samples = read_shard(path, shard).samples
    backend = LocalBackend(tiny_model, scorer, ScorerOptions())
    return score_shard(lake, samples, shard, backend, commit_every=commit_every, keep_lists=True)


def test_scores_each_sample_once_across_shards_and_reruns(lake, make_shard, tiny_model):
    scorer = new_scorer(tiny_model)
    first = score(lake, make_shard("one", CODE_PAIRS[:8]), "one", tiny_model, scorer)
    assert (first.samples_scored, first.samples_cached) == (8, 0) and first.forward_calls > 0

    # Four samples reappear in another shard: only the four new ones go through the model.
    second = score(lake, make_shard("two", CODE_PAIRS[4:]), "two", tiny_model, scorer)
    assert (second.samples_scored, second.samples_cached) == (4, 4)

    # A re-landed, unchanged shard costs no forward pass at all.
    again = score(lake, make_shard("one", CODE_PAIRS[:8]), "one", tiny_model, scorer)
    assert again.samples_scored == 0 and again.forward_calls == 0
    assert rows_of(lake, again).drop("shard").equals(rows_of(lake, first).drop("shard"))
    assert lake.scan(SCORE_CACHE).select(pl.len()).collect().item() == len(CODE_PAIRS)


def test_cached_rows_equal_freshly_scored_rows(lake, tmp_path, make_shard, tiny_model):
    path = make_shard("s", CODE_PAIRS[:5])
    cached = score(lake, path, "s", tiny_model, new_scorer(tiny_model))
    score(lake, path, "s", tiny_model, new_scorer(tiny_model))
    other = Lake(tmp_path / "other")
    fresh = score(other, path, "s", tiny_model, new_scorer(tiny_model))
    columns = ["sample_id", "query_logprobs", "query_given_answer_logprobs", "answer_logprobs"]
    assert rows_of(lake, cached).select(columns).equals(rows_of(other, fresh).select(columns))


def test_a_changed_template_is_scored_again(lake, make_shard, tiny_model):
    path = make_shard("s", CODE_PAIRS[:3])
    score(lake, path, "s", tiny_model, new_scorer(tiny_model, "plain"))
    chat = score(lake, path, "s", tiny_model, new_scorer(tiny_model, "chat"))
    assert chat.samples_scored == 3
    assert set(rows_of(lake, chat)["template_version"]) == {"chat-v2"}


def test_each_chunk_is_its_own_commit(lake, make_shard, tiny_model):
    result = score(lake, make_shard("s"), "s", tiny_model, new_scorer(tiny_model), commit_every=5)
    assert result.samples_scored == len(CODE_PAIRS)
    history = lake.delta_table(SCORE_CACHE).history()
    appends = [h for h in history if h["operation"] == "WRITE" and h["operationParameters"].get("mode") == "Append"]
    assert len(appends) == 3  # 12 samples in chunks of 5


def test_token_logprobs_rows_carry_identity_and_counts(lake, make_shard, tiny_model):
    result = score(lake, make_shard("s", CODE_PAIRS[:2]), "s", tiny_model, new_scorer(tiny_model))
    row = rows_of(lake, result).row(0, named=True)
    assert row["model_key"] == "tiny" and row["model_id"] == "random:tiny-llama:0"
    assert row["model_fingerprint"] == tiny_model.fingerprint and row["dtype"] == "float32"
    assert row["template_version"] == "plain-v2" and row["truncation_policy"] == "truncate-answer-tail-v1"
    assert len(row["query_logprobs"]) == row["n_query_tokens"] == len(row["query_given_answer_logprobs"])
    assert len(row["answer_logprobs"]) == row["n_answer_tokens"] == len(row["answer_given_query_logprobs"])
    # The lists are stored once, in the cache: the shard's rows name the cache row instead.
    assert result.token_logprobs.columns == TOKEN_LOGPROBS.schema.names()
    assert not [c for c, dtype in TOKEN_LOGPROBS.schema.items() if isinstance(dtype, pl.List)]


def test_commits_are_sized_by_where_the_passes_run_unless_set(tiny_model, tmp_path, make_shard, monkeypatch):
    from qaq_assets.lib.scoring import shard_scoring

    scorer = PairScorer(tiny_model.model, build_layouts("auto", tiny_model.tokenizer), 0)
    backend = LocalBackend(tiny_model, scorer, ScorerOptions())
    assert not backend.on_gpu and shard_scoring.chunk_samples(backend) == 256
    backend.on_gpu = True  # as a backend on a card says
    assert shard_scoring.chunk_samples(backend) == 2048
    backend.on_gpu = False
    monkeypatch.setattr(shard_scoring, "CPU_CHUNK_SAMPLES", 5)
    lake = Lake(tmp_path / "lake")
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    score_shard(lake, samples, "s", backend)  # commit_every 0: auto
    appends = [h for h in lake.delta_table(SCORE_CACHE).history() if h["operationParameters"].get("mode") == "Append"]
    assert len(appends) == 3  # 12 samples in chunks of 5


def test_a_shard_reads_back_one_row_per_sample_from_old_new_and_doubled_cache_rows(
    lake, tmp_path, make_shard, tiny_model
):
    """The read-back is bounded by its rows' scoring times: rows cached by an earlier shard, rows
    this shard scores, and the second rows a concurrent run stored later give one row each, equal
    to a fresh scoring, and nothing of the rest of the cache."""
    scorer = new_scorer(tiny_model)
    score(lake, make_shard("early", CODE_PAIRS[:6]), "early", tiny_model, scorer)
    # A concurrent run stored every sample of "early" again, an hour later.
    doubled = lake.scan(SCORE_CACHE).collect().with_columns(scored_at=pl.col("scored_at") + pl.duration(hours=1))
    lake.append(SCORE_CACHE, doubled)
    path = make_shard("later", CODE_PAIRS[3:9])  # three cached by "early" (each twice), three new
    mixed = score(lake, path, "later", tiny_model, scorer)
    assert (mixed.samples_scored, mixed.samples_cached) == (3, 3)
    other = Lake(tmp_path / "fresh")
    fresh = score(other, path, "later", tiny_model, new_scorer(tiny_model))
    columns = ["sample_id", "query_logprobs", "query_given_answer_logprobs", "answer_logprobs", "answer_end_logprobs"]
    assert rows_of(lake, mixed).select(columns).equals(rows_of(other, fresh).select(columns))


def test_the_lists_are_stored_once_and_read_back_for_rows_of_older_releases_too(lake, make_shard, tiny_model):
    result = score(lake, make_shard("s", CODE_PAIRS[:4]), "s", tiny_model, new_scorer(tiny_model))
    lake.replace_partition(TOKEN_LOGPROBS, result.token_logprobs, {"model_key": "tiny", "shard": "s"})
    stored = lake.scan(TOKEN_LOGPROBS).collect()
    assert not set(TOKEN_LISTS) & set(stored.columns)  # only the cache holds them
    expected = rows_of(lake, result)
    # A row of an older release: no scoring time, and its own copy of the lists (read from the cache instead).
    older = stored.with_columns(scored_at=None, query_logprobs=pl.lit([0.0], pl.List(pl.Float32)))
    assert with_token_lists(lake, older).drop("scored_at").sort("sample_id").equals(expected)
    # Older still: no sequence limit recorded, in the cache as in the rows.
    unlimited = pl.lit(None, pl.Int32).alias("max_sequence_tokens")
    lake.overwrite(SCORE_CACHE, lake.scan(SCORE_CACHE).collect().with_columns(unlimited))
    found = with_token_lists(lake, older.with_columns(unlimited)).drop("scored_at").sort("sample_id")
    assert found.equals(expected.with_columns(unlimited))


def test_rows_whose_cache_rows_are_gone_are_refused_with_the_shard_named(lake, make_shard, tiny_model):
    result = score(lake, make_shard("s", CODE_PAIRS[:4]), "s", tiny_model, new_scorer(tiny_model))
    cache = lake.scan(SCORE_CACHE).collect()
    lake.overwrite(SCORE_CACHE, cache.filter(pl.col("query_sha") != result.token_logprobs["query_sha"][0]))
    with pytest.raises(LostLogprobsError, match=r"^1 sample\(s\) of shard\(s\) s have no log-probs in score_cache"):
        with_token_lists(lake, result.token_logprobs)


def test_without_the_lists_the_cache_keeps_sums_and_gives_the_same_scores(lake, tmp_path, make_shard, tiny_model):
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    lean = Lake(tmp_path / "lean")
    scores = []
    for target, keep in ((lake, True), (lean, False)):
        backend = LocalBackend(tiny_model, new_scorer(tiny_model), ScorerOptions())
        result = score_shard(target, samples, "s", backend, keep_lists=keep)
        target.replace_partition(TOKEN_LOGPROBS, result.token_logprobs, {"model_key": "tiny", "shard": "s"})
        scores.append(write_qaq_scores(target, "s", "tiny")[0].sort("sample_id"))
    cache = lean.scan(SCORE_CACHE).collect()
    assert all(cache[name].null_count() == cache.height for name in TOKEN_LISTS)
    assert cache.select(list(TOKEN_SUMS)).null_count().sum_horizontal().item() == 0
    # Within float32's precision: a kept list's mean is taken in float32, a sum in float64.
    for name in SCORE_COLUMNS:
        np.testing.assert_allclose(scores[1][name].to_numpy(), scores[0][name].to_numpy(), atol=1e-5, err_msg=name)
    full, sums = (sum(p.stat().st_size for p in Path(at.uri(SCORE_CACHE)).rglob("*.parquet")) for at in (lake, lean))
    assert sums < full * 0.6  # 12 short samples: mostly the Parquet footer either way
