"""Baseline strategies, the code-aware band, near-duplicates and the code check, on hand-built tables."""

import random

import polars as pl
import pytest

from qaq_assets.lib.ingest.codecheck import check_code
from qaq_assets.lib.selection.config import STRATEGIES, SelectionConfig
from qaq_assets.lib.selection.dedup import near_duplicates
from qaq_assets.lib.selection.rules import select, sorted_positions


def table(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "sample_id": [f"s{i}" for i in range(n)],
        "shard": ["x"] * n,
        "nll_query": [1.0] * n,
        "rmi": [0.0] * n,
        "ifd_loss": [0.5] * n,
        "nll_answer_given_query": [1.0] * n,
        "code_status": ["valid"] * n,
    }
    return pl.DataFrame(base | columns)


def kept(frame: pl.DataFrame) -> list[str]:
    return sorted(frame.filter(pl.col("decision") == "keep")["sample_id"])


def test_ifd_drops_above_one_and_keeps_the_highest():
    scores = table(ifd_loss=[0.2, 1.3, 0.9, 0.95, 0.4, 1.01, 0.7, 0.1])
    selected = select("ifd", scores, None, SelectionConfig(budget=0.25))
    assert kept(selected) == ["s2", "s3"]
    reasons = dict(zip(selected["sample_id"], selected["reason"], strict=True))
    assert reasons["s1"].startswith("ifd_above_1") and reasons["s5"].startswith("ifd_above_1")
    assert reasons["s6"] == "ifd_below_cut" and reasons["s2"] == "ifd_top"


def test_ifd_keeps_fewer_when_too_few_are_at_most_one():
    selected = select("ifd", table(ifd_loss=[1.5, 2.0, 0.3, 1.1]), None, SelectionConfig(budget=0.5))
    assert kept(selected) == ["s2"]


def test_ppl_keeps_the_lowest_answer_nll():
    selected = select("ppl", table(nll_answer_given_query=[3.0, 0.5, 2.0, 0.7]), None, SelectionConfig(budget=0.5))
    assert kept(selected) == ["s1", "s3"]


def test_random_is_seeded_and_deterministic():
    scores = table(rmi=[0.0] * 40)
    first = kept(select("random", scores, None, SelectionConfig(budget=0.25, seed=1)))
    assert first == kept(select("random", scores.reverse(), None, SelectionConfig(budget=0.25, seed=1)))
    assert len(first) == 10 and first != kept(select("random", scores, None, SelectionConfig(budget=0.25, seed=2)))


def test_ties_in_a_score_break_by_sample_id():
    selected = select("ppl", table(nll_answer_given_query=[1.0] * 6), None, SelectionConfig(budget=0.5))
    assert kept(selected) == ["s0", "s1", "s2"]


def test_code_aware_band_drops_unparseable_answers_first_and_fills_the_budget():
    statuses = ["valid", "syntax_error", "valid", "no_code", "valid", "valid", "other_language", "valid"]
    scores = table(code_status=statuses, rmi=[float(i) for i in range(8)], nll_query=[float(i) for i in range(8)])
    selected = select("rmi-band+code", scores, None, SelectionConfig(budget=0.25))
    # 2 of 8 kept, both from the 5 valid ones (rmi 0,2,4,5,7): band from position floor(.5*5)=2 -> rmi 4, 5
    assert kept(selected) == ["s4", "s5"]
    reasons = dict(zip(selected["sample_id"], selected["reason"], strict=True))
    assert reasons["s1"].startswith("code_syntax_error") and reasons["s6"].startswith("code_other_language")


def test_every_strategy_meets_the_budget_exactly():
    n = 37
    scores = table(
        rmi=[float((i * 7) % n) for i in range(n)],
        nll_query=[float(i) for i in range(n)],
        ifd_loss=[(i % 10) / 10 for i in range(n)],
        nll_answer_given_query=[float(i % 5) for i in range(n)],
    )
    for strategy in ("rmi-band", "ppl", "random", "rmi-band+code"):
        selected = select(strategy, scores, None, SelectionConfig(budget=0.25))
        assert selected.height == n and len(kept(selected)) == 9, strategy  # floor(9.25 + .5)
        assert selected["reason"].null_count() == 0


