"""Evaluation on natural defects: answers a model generated, graded by running their tests.

Each labelled answer carries a grade, the fraction of its tests it passes (``pass_fraction`` in
the record, read from ``raw_samples.extra_fields``; never seen by scoring or selection). Per
strategy and budget: the kept subset's mean grade against the input's and against random subsets
of the same size (their 95% interval), the share of the passing answers (grade 1) kept, and per
language the kept pass rate. Every figure with a bootstrap 95% interval.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from qaq_assets.lib.reports.evaluation import BOOTSTRAP_RESAMPLES, markdown_table, percentile_interval, rate_interval
from qaq_assets.lib.selection.config import DIFF, STRATEGIES, SelectionConfig
from qaq_assets.lib.selection.curation import Candidates
from qaq_assets.lib.selection.rules import KEEP, keep_count, select
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import RAW_SAMPLES

GRADE_FIELD = "pass_fraction"


def grades_of(lake: Lake, shards: list[str], field: str = GRADE_FIELD) -> pl.DataFrame:
    """sample_id, grade (the record's ``field``) and language (its ``language`` field, else
    null) of the labelled samples of ``shards``; empty where no record carries the field."""
    raw = (
        lake.scan(RAW_SAMPLES)
        .filter(pl.col("shard").is_in(shards) & pl.col("extra_fields").is_not_null())
        .select("sample_id", "extra_fields")
        .collect()
    )
    rows = []
    for sample_id, extra in raw.iter_rows():
        fields = json.loads(extra)
        if isinstance(fields.get(field), (int, float)):
            rows.append({"sample_id": sample_id, "grade": float(fields[field]), "language": fields.get("language")})
    schema = {"sample_id": pl.String, "grade": pl.Float64, "language": pl.String}
    return pl.DataFrame(rows, schema=schema).unique("sample_id", keep="first")


def random_interval(grades: np.ndarray, kept: int, seed: int = 0) -> tuple[float, float] | None:
    """The 95% interval of the mean grade of random subsets of ``kept`` answers."""
    if kept == 0 or len(grades) == 0:
        return None
    rng = np.random.default_rng(seed)
    means = [rng.choice(grades, kept, replace=False).mean() for _ in range(BOOTSTRAP_RESAMPLES)]
    return percentile_interval(means)


def graded(
    candidates: Candidates,
    grades: pl.DataFrame,
    budgets: list[float],
    strategies: list[str] | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per strategy and budget, the graded figures; and per strategy, language and budget the
    kept pass rate. Only the graded candidates count."""
    available = [s for s in (strategies or STRATEGIES) if s != DIFF or candidates.weak is not None]
    all_grades = grades.join(candidates.canonical.select("sample_id"), on="sample_id")["grade"].to_numpy()
    input_mean = float(all_grades.mean()) if len(all_grades) else float("nan")
    passing_total = int((all_grades == 1.0).sum())
    rows, by_language = [], []
    for strategy in available:
        for budget in budgets:
            config = SelectionConfig(strategy=strategy, budget=budget, seed=seed)
            decided = select(strategy, candidates.strong, candidates.weak, config).join(grades, on="sample_id")
            kept = decided.filter(pl.col("decision") == KEEP)
            kept_grades = kept["grade"].to_numpy()
            wanted = keep_count(decided.height, budget)
            mean = float(kept_grades.mean()) if len(kept_grades) else None
            passing_kept = int((kept_grades == 1.0).sum())
            rows.append(
                {
                    "strategy": strategy,
                    "budget": budget,
                    "kept": kept.height,
                    "grade_input": input_mean,
                    "grade_kept": mean,
                    "grade_kept_ci": rate_interval(kept_grades.tolist(), seed),
                    "x_input": None if mean is None or not input_mean else mean / input_mean,
                    "random_ci": random_interval(all_grades, wanted, seed),
                    "pass_rate_kept": passing_kept / kept.height if kept.height else None,
                    "pass_rate_kept_ci": rate_interval((kept_grades == 1.0).tolist(), seed),
                    "passing_kept": f"{passing_kept}/{passing_total}",
                    "passing_kept_share": passing_kept / passing_total if passing_total else None,
                }
            )
            for language, group in decided.group_by("language", maintain_order=True):
                kept_here = group.filter(pl.col("decision") == KEEP)["grade"].to_numpy()
                by_language.append(
                    {
                        "strategy": strategy,
                        "budget": budget,
                        "language": language[0],
                        "answers": group.height,
                        "pass_rate_input": float((group["grade"].to_numpy() == 1.0).mean()),
                        "kept": len(kept_here),
                        "pass_rate_kept": float((kept_here == 1.0).mean()) if len(kept_here) else None,
                        "pass_rate_kept_ci": rate_interval((kept_here == 1.0).tolist(), seed),
                        "grade_kept": float(kept_here.mean()) if len(kept_here) else None,
                    }
                )
    return pl.DataFrame(rows), pl.DataFrame(by_language).sort("strategy", "budget", "language")


def graded_tables(overall: pl.DataFrame, by_language: pl.DataFrame) -> str:
    """Both tables as Markdown (grades as fractions, rates as percent)."""
    percent = {"pass_rate_kept", "passing_kept_share", "pass_rate_input"}
    shown = overall.with_columns(
        pl.col("grade_input", "grade_kept", "x_input").round(3),
    )
    return "\n\n".join(
        [
            "Mean fraction of tests passed (grade) of the kept answers, against the input and against random "
            "subsets of the same size (95% interval); passing answers (every test passed) kept.",
            markdown_table(shown, percent),
            "Per language: pass rate of the input and of the kept answers.",
            markdown_table(by_language, percent),
        ]
    )
