"""Metric and selection maths against values computed by hand."""

import math
import random

import polars as pl
import pytest

from qaq_assets.lib.scoring.metrics import scores_from_logprobs
from qaq_assets.lib.selection.rules import (
    SelectionConfig,
    keep_count,
    largest_remainder_quotas,
    select_diff,
    select_rmi_band,
    stratified_ranks,
)
from qaq_assets.lib.store.tables import TOKEN_LISTS, TOKEN_LOGPROBS, TOKEN_SUMS


def logprob_rows(rows: list[dict]) -> pl.LazyFrame:
    """token_logprobs rows with their lists, as ``with_token_lists`` gives them."""
    schema = {**TOKEN_LOGPROBS.schema, **TOKEN_LISTS, **TOKEN_SUMS}
    return pl.DataFrame([{**dict.fromkeys(schema), **row} for row in rows], schema=schema).lazy()


def test_scores_from_token_logprobs():
    scores = scores_from_logprobs(
        logprob_rows(
            [
                {
                    "sample_id": "a",
                    "query_logprobs": [-1.0, -3.0],
                    "query_given_answer_logprobs": [-1.0, -1.0],
                    "answer_logprobs": [-2.0, -2.0, -2.0],
                    "answer_given_query_logprobs": [-1.0, -2.0, -3.0],
                },
                {
                    "sample_id": "b",
                    "query_logprobs": [-0.5],
                    "query_given_answer_logprobs": [-1.5],
                    "answer_logprobs": [-2.0, -2.0],
                    "answer_given_query_logprobs": [-1.0, -1.0],
                },
            ]
        )
    ).collect()
    a, b = scores.to_dicts()
    assert (a["nll_query"], a["nll_query_given_answer"], a["rmi"]) == (2.0, 1.0, 1.0)
    assert (a["nll_answer"], a["nll_answer_given_query"], a["ifd_loss"], a["ifd_ppl"]) == (2.0, 2.0, 1.0, 1.0)
    assert b["rmi"] == pytest.approx(-1.0)
    assert b["ifd_loss"] == pytest.approx(0.5) and b["ifd_ppl"] == pytest.approx(math.exp(-1.0))


def test_scores_from_sums_equal_scores_from_lists_where_the_lists_were_not_kept():
    kept = {
        "sample_id": "a",
        "n_query_tokens": 2,
        "n_answer_tokens": 3,
        "answer_truncated": False,
        "query_logprobs": [-1.0, -3.0],
        "query_given_answer_logprobs": [-1.0, -1.5],
        "answer_logprobs": [-2.0, -2.5, -2.0],
        "answer_given_query_logprobs": [-1.0, -2.0, -3.5],
        "answer_end_logprobs": [-0.25, -0.5],
    }
    summed = {name: value for name, value in kept.items() if name not in TOKEN_LISTS}
    summed |= {sum_name: sum(kept[name]) for name, sum_name in zip(TOKEN_LISTS, TOKEN_SUMS, strict=True)}
    no_end = {**summed, "sample_id": "b", "answer_end_logprob_sum": None}  # no end-of-turn token scored
    from_lists, from_sums, without_end = scores_from_logprobs(logprob_rows([kept, summed, no_end])).collect().to_dicts()
    assert from_lists["nll_answer_end"] == 0.75 and without_end["nll_answer_end"] is None
    assert from_sums == pytest.approx(from_lists)


@pytest.mark.parametrize("n, budget, expected", [(10, 0.25, 3), (7, 0.25, 2), (4, 0.25, 1), (3, 0.1, 0), (5, 1.0, 5)])
def test_budget_rounds_half_up(n, budget, expected):
    assert keep_count(n, budget) == expected


def test_largest_remainder_quotas_sum_to_the_budget_with_ties_to_the_first_stratum():
    assert largest_remainder_quotas([5, 5, 5, 5], 0.25) == [2, 1, 1, 1]
    assert largest_remainder_quotas([10, 3], 0.5) == [5, 2]  # ideal 5, 1.5 -> total floor(6.5+.5)=7
    assert sum(largest_remainder_quotas([7, 11, 13], 0.3)) == keep_count(31, 0.3)


