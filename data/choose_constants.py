"""Choose the default rule's two constants by leave-one-corpus-out, and report each held-out
corpus's figures.

For each corpus in turn, on the *other* corpora:
- ``completeness_margin``: the smallest margin of ``MARGINS`` that flags at most 5% of their
  clean answers as incomplete (on average);
- ``band_guard``: the guard of ``GUARDS`` with the lowest kept defect rate (ties: nearest 0.9);
then the held-out corpus is curated with them and its kept defect rate (bootstrap 95% interval),
the share of each defect type removed and the clean answers dropped as incomplete are printed.

Input: lakes that ``qaq evaluate data/eval/<corpus>.jsonl --lake DIR`` scored, one per corpus:
    python data/choose_constants.py --lake pypi=/tmp/ev/pypi --lake stdlib_humaneval=/tmp/ev/stdlib_humaneval \
        --lake generator=/tmp/ev/generator
Features are recomputed from the stored text, so lakes ingested by older releases work too.
"""

from __future__ import annotations

import argparse

import polars as pl

from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.reports.evaluation import rate_interval
from qaq_assets.lib.selection.config import RMI_BAND_CHECKS, SelectionConfig
from qaq_assets.lib.selection.rules import KEEP, select
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QAQ_SCORES, RAW_SAMPLES

MARGINS = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
GUARDS = [0.8, 0.85, 0.9, 0.95, 1.0]
CLEAN = "none"
MAX_CLEAN_FLAGGED = 0.05
BUDGET = 0.25


def corpus_frame(lake_dir: str) -> pl.DataFrame:
    """One row per distinct sample: label, scores and freshly computed features."""
    lake = Lake(lake_dir)
    raw = lake.scan(RAW_SAMPLES).select("shard", "row_index", "sample_id", "label", "instruction", "response")
    scores = lake.scan(QAQ_SCORES).select(
        "shard", "sample_id", "nll_query", "rmi", "ifd_loss", "nll_answer_given_query", "nll_answer_end"
    )
    samples = raw.join(scores, on=["shard", "sample_id"]).collect().unique(subset="sample_id", keep="first")
    features = sample_features(samples.select("shard", "row_index", "sample_id", "instruction", "response"))
    return samples.join(features.drop("sample_id", strict=False), on=["shard", "row_index"])


def clean_flagged(frame: pl.DataFrame, margin: float) -> float:
    """Share of clean answers whose end of turn is ``margin`` nats above their kind's median."""
    typical = pl.col("nll_answer_end").median().over(pl.col("answer_ending").fill_null("any"))
    relative = frame.with_columns(excess=pl.col("nll_answer_end") - typical)
    return float((relative.filter(pl.col("label") == CLEAN)["excess"] > margin).mean())


def curated(frame: pl.DataFrame, margin: float, guard: float) -> pl.DataFrame:
    config = SelectionConfig(strategy=RMI_BAND_CHECKS, budget=BUDGET, completeness_margin=margin, band_guard=guard)
    return select(RMI_BAND_CHECKS, frame, None, config).join(frame.select("sample_id", "label"), on="sample_id")


def kept_defect_rate(frame: pl.DataFrame, margin: float, guard: float) -> float:
    kept = curated(frame, margin, guard).filter(pl.col("decision") == KEEP)
    return float((kept["label"] != CLEAN).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", action="append", required=True, help="CORPUS=LAKE_DIR, one per corpus (3+)")
    corpora = {name: corpus_frame(path) for name, path in (item.split("=", 1) for item in parser.parse_args().lake)}
    for held_out, frame in corpora.items():
        tuning = [other for name, other in corpora.items() if name != held_out]
        margin = min(
            (m for m in MARGINS if sum(clean_flagged(f, m) for f in tuning) / len(tuning) <= MAX_CLEAN_FLAGGED),
            default=max(MARGINS),
        )
        rates = {g: sum(kept_defect_rate(f, margin, g) for f in tuning) / len(tuning) for g in GUARDS}
        guard = min(GUARDS, key=lambda g: (rates[g], abs(g - 0.9)))
        chosen = curated(frame, margin, guard)
        kept = chosen.filter(pl.col("decision") == KEEP)
        flags = (kept["label"] != CLEAN).to_list()
        low, high = rate_interval(flags)
        removed = {
            label: 1 - kept.filter(pl.col("label") == label).height / chosen.filter(pl.col("label") == label).height
            for label in sorted(set(chosen["label"]) - {CLEAN})
        }
        print(
            f"held out {held_out}: margin {margin:g}, guard {guard:g} (tuning corpora {100 * rates[guard]:.1f}%) -> "
            f"kept defect rate {100 * sum(flags) / len(flags):.1f}% [{100 * low:.1f}, {100 * high:.1f}]; removed "
            + ", ".join(f"{label} {100 * share:.0f}%" for label, share in removed.items())
            + f"; clean dropped as incomplete {100 * clean_flagged(frame, margin):.1f}%"
        )


if __name__ == "__main__":
    main()