def test_near_duplicates_point_at_the_earliest_twin():
    base = "\n".join(f"    value_{i} = compute(item_{i}, weight={i}) + offset_{i}" for i in range(30))
    texts = [base, "something entirely different " * 20, base + " # trailing comment", base.upper(), "x y z"]
    assert near_duplicates(texts, threshold=0.85) == {2: 0, 3: 0}
    assert near_duplicates(texts, threshold=1.0) == {}


@pytest.mark.parametrize(
    "instruction, answer, status, language",
    [
        ("Add one.", "def f(x):\n    return x + 1", "valid", "python"),
        ("Add one.", "Here it is:\n```python\ndef f(x):\n    return x\n```\nDone.", "valid", "python"),
        ("Add one.", "```python\ndef f(x):\n    if x:\n```", "syntax_error", "python"),
        ("Add one.", "def f(x):\n    for item in x:", "syntax_error", "python"),
        ("Add one.", "```javascript\nfunction f(x) { return x; }\n```", "valid", "javascript"),
        ("Add one in Python.", "```javascript\nfunction f(x) { return x; }\n```", "other_language", "javascript"),
        ("Add one in Rust.", "```rust\nfn f(x: i32) -> i32 { x + 1 }\n```", "valid", "rust"),
        ("Add one in Rust.", "```rust\nfn f(x: i32) -> i32 { x +\n```", "syntax_error", "rust"),
        ("A Go function.", "func f(x int) int {\n\treturn x + 1\n}", "valid", "go"),
        ("Add one in COBOL.", "```cobol\nADD 1 TO X.\n```", "unchecked", "other"),
        ("Add one.", "def f(x):\n    pass", "stub", "python"),
        ("Add one.", '```python\ndef f(x):\n    """Add one."""\n    ...\n```', "stub", "python"),
        ("Add one.", "Sure:\n\n```python\ndef f(x):\n    return x + 1", "cut_off", "python"),
        ("Add one.", "Great question! There are many ways to do this.", "no_code", None),
        ("Add one.", "You want a function `f(x)` that adds one. So f should add one.", "no_code", None),
        ("Add one.", "word", "no_code", None),
    ],
)
def test_code_status_per_language(instruction, answer, status, language):
    checked = check_code(instruction, answer)
    assert (checked.status, checked.language) == (status, language)


def test_every_rule_writes_a_known_reason_code_that_its_reason_names():
    """The code is data (the checks, explain and the counts read it); the prose starts with it."""
    from qaq_assets.lib.selection.config import STRATEGIES
    from qaq_assets.lib.selection.reasons import FILTERS, ReasonCode, is_filtered

    n = 60
    statuses = ["valid", "syntax_error", "no_code", "cut_off", "stub", "other_language", "check_failed:MemoryError"]
    scores = table(
        rmi=[float((i * 7) % n) for i in range(n)],
        nll_query=[float(i) for i in range(n)],
        ifd_loss=[(i % 13) / 10 for i in range(n)],
        nll_answer_given_query=[float(i % 5) for i in range(n)],
        code_status=[statuses[i % len(statuses)] if i % 3 == 0 else "valid" for i in range(n)],
        signature_status=[["match", "mismatch", "unused", "missing", "unknown"][i % 5] for i in range(n)],
        exec_status=[["passed", "failed", "timeout", "not_run", "raised", "ran"][i % 6] for i in range(n)],
        exec_detail=["assert f(1) == 2"] * n,
        nll_answer_end=[30.0 if i % 11 == 0 else 1.0 for i in range(n)],
        answer_ending=["code_block"] * n,
    )
    weak = scores.with_columns(rmi=pl.col("rmi").reverse())
    seen: set[str] = set()
    for strategy in STRATEGIES:
        selected = select(strategy, scores, weak, SelectionConfig(budget=0.25))
        codes = selected["reason_code"]
        assert codes.null_count() == 0, strategy
        assert set(codes) <= {reason.value for reason in ReasonCode}, strategy
        for reason_code, reason in zip(codes, selected["reason"], strict=True):
            assert reason.startswith(reason_code), (strategy, reason_code, reason)
        filtered = selected.filter(is_filtered(pl.col("reason_code")))
        assert (filtered["decision"] == "drop").all(), strategy
        seen |= set(codes)
    # Every check's code occurs here: none is written under another name.
    assert {reason.value for reason in FILTERS} <= seen


