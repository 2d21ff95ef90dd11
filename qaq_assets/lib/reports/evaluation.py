"""Evaluate every selection strategy on data with planted-defect labels.

For each strategy and budget: the defect rate kept vs in the input and the share of each
defect type removed; for each strategy and defect type: the AUROC of the score behind its
decisions (how often a clean sample outranks a defective one). Labels are read here only,
never by scoring or selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from qaq_assets.lib.reports.summary import CLEAN_LABELS
from qaq_assets.lib.selection.config import DIFF, STRATEGIES, SelectionConfig
from qaq_assets.lib.selection.curation import Candidates
from qaq_assets.lib.selection.reasons import ReasonCode
from qaq_assets.lib.selection.rules import KEEP, select
from qaq_assets.lib.store.columns import SIGNALS

AUROC_BUDGET = 0.25


BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def _scores(values: list[float | None]) -> np.ndarray:
    """Scores as floats, a missing one ranking lowest."""
    return np.array([-np.inf if value is None else value for value in values], dtype=np.float64)


def _auroc(clean: np.ndarray, defect: np.ndarray) -> float:
    ordered = np.sort(defect)
    below = np.searchsorted(ordered, clean, side="left")
    equal = np.searchsorted(ordered, clean, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (len(clean) * len(defect)))


def auroc(clean_scores: list[float | None], defect_scores: list[float | None]) -> float | None:
    """P(clean outranks defect), ties counted half (Mann-Whitney U / n1 n2). Missing scores rank lowest."""
    if not clean_scores or not defect_scores:
        return None
    return _auroc(_scores(clean_scores), _scores(defect_scores))


def auroc_interval(clean_scores, defect_scores, seed: int = 0) -> tuple[float, float] | None:
    """The bootstrap 95% interval of :func:`auroc` (clean and defective samples resampled apart)."""
    if not clean_scores or not defect_scores:
        return None
    clean, defect = _scores(clean_scores), _scores(defect_scores)
    rng = np.random.default_rng(seed)
    values = [
        _auroc(rng.choice(clean, len(clean)), rng.choice(defect, len(defect))) for _ in range(BOOTSTRAP_RESAMPLES)
    ]
    return percentile_interval(values)


def rate_interval(flags: list[bool] | list[float], seed: int = 0) -> tuple[float, float] | None:
    """The bootstrap 95% interval of the share of ``flags`` that are true (e.g. the kept set's
    defect rate, its samples resampled), or of the mean of values (a kept set's mean grade)."""
    if not flags:
        return None
    values = np.asarray(flags, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (BOOTSTRAP_RESAMPLES, len(values))).mean(axis=1)
    return percentile_interval(means)


def percentile_interval(values) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class Evaluation:
    rates: pl.DataFrame  # strategy, budget, kept, defect_rate_input, defect_rate_kept, removed_<type>...
    aurocs: pl.DataFrame  # strategy, defect type, auroc
    signals: pl.DataFrame  # signal, defect type, auroc
    defect_types: list[str]
    labelled: pl.DataFrame  # candidates with labels and the strong model's scores
    # Per requested language, the default rule at AUROC_BUDGET: clean answers kept and dropped as
    # incomplete, defects kept (languages kept fairly: a rule that keeps correct SQL at a third of
    # Python's rate curates a Python set).
    languages: pl.DataFrame | None = None


def evaluate(
    candidates: Candidates, budgets: list[float], strategies: list[str] | None = None, seed: int = 0
) -> Evaluation:
    """Run ``strategies`` (default: all that the models allow) at each budget over ``candidates``."""
    labels = candidates.canonical.select("sample_id", "label")
    if labels["label"].null_count() == labels.height:
        raise ValueError("no planted labels in the data; evaluation needs a label column (--label-field)")
    labelled = candidates.strong.join(labels, on="sample_id").filter(pl.col("label").is_not_null())
    defect_types = sorted(set(labelled["label"]) - set(CLEAN_LABELS))
    is_defect = ~pl.col("label").is_in(CLEAN_LABELS)
    input_rate = labelled.select(is_defect.mean()).item()
    available = [s for s in (strategies or STRATEGIES) if s != DIFF or candidates.weak is not None]
    default_strategy = SelectionConfig().resolved_strategy(1 if candidates.weak is None else 2)
    default_decided = None  # its decisions at AUROC_BUDGET: the per-language table

    rows, auroc_rows = [], []
    for strategy in available:
        for budget in budgets:
            config = SelectionConfig(strategy=strategy, budget=budget, seed=seed)
            decided = select(strategy, candidates.strong, candidates.weak, config).join(labels, on="sample_id")
            decided = decided.filter(pl.col("label").is_not_null())
            if strategy == default_strategy and budget == AUROC_BUDGET:
                default_decided = decided
            kept = decided.filter(pl.col("decision") == KEEP)
            row = {
                "strategy": strategy,
                "budget": budget,
                "kept": kept.height,
                "defect_rate_input": input_rate,
                "defect_rate_kept": kept.select(is_defect.mean()).item() if kept.height else 0.0,
                "defect_rate_kept_ci": rate_interval(kept.select(is_defect)["label"].to_list(), seed),
            }
            for defect in defect_types:
                of_type = decided.filter(pl.col("label") == defect)
                row[f"removed_{defect}"] = of_type.filter(pl.col("decision") != KEEP).height / max(of_type.height, 1)
            rows.append(row)
            if budget == AUROC_BUDGET or (AUROC_BUDGET not in budgets and budget == budgets[0]):
                clean = decided.filter(~is_defect)["keep_score"].to_list()
                for defect in defect_types:
                    defective = decided.filter(pl.col("label") == defect)["keep_score"].to_list()
                    value, interval = auroc(clean, defective), auroc_interval(clean, defective, seed)
                    auroc_rows.append({"strategy": strategy, "defect": defect, "auroc": value, "ci": interval})
    if default_decided is None:  # the default rule at AUROC_BUDGET was not among those run
        default = SelectionConfig(budget=AUROC_BUDGET, seed=seed)
        default_decided = select(default_strategy, candidates.strong, candidates.weak, default)
        default_decided = default_decided.join(labels, on="sample_id")
    languages = language_rates(default_decided, default_strategy, seed)
    signal_rows = []
    for name, signal in SIGNALS.items():
        if not set(signal.meta.root_names()) <= set(labelled.columns):
            continue  # scores of an older release lack that signal
        valued = labelled.with_columns(_signal=signal)
        clean = valued.filter(~is_defect)["_signal"].to_list()
        for defect in defect_types:
            defective = valued.filter(pl.col("label") == defect)["_signal"].to_list()
            value, interval = auroc(clean, defective), auroc_interval(clean, defective, seed)
            signal_rows.append({"signal": name, "defect": defect, "auroc": value, "ci": interval})
    interval = pl.List(pl.Float64)
    return Evaluation(
        signals=pl.DataFrame(
            signal_rows, schema={"signal": pl.String, "defect": pl.String, "auroc": pl.Float64, "ci": interval}
        ),
        rates=pl.DataFrame(rows),
        aurocs=pl.DataFrame(
            auroc_rows, schema={"strategy": pl.String, "defect": pl.String, "auroc": pl.Float64, "ci": interval}
        ),
        defect_types=defect_types,
        labelled=labelled,
        languages=languages,
    )


def language_rates(decided: pl.DataFrame, strategy: str, seed: int = 0) -> pl.DataFrame:
    """Per language the instruction asks for (else the answer's; ``none``: neither): clean answers kept, and
    dropped as incomplete, and defects kept, with 95% intervals, from one rule's decisions."""
    decided = decided.filter(pl.col("label").is_not_null()).with_columns(
        # The language asked for, else the answer's (text-to-SQL data names none: "write a query").
        language=pl.coalesce("requested_language", "answer_language").fill_null("none"),
        clean=pl.col("label").is_in(CLEAN_LABELS),
        kept=pl.col("decision") == KEEP,
        incomplete=pl.col("reason_code") == ReasonCode.ANSWER_INCOMPLETE.value,
    )
    rows = []
    for (language,), group in decided.sort("language").group_by("language", maintain_order=True):
        clean, defects = group.filter(pl.col("clean")), group.filter(~pl.col("clean"))
        rows.append(
            {
                "language": language,
                "strategy": strategy,
                "clean": clean.height,
                "clean_kept": clean["kept"].mean() if clean.height else None,
                "clean_kept_ci": rate_interval(clean["kept"].to_list(), seed),
                "clean_incomplete": clean["incomplete"].mean() if clean.height else None,
                "defects": defects.height,
                "defects_kept": defects["kept"].mean() if defects.height else None,
            }
        )
    return pl.DataFrame(rows)


def markdown_table(frame: pl.DataFrame, percent: set[str]) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [header, rule]
    for row in frame.iter_rows(named=True):
        cells = []
        for column, value in row.items():
            if value is None:
                cells.append("–")
            elif isinstance(value, list):  # a 95% interval, as percent where its estimate is one
                low, high = value
                if column.removesuffix("_ci") in percent:
                    cells.append(f"[{100 * low:.1f}, {100 * high:.1f}]")
                else:
                    cells.append(f"[{low:.2f}, {high:.2f}]")
            elif column in percent:
                cells.append(f"{100 * value:.1f}%")
            elif isinstance(value, float):
                cells.append(f"{value:.3f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rates_table(evaluation: Evaluation) -> str:
    percent = {"defect_rate_input", "defect_rate_kept", *(f"removed_{d}" for d in evaluation.defect_types)}
    return markdown_table(evaluation.rates, percent)


def _with_intervals(frame: pl.DataFrame) -> pl.DataFrame:
    """AUROC and its 95% interval as one cell: ``0.912 [0.88, 0.94]``."""
    return frame.with_columns(
        shown=pl.struct("auroc", "ci").map_elements(
            lambda row: (
                "–"
                if row["auroc"] is None
                else f"{row['auroc']:.3f}" + (f" [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}]" if row["ci"] else "")
            ),
            return_dtype=pl.String,
        )
    )


def language_table(evaluation: Evaluation) -> str:
    return markdown_table(evaluation.languages, {"clean_kept", "clean_incomplete", "defects_kept"})


def auroc_table(evaluation: Evaluation) -> str:
    wide = _with_intervals(evaluation.aurocs).pivot(on="defect", index="strategy", values="shown")
    return markdown_table(wide, set())


def signal_table(evaluation: Evaluation) -> str:
    wide = _with_intervals(evaluation.signals).pivot(on="defect", index="signal", values="shown")
    return markdown_table(wide, set())


def write_report(
    evaluation: Evaluation, out_dir: str | Path, title: str = "Selection evaluation", natural: str = ""
) -> Path:
    """Markdown report with two PNG plots beside it (and ``natural``, the graded tables, where the
    answers were graded by running their tests); returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = sorted(set(evaluation.labelled["label"]))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, column in zip(axes, ["rmi", "ifd_loss", "nll_query"], strict=True):
        for label in labels:
            values = evaluation.labelled.filter(pl.col("label") == label)[column].drop_nulls().to_list()
            # Outlines, not filled bars: several labels overlap without hiding each other.
            axis.hist(values, bins=30, histtype="step", linewidth=1.5, label=label, density=True)
        axis.set_title(f"{column} by planted label")
        axis.set_xlabel(column)
        axis.set_ylabel("density (per label)")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "scores_by_defect.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for strategy in evaluation.rates["strategy"].unique(maintain_order=True):
        curve = evaluation.rates.filter(pl.col("strategy") == strategy).sort("budget")
        axis.plot(curve["budget"], 100 * curve["defect_rate_kept"], marker="o", label=strategy)
    axis.axhline(100 * evaluation.rates["defect_rate_input"][0], color="grey", linestyle="--", label="input")
    axis.set_xlabel("budget (fraction kept)")
    axis.set_ylabel("defect rate of the kept set (%)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "kept_defect_rate_vs_budget.png", dpi=100)
    plt.close(figure)

    report = out / "report.md"
    report.write_text(
        "\n\n".join(
            [
                f"# {title}",
                f"{evaluation.labelled.height} labelled samples after deduplication; defect types: "
                + ", ".join(evaluation.defect_types),
                "## Defect rate kept vs input, and share of each defect type removed",
                rates_table(evaluation),
                f"## AUROC of each strategy's score per defect type (budget {AUROC_BUDGET})",
                "Probability that a clean sample outranks a defective one (0.5 = chance).",
                auroc_table(evaluation),
                f"## Languages kept fairly (the default rule, budget {AUROC_BUDGET})",
                "Per language the instruction asks for: the share of its clean answers kept and dropped as "
                "incomplete, and of its defective answers kept.",
                language_table(evaluation),
                "## AUROC of single signals per defect type",
                "The completeness signal is the NLL of the end-of-turn token after [Q;A] (lower: the model "
                "expects the answer to end there).",
                signal_table(evaluation),
                *(["## Natural defects: answers graded by running their tests", natural] if natural else []),
                "![kept defect rate vs budget](kept_defect_rate_vs_budget.png)",
                "![scores by planted label](scores_by_defect.png)",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return report
