"""qaq explain: the decision behind one sample, and its query token by token."""

import numpy as np
import polars as pl

from qaq_assets.lib.reports.explain import (
    NOT_KEPT,
    SCORED_NOW,
    explain_row,
    find,
    html_fragment,
    markdown_fragment,
    text_report,
)
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, SCORE_CACHE, TOKEN_LOGPROBS
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, TINY_FLAGS, materialize_all, qaq


def test_explain_reads_an_old_version_and_shows_the_stored_log_probs(lake, make_shard, tiny_model):
    shard = make_shard("one", CODE_PAIRS)
    keep = {"keep_token_logprobs": True}
    materialize_all(lake, [shard], scoring=keep)
    first = lake.version(CURATED_SUBSET)
    materialize_all(lake, [shard], budget=0.5, scoring=keep)  # a newer version exists
    kept = lake.scan(CURATED_SUBSET, first).filter(pl.col("decision") == "keep").collect().row(0, named=True)

    explained = explain_row(lake, *find(lake, kept["sample_id"], first), tiny_model.tokenizer)
    assert explained.curated_version == first and explained.row["decision"] == "keep"
    assert explained.band is not None and explained.band[0] <= explained.row["rmi_rank"] <= explained.band[1]
    row = lake.scan(TOKEN_LOGPROBS).filter(pl.col("sample_id") == kept["sample_id"]).collect().row(0, named=True)
    # The lists are stored once, in the score cache.
    key = (pl.col("query_sha") == row["query_sha"]) & (pl.col("answer_sha") == row["answer_sha"])
    stored = lake.scan(SCORE_CACHE).filter(key).collect().row(0, named=True)
    gains = np.array([gain for _, gain in explained.query_tokens])
    expected = np.array(stored["query_given_answer_logprobs"]) - np.array(stored["query_logprobs"])
    np.testing.assert_allclose(gains, expected, rtol=0, atol=1e-6)
    assert "".join(name for name, _ in explained.query_tokens) == explained.row["instruction"]
    report = text_report(explained)
    assert "decision: keep (rmi_in_band)" in report and f"one:{kept['row_index']}" in report
    assert html_fragment(explained).count("<span") == len(explained.query_tokens)
    assert "log-prob gained by reading the answer first" in markdown_fragment(explained)  # the UI's table
    # By shard:row as well, through the command line.
    shown = qaq("explain", f"one:{kept['row_index']}", "--lake", lake.root, "--version", first, "--model", TINY)
    assert shown.returncode == 0 and kept["sample_id"] in shown.stdout
    missing = qaq("explain", "no-such-sample", "--lake", lake.root)
    assert missing.returncode == 2 and "no sample 'no-such-sample'" in missing.stderr


def test_explain_scores_the_token_view_again_where_scoring_kept_the_sums_only(tmp_path, make_shard):
    shard = make_shard("one", CODE_PAIRS)
    kept_lists, sums_only = tmp_path / "kept", tmp_path / "sums"
    for lake, flags in ((kept_lists, ["--keep-token-logprobs"]), (sums_only, [])):  # the default keeps sums
        curated = qaq("curate", shard, "--lake", lake, *TINY_FLAGS, *flags)
        assert curated.returncode == 0, curated.stderr
    assert Lake(sums_only).scan(SCORE_CACHE).select(pl.col("query_logprobs").is_null().all()).collect().item()
    kept = Lake(sums_only).scan(CURATED_SUBSET).filter(pl.col("decision") == "keep").collect()
    assert kept.height and kept["rmi"].is_finite().all()  # scored from the sums
    sample = kept["sample_id"][0]
    explain = ("explain", sample, "--model", TINY, "--template", "plain", "--dtype", "float32")
    stored, scored_now = (qaq(*explain, "--lake", lake) for lake in (kept_lists, sums_only))
    assert stored.returncode == 0 and scored_now.returncode == 0, stored.stderr + scored_now.stderr
    assert SCORED_NOW in scored_now.stdout and SCORED_NOW not in stored.stdout
    token_line = stored.stdout.splitlines()[-1]
    assert token_line and token_line == scored_now.stdout.splitlines()[-1]  # the same tokens and gains
    # Another template than the one that scored would not reproduce the scores: said, not shown.
    other = qaq("explain", sample, "--model", TINY, "--template", "chat", "--dtype", "float32", "--lake", sums_only)
    assert other.returncode == 0 and "differs from the one that scored it in template_version" in other.stdout
    unconfigured = qaq("explain", sample, "--lake", sums_only)  # the default model did not score it
    assert unconfigured.returncode == 0 and NOT_KEPT in unconfigured.stdout, unconfigured.stderr
