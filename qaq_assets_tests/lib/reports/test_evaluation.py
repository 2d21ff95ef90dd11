"""Evaluation metrics against hand-computed values, the report, and `qaq evaluate`."""

import polars as pl
import pytest

from qaq_assets.lib.reports.evaluation import auroc, evaluate, write_report
from qaq_assets.lib.selection.curation import Candidates
from qaq_assets_tests.helpers import qaq


@pytest.mark.parametrize(
    "clean, defect, expected",
    [
        ([3.0, 2.0], [1.0], 1.0),
        ([1.0], [2.0, 3.0], 0.0),
        ([1.0], [1.0], 0.5),
        ([2.0, 0.0], [1.0], 0.5),
        ([1.0], [None], 1.0),
        ([None], [None, 0.0], 0.25),
        ([], [1.0], None),
    ],
)
def test_auroc(clean, defect, expected):
    assert auroc(clean, defect) == expected


def candidates() -> Candidates:
    # 8 samples, rmi rising with id; labels: s0 chatty (lowest rmi), s7 echo (highest), s3 truncated.
    labels = ["chatty", "none", "none", "truncated", "none", "none", "none", "echo"]
    n = len(labels)
    strong = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "shard": ["x"] * n,
            "nll_query": [1.0] * n,
            "rmi": [float(i) for i in range(n)],
            "ifd_loss": [0.1 * i for i in range(n)],
            "nll_answer_given_query": [float(n - i) for i in range(n)],
            # The truncated answer's turn is the least expected to end where it does.
            "nll_answer_end": [9.0 if label == "truncated" else 1.0 + 0.1 * i for i, label in enumerate(labels)],
            "code_status": ["valid"] * n,
            "signature_status": ["match"] * n,
        }
    )
    canonical = strong.select("sample_id").with_columns(label=pl.Series(labels))
    return Candidates(
        canonical=canonical,
        dropped=pl.DataFrame(),
        strong=strong,
        weak=None,
        shards=["x"],
        pending_shards=[],
        input_versions={},
        models=[],
        benchmarks=[],
    )


def test_rates_and_recall_per_defect_type():
    evaluation = evaluate(candidates(), budgets=[0.25], strategies=["rmi-band", "ppl"])
    assert evaluation.defect_types == ["chatty", "echo", "truncated"]
    band = evaluation.rates.filter(pl.col("strategy") == "rmi-band").row(0, named=True)
    # 2 of 8 kept, band positions 4-5 -> s4, s5: both clean.
    assert band["kept"] == 2 and band["defect_rate_input"] == 3 / 8 and band["defect_rate_kept"] == 0.0
    assert band["removed_chatty"] == band["removed_echo"] == band["removed_truncated"] == 1.0
    ppl = evaluation.rates.filter(pl.col("strategy") == "ppl").row(0, named=True)
    # lowest NLL(A|Q) = highest id: s7 (echo) and s6.
    assert ppl["defect_rate_kept"] == 0.5 and ppl["removed_echo"] == 0.0
    aurocs = {(r["strategy"], r["defect"]): r["auroc"] for r in evaluation.aurocs.iter_rows(named=True)}
    # ppl's score is -NLL(A|Q) = rising with id: echo s7 outranks every clean sample.
    assert aurocs[("ppl", "echo")] == 0.0 and aurocs[("ppl", "chatty")] == 1.0


def test_report_has_tables_and_plots(tmp_path):
    evaluation = evaluate(candidates(), budgets=[0.25, 0.5])
    report = write_report(evaluation, tmp_path / "report")
    text = report.read_text()
    assert "| rmi-band | 0.250 |" in text and "AUROC" in text
    for picture in ("scores_by_defect.png", "kept_defect_rate_vs_budget.png"):
        assert (tmp_path / "report" / picture).read_bytes()[:4] == b"\x89PNG"
    assert set(evaluation.rates["strategy"]) == {
        "rmi-band",
        "ifd",
        "ppl",
        "random",
        "rmi-band+code",
        "rmi-band+checks",
        "ppl+checks",
    }
    signals = {(r["signal"], r["defect"]): r["auroc"] for r in evaluation.signals.iter_rows(named=True)}
    # The truncated answer has the highest end-of-turn NLL: every clean sample outranks it.
    assert signals[("completeness: -nll_answer_end", "truncated")] == 1.0
    assert "AUROC of single signals" in text


def test_evaluation_needs_labels():
    unlabelled = candidates()
    unlabelled.canonical = unlabelled.canonical.with_columns(label=pl.lit(None, pl.String))
    with pytest.raises(ValueError, match="no planted labels"):
        evaluate(unlabelled, budgets=[0.25])


def test_evaluate_command(tmp_path, make_shard):
    from qaq_assets_tests.helpers import CODE_PAIRS, TINY

    shard = make_shard(
        "labelled",
        CODE_PAIRS,
        extra_records=[
            {"instruction": "Reverse a list.", "response": "Great question! Many ways exist.", "defect": "chatty"},
            {"instruction": "Add two numbers.", "response": "def add(a, b):\n    if a:", "defect": "truncated"},
        ],
    )
    result = qaq(
        "evaluate",
        str(shard),
        "--lake",
        str(tmp_path / "lake"),
        "--model",
        TINY,
        "--budgets",
        "0.25,0.5",
        "--report-dir",
        str(tmp_path / "eval"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| rmi-band+code | 0.250 |" in result.stdout and (tmp_path / "eval" / "report.md").is_file()


def test_languages_table_counts_each_languages_clean_answers_kept_and_dropped_as_incomplete():
    """Per language asked for (else answered): the default rule's decisions, computed once whether
    or not the default was among the strategies run."""
    base = candidates()
    languages = ["sql", "python", "python", "python", "sql", "sql", None, "python"]
    strong = base.strong.with_columns(
        requested_language=pl.Series([language if i % 2 else None for i, language in enumerate(languages)]),
        answer_language=pl.Series(languages),
    )
    with_languages = Candidates(**{**base.__dict__, "strong": strong})
    for strategies in (["rmi-band+checks"], ["ppl"]):
        table = evaluate(with_languages, budgets=[0.25], strategies=strategies).languages
        rows = {row["language"]: row for row in table.iter_rows(named=True)}
        assert set(rows) == {"none", "python", "sql"} and all(r["strategy"] == "rmi-band+checks" for r in rows.values())
        # sql: s0 (chatty), s4, s5; python: s1, s2, s3 (truncated), s7 (echo); none: s6. The default
        # keeps s4 and s5; s3 is dropped as incomplete, a defect, so no clean answer is.
        assert (rows["sql"]["clean"], rows["sql"]["clean_kept"], rows["sql"]["defects"]) == (2, 1.0, 1)
        assert (rows["python"]["clean"], rows["python"]["clean_kept"], rows["python"]["defects"]) == (2, 0.0, 2)
        assert rows["python"]["clean_incomplete"] == 0.0 and rows["python"]["defects_kept"] == 0.0
        assert (rows["none"]["clean"], rows["none"]["defects"]) == (1, 0)