def test_every_strategy_returns_its_rows_in_the_order_it_was_given():
    # Curation pairs the decisions with the candidates by position: a rule that reorders its
    # rows would pair a decision with another sample.
    n = 60
    scores = table(
        rmi=[float((i * 7) % 13) for i in range(n)],
        nll_query=[float(i % 9) for i in range(n)],
        ifd_loss=[(i % 11) / 10 for i in range(n)],
        nll_answer_given_query=[float(i % 5) for i in range(n)],
        nll_answer_end=[float(i % 4) for i in range(n)],
        # A third fail the checks, so the band falls short of its share and fills from elsewhere.
        code_status=["syntax_error" if i % 3 == 0 else "valid" for i in range(n)],
    ).sample(fraction=1.0, shuffle=True, seed=3)
    weak = scores.with_columns(rmi=pl.col("rmi").reverse())
    for strategy in STRATEGIES:
        selected = select(strategy, scores, weak, SelectionConfig(budget=0.4, min_stratum_size=5))
        assert selected["sample_id"].to_list() == scores["sample_id"].to_list(), strategy


@pytest.mark.parametrize("seed", range(5))
def test_sorted_positions_are_the_places_a_sort_gives(seed):
    rng = random.Random(seed)
    n = 200
    frame = pl.DataFrame(
        {
            "group": [rng.randrange(4) for _ in range(n)],
            "score": [None if rng.random() < 0.1 else rng.randrange(10) / 3 for _ in range(n)],
            "sample_id": [f"s{i:03d}" for i in rng.sample(range(n), n)],
        }
    )
    for by, descending, nulls_last in [
        (["score", "sample_id"], False, False),
        (["score", "sample_id"], [True, False], True),
        (["group", "score", "sample_id"], [False, True, False], False),
    ]:
        places = frame.with_columns(_place=sorted_positions(frame, by, descending, nulls_last))
        expected = frame.sort(by, descending=descending, nulls_last=nulls_last)["sample_id"]
        assert places.sort("_place")["sample_id"].equals(expected)


def test_a_stratum_short_of_passing_rows_leaves_its_share_to_the_rows_nearest_the_centre_elsewhere():
    # Two strata of 20 (by nll_query); in the first only one answer passes the code check.
    n = 40
    scores = table(
        nll_query=[float(i) for i in range(n)],
        rmi=[float(i % 20) for i in range(n)],
        code_status=["valid" if i == 12 or i >= 20 else "syntax_error" for i in range(n)],
    )
    selected = select("rmi-band+code", scores, None, SelectionConfig(budget=0.25, strata=2, min_stratum_size=1))
    kept_ids = kept(selected)
    assert len(kept_ids) == 10  # the budget is met: 1 in the first stratum, its other 4 filled from the second
    second = selected.filter(pl.col("stratum") == 1).with_columns(distance=(pl.col("rmi_rank") - 0.625).abs())
    nearest = second.filter(pl.col("rmi_rank") <= 0.8).sort("distance", "sample_id").head(9)["sample_id"]
    assert sorted(kept_ids) == sorted(["s12", *nearest])