def test_strata_are_equal_count_bins_of_nll_query_and_ranks_average_ties():
    frame = pl.DataFrame(
        {"sample_id": list("abcdef"), "nll_query": [1.0, 2, 3, 4, 5, 6], "rmi": [0.3, 0.1, 0.3, 0.0, 0.5, 0.2]}
    )
    ranked = stratified_ranks(frame, strata=2).sort("sample_id")
    assert ranked["stratum"].to_list() == [0, 0, 0, 1, 1, 1]
    assert ranked["rmi_rank"].to_list() == [0.75, 0.0, 0.75, 0.0, 1.0, 0.5]


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_rmi_ranks_are_the_averaged_ranks_within_each_stratum_with_and_without_ties(seed, tied):
    rng = random.Random(seed)
    n = 500
    rmi = [rng.randrange(40) / 8 if tied else rng.random() for _ in range(n)]
    frame = pl.DataFrame(
        {"sample_id": [f"s{i:03d}" for i in rng.sample(range(n), n)], "nll_query": [rng.random() for _ in range(n)]}
    ).with_columns(rmi=pl.Series(rmi))
    ranked = stratified_ranks(frame, strata=4)
    within = pl.col("rmi").rank("average").over("stratum")
    expected = ranked.select((within - 1) / (pl.len().over("stratum") - 1)).to_series()
    assert ranked["rmi_rank"].equals(expected.alias("rmi_rank"))
    distinct = pl.col("rmi_position").n_unique().over("stratum") == pl.len().over("stratum")
    assert ranked.select(distinct).to_series().all()


def scores(n: int, rmi=None, nll=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sample_id": [f"s{i:02d}" for i in range(n)],
            "shard": ["x"] * n,
            "nll_query": nll or [float(i) for i in range(n)],
            "rmi": rmi or [float(i) for i in range(n)],
            "ifd_loss": [1.0] * n,
        }
    )


def test_rmi_band_keeps_the_50_to_75_band_and_names_both_extremes():
    selected = select_rmi_band(scores(8), SelectionConfig(budget=0.25, strata=1)).sort("rmi")
    assert selected["decision"].to_list() == ["drop"] * 4 + ["keep"] * 2 + ["drop"] * 2
    reasons = [r.split(":")[0] for r in selected["reason"]]
    assert reasons == ["rmi_below_band"] * 4 + ["rmi_in_band"] * 2 + ["rmi_above_band"] * 2


def test_rmi_band_per_stratum_quotas():
    # Two strata of 10 (by nll_query); RMI ascending within each; budget 5 of 20.
    frame = scores(20, rmi=[float(i % 10) for i in range(20)])
    selected = select_rmi_band(frame, SelectionConfig(budget=0.25, strata=2, min_stratum_size=1))
    kept = selected.filter(pl.col("decision") == "keep").sort("sample_id")["sample_id"].to_list()
    assert kept == ["s05", "s06", "s07", "s15", "s16"]


def test_small_inputs_use_fewer_strata():
    config = SelectionConfig(strata=10, min_stratum_size=10)
    assert [config.effective_strata(n) for n in (5, 25, 100, 10_000)] == [1, 2, 10, 10]


def test_ties_are_broken_by_sample_id_deterministically():
    frame = scores(8, rmi=[1.0] * 8)
    first = select_rmi_band(frame, SelectionConfig(budget=0.25, strata=1))
    again = select_rmi_band(frame.reverse(), SelectionConfig(budget=0.25, strata=1))
    kept = sorted(first.filter(pl.col("decision") == "keep")["sample_id"])
    assert kept == ["s04", "s05"]
    assert kept == sorted(again.filter(pl.col("decision") == "keep")["sample_id"])


def diff_inputs():
    strong = scores(4, rmi=[1.0, 2.0, 3.0, 4.0], nll=[1.0] * 4).with_columns(sample_id=pl.Series(list("abcd")))
    weak = scores(4, rmi=[4.0, 3.0, 1.0, 2.0], nll=[1.0] * 4).with_columns(sample_id=pl.Series(list("abcd")))
    return strong, weak


@pytest.mark.parametrize(
    "budget, kept, reasons",
    [
        (0.5, ["c", "d"], {"c": "diff_above_threshold", "d": "diff_above_threshold"}),
        (0.75, ["b", "c", "d"], {"b": "diff_fill", "c": "diff_above_threshold"}),
        (0.25, ["c"], {"d": "diff_over_budget", "a": "diff_below_threshold"}),
    ],
)
def test_strong_weak_diff(budget, kept, reasons):
    strong, weak = diff_inputs()
    selected = select_diff(strong, weak, SelectionConfig(strategy="diff", budget=budget, strata=1))
    by_id = {row["sample_id"]: row for row in selected.iter_rows(named=True)}
    # ranks: strong a0 b1/3 c2/3 d1; weak a1 b2/3 c0 d1/3 -> diff a-1 b-1/3 c2/3 d2/3
    assert by_id["c"]["diff"] == pytest.approx(2 / 3) and by_id["a"]["diff"] == pytest.approx(-1)
    assert sorted(s for s, r in by_id.items() if r["decision"] == "keep") == kept
    for sample, reason in reasons.items():
        assert by_id[sample]["reason"].split(":")[0] == reason


