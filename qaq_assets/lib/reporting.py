"""Plain-text views of a curated version: decisions by reason and, when the data carries
planted labels, how many defects the selection removed."""

from __future__ import annotations

import polars as pl

from qaq_assets.lib.lake import Lake
from qaq_assets.lib.selection import KEEP
from qaq_assets.lib.tables import CURATED_SUBSET

CLEAN_LABELS = ("none", "clean", "")


def label_table(curated: pl.DataFrame) -> pl.DataFrame:
    """Per label: rows in the input, rows kept, and the share of them removed."""
    return (
        curated.filter(pl.col("label").is_not_null())
        .group_by("label")
        .agg(input=pl.len(), kept=(pl.col("decision") == KEEP).sum())
        .with_columns(removed_pct=(100 * (1 - pl.col("kept") / pl.col("input"))).round(1))
        .sort("label")
    )


def defect_rates(curated: pl.DataFrame) -> tuple[float, float] | None:
    """Defect rate of the input and of the kept set, over labelled rows."""
    labelled = curated.filter(pl.col("label").is_not_null())
    if labelled.height == 0:
        return None
    defect = ~pl.col("label").is_in(CLEAN_LABELS)
    kept = labelled.filter(pl.col("decision") == KEEP)
    rate_in = labelled.select(defect.mean()).item()
    rate_kept = kept.select(defect.mean()).item() if kept.height else 0.0
    return float(rate_in), float(rate_kept)


def summary_text(lake: Lake, version: int | None = None) -> str:
    curated = lake.scan(CURATED_SUBSET, version).collect()
    if curated.height == 0:
        return "no curated subset yet"
    version = version if version is not None else lake.version(CURATED_SUBSET)
    kept = curated.filter(pl.col("decision") == KEEP).height
    lines = [
        f"curated_subset version {version}: {curated.height} rows, {kept} kept "
        f"({100 * kept / curated.height:.1f}%), strategy {curated['strategy'][0]}",
        "",
        "decisions by reason:",
    ]
    by_reason = curated.group_by("decision", pl.col("reason").str.split(":").list.first()).len().sort("len", descending=True)
    lines += [f"  {decision:5} {reason:24} {n}" for decision, reason, n in by_reason.iter_rows()]
    rates = defect_rates(curated)
    if rates is not None:
        lines += ["", "planted labels (never read by scoring):"]
        lines += [
            f"  {label:16} input {n_in:4}  kept {n_kept:4}  removed {pct:5.1f}%"
            for label, n_in, n_kept, pct in label_table(curated).iter_rows()
        ]
        lines.append(f"  defect rate: input {100 * rates[0]:.1f}% -> kept {100 * rates[1]:.1f}%")
    return "\n".join(lines)
