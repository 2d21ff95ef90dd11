"""Evaluation on answers graded by running their tests: hand-computed figures, and `qaq evaluate`
reading the grades from the records."""

import numpy as np
import polars as pl
import pytest

from qaq_assets.lib.reports.natural_evaluation import graded, graded_tables, random_interval
from qaq_assets_tests.helpers import TINY, qaq, write_jsonl
from qaq_assets_tests.lib.reports.test_evaluation import candidates


def grades() -> pl.DataFrame:
    # s0..s7 (rmi rising with id); s4, s5 pass every test, s6 half of them.
    return pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(8)],
            "grade": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.0],
            "language": ["python"] * 4 + ["javascript"] * 4,
        }
    )


def test_kept_grade_against_input_and_random():
    overall, by_language = graded(candidates(), grades(), budgets=[0.25], strategies=["rmi-band", "ppl"])
    band = overall.filter(pl.col("strategy") == "rmi-band").row(0, named=True)
    # The band keeps positions 4-5 (s4, s5): both pass.
    assert band["kept"] == 2 and band["grade_kept"] == 1.0 and band["grade_input"] == 2.5 / 8
    assert band["x_input"] == 1.0 / (2.5 / 8) and band["passing_kept"] == "2/2" and band["passing_kept_share"] == 1.0
    ppl = overall.filter(pl.col("strategy") == "ppl").row(0, named=True)
    assert ppl["grade_kept"] == 0.25 and ppl["passing_kept"] == "0/2"  # s6 (0.5) and s7 (0.0)
    low, high = band["random_ci"]
    assert 0.0 <= low <= 2.5 / 8 <= high <= 1.0
    js = by_language.filter((pl.col("strategy") == "rmi-band") & (pl.col("language") == "javascript")).row(
        0, named=True
    )
    assert js["answers"] == 4 and js["pass_rate_input"] == 0.5 and js["pass_rate_kept"] == 1.0
    assert "passing answers" in graded_tables(overall, by_language)


def test_the_random_interval_is_that_of_random_subsets():
    values = np.array([1.0] * 25 + [0.0] * 75)
    low, high = random_interval(values, kept=25)
    assert low < 0.25 < high and high - low < 0.4
    assert random_interval(values, kept=100) == (0.25, 0.25)  # everything kept: no spread


@pytest.mark.slow  # runs the qaq command in a process
def test_evaluate_command_reports_graded_answers(tmp_path):
    records = []
    for index in range(12):
        passing = index % 3 == 0
        records.append(
            {
                "instruction": f"Write `double_{index}(x)` returning twice x.",
                "response": f"def double_{index}(x):\n    return x {'*' if passing else '+'} 2\n",
                "defect": "none" if passing else "tests_failed",
                "pass_fraction": 1.0 if passing else 0.5,
                "language": "python",
            }
        )
    shard = write_jsonl(tmp_path / "graded.jsonl", records)
    result = qaq(
        "evaluate", str(shard), "--lake", str(tmp_path / "lake"), "--model", TINY, "--budgets", "0.25",
        "--report-dir", str(tmp_path / "eval"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Mean fraction of tests passed" in result.stdout and "| rmi-band+checks | 0.250 |" in result.stdout
    assert "Natural defects" in (tmp_path / "eval" / "report.md").read_text()