def test_config_validation():
    with pytest.raises(ValueError):
        SelectionConfig(budget=0)
    with pytest.raises(ValueError):
        SelectionConfig(strategy="diff").resolved_strategy(1)
    assert SelectionConfig().resolved_strategy(2) == "diff"
    assert SelectionConfig().sha() == SelectionConfig().sha() != SelectionConfig(budget=0.3).sha()


def test_diff_refuses_weak_scores_that_miss_samples():
    strong, weak = diff_inputs()
    with pytest.raises(ValueError, match="weak model scores cover 3 of 4 samples"):
        select_diff(strong, weak.filter(pl.col("sample_id") != "b"), SelectionConfig(strategy="diff", strata=1))


def test_selection_defaults_are_the_declared_settings():
    from dataclasses import fields

    from qaq_assets.lib.settings import BY_NAME, SELECTION, in_group

    declared = {s.name for s in in_group(SELECTION)}
    assert {f.name for f in fields(SelectionConfig)} == declared
    assert all(getattr(SelectionConfig(), name) == BY_NAME[name].default for name in declared)


def test_checks_rule_drops_incomplete_and_mismatched_answers_then_fills_the_budget():
    from qaq_assets.lib.selection.rules import select_rmi_band_checks

    # Answers ending in bare code expect words after them (a high end NLL), sentences do not:
    # completeness compares each answer with the median of those that end the same way.
    endings = ["code"] * 20 + ["prose"] * 20
    ends = [8.0 + 0.01 * i for i in range(20)] + [1.0 + 0.01 * i for i in range(20)]
    ends[5], ends[25] = 14.0, 6.0  # cut off: 6 and 5 nats above their kind's median
    ends[38:] = [None, None]
    frame = scores(40).with_columns(
        code_status=pl.lit("valid"),
        signature_status=pl.Series(["mismatch", "unused", "unknown", None] + ["match"] * 36),
        answer_ending=pl.Series(endings),
        nll_answer_end=pl.Series(ends, dtype=pl.Float64),
    )
    config = SelectionConfig(budget=0.25, strata=1, completeness_margin=4.0)
    selected = select_rmi_band_checks(frame, config)
    incomplete = selected.filter(pl.col("reason").str.starts_with("answer_incomplete")).sort("nll_answer_end")
    assert incomplete["nll_answer_end"].to_list() == [6.0, 14.0]  # by evidence, not by quota
    assert incomplete["reason"][0].startswith("answer_incomplete: the end of the turn is 4.9")
    assert "than for the median answer ending in prose" in incomplete["reason"][0]
    assert selected.filter(pl.col("decision") == "keep").height == 10
    flagged = selected.filter(pl.col("reason").str.starts_with("signature_")).sort("sample_id")
    assert flagged["reason"].str.extract(r"^(\w+)").to_list() == ["signature_mismatch", "signature_unused"]
    assert flagged["signature_status"].to_list() == ["mismatch", "unused"]  # unknown and missing are no evidence
    assert selected.filter(pl.col("nll_answer_end").is_null())["reason"].str.starts_with("answer_incomplete").sum() == 0
    # Nothing is dropped as incomplete when nothing is.
    complete = select_rmi_band_checks(frame.with_columns(nll_answer_end=pl.lit(2.0)), config)
    assert complete.filter(pl.col("reason").str.starts_with("answer_incomplete")).height == 0


def test_the_band_keeps_its_place_among_all_samples_when_checks_remove_rows():
    from qaq_assets.lib.selection.rules import select_rmi_band_checks

    frame = scores(100).with_columns(
        code_status=pl.Series(["syntax_error" if 50 <= i < 75 else "valid" for i in range(100)]),
        signature_status=pl.lit("unknown"),
        nll_answer_end=pl.lit(0.1),
        answer_ending=pl.lit("fence"),
    )
    selected = select_rmi_band_checks(frame, SelectionConfig(budget=0.25, strata=1, band_guard=0.9))
    kept = selected.filter(pl.col("decision") == "keep")
    # The whole nominal band (ranks 0.50-0.75) failed the checks: the band widens around its
    # centre on both sides, ranked among all 100, and never climbs above the guard (the echoes).
    assert kept.height == 25 and kept["rmi_rank"].max() <= 0.9 and kept["rmi_rank"].min() < 0.5
    above = selected.filter(pl.col("rmi_rank") > 0.9)
    assert (above["decision"] == "drop").all() and above["reason"].str.contains("above the guard 0.9").all()
    # Without checks removing rows, the same rule keeps the paper's band.
    plain = select_rmi_band_checks(
        frame.with_columns(code_status=pl.lit("valid")), SelectionConfig(budget=0.25, strata=1)
    )
    ranks = plain.filter(pl.col("decision") == "keep")["rmi_rank"]
    assert ranks.min() >= 0.49 and ranks.max() <= 0.76


def test_a_filter_whose_reason_reads_a_window_is_refused():
    from qaq_assets.lib.selection.rules import Filter, _with_filter_reasons

    # Reasons are built for the failing rows alone: a window there would see only those.
    median = pl.col("rmi").median().over("shard")
    windowed = Filter(pl.col("rmi") > median, pl.lit("high"), pl.format("above the median {}", median))
    with pytest.raises(ValueError, match="reads a window"):
        _with_filter_reasons(scores(4), [windowed])
    with pytest.raises(ValueError, match="reads a window"):
        _with_filter_reasons(scores(4), [Filter(pl.col("rmi") > median, pl.lit("high"), pl.lit("high"))])
    declared = Filter(
        pl.col("rmi") > pl.col("_m"), pl.lit("high"), pl.format("above {}", pl.col("_m")), (median.alias("_m"),)
    )
    reasons = _with_filter_reasons(scores(4), [declared])
    assert reasons["_filtered"].to_list() == [None, None, "above 1.5", "above 1.5"]
    assert reasons.columns == [*scores(4).columns, "_filtered_code", "_filtered"]


def test_completeness_compares_answers_of_one_language_where_there_are_enough():
    from qaq_assets.lib.selection.rules import MIN_COMPLETENESS_PEERS, select_rmi_band_checks

    # Unfenced Java ends where the model expects more (a class brace), Python where it does not:
    # against the pooled median every Java answer would look cut off.
    peers = MIN_COMPLETENESS_PEERS
    languages = ["python"] * 3 * peers + ["java"] * peers
    ends = [1.0 + 0.01 * i for i in range(3 * peers)] + [6.0 + 0.01 * i for i in range(peers)]
    ends[3 * peers + 3] = 10.5  # one Java answer really cut: 4.4 nats above Java's median
    frame = scores(4 * peers).with_columns(
        code_status=pl.lit("valid"),
        signature_status=pl.lit("match"),
        answer_ending=pl.lit("code"),
        answer_language=pl.Series(languages),
        nll_answer_end=pl.Series(ends, dtype=pl.Float64),
    )
    selected = select_rmi_band_checks(frame, SelectionConfig(budget=0.25, strata=1))
    incomplete = selected.filter(pl.col("reason").str.starts_with("answer_incomplete"))
    assert incomplete["nll_answer_end"].to_list() == [10.5]
    assert "than for the median java answer ending in code" in incomplete["reason"][0]
    # Too few answers of a language: they are compared with every answer of their ending.
    few = frame.head(3 * peers + peers // 2)
    pooled = select_rmi_band_checks(few, SelectionConfig(budget=0.25, strata=1))
    assert pooled.filter(pl.col("reason").str.starts_with("answer_incomplete")).height == peers // 2


def test_ppl_checks_keeps_the_most_likely_answers_under_the_guard_after_the_checks():
    from qaq_assets.lib.selection.rules import select_ppl_checks

    # 20 answers, one stratum; RMI rises with the id; the model finds the answer likelier as id falls,
    # except s19 (the top RMI rank: an echo) which is the likeliest of all.
    nll_answer = [1.0 + 0.1 * i for i in range(20)]
    nll_answer[19] = 0.1
    frame = scores(20).with_columns(
        code_status=pl.Series(["syntax_error"] + ["valid"] * 19),
        signature_status=pl.lit("match"),
        nll_answer_given_query=pl.Series(nll_answer),
        nll_answer_end=pl.lit(1.0),
    )
    selected = select_ppl_checks(frame, SelectionConfig(budget=0.25, strata=1)).sort("sample_id")
    kept = selected.filter(pl.col("decision") == "keep")["sample_id"].to_list()
    assert kept == ["s01", "s02", "s03", "s04", "s05"]  # s00 fails a check, s19 is above the guard
    reasons = dict(zip(selected["sample_id"], selected["reason"], strict=True))
    assert reasons["s00"].startswith("code_syntax_error") and reasons["s19"].startswith("rmi_above_band")
    assert reasons["s01"].startswith("likely_kept: NLL(A|Q) 1.1 in NLL(Q) stratum 0, the kept reach 1.5")
    assert reasons["s06"].startswith("likely_below: NLL(A|Q) 1.6")
