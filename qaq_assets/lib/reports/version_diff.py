"""What changed between two curated versions: shards and samples added or removed, decisions that
flipped (with the reason codes on both sides), and the settings and models that differ.

Why old decisions move when new data lands: the RMI band is taken within strata of NLL(Q) that
span the whole corpus, and the ranks inside each stratum are ranks among all its samples. New
samples shift the strata's edges and the ranks, so a sample near a band's edge can cross it
without anything about that sample changing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from qaq_assets.lib.reports.export import lineage_record
from qaq_assets.lib.selection.curation import with_reason_code
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET

_KEY = ["shard", "sample_id"]


@dataclass
class VersionDiff:
    old: int
    new: int
    shards_added: list[str]
    shards_removed: list[str]
    samples_added: int
    samples_removed: int
    kept_before: int
    kept_after: int
    flips: pl.DataFrame  # shard, sample_id, row_index, decision and reason_code before and after
    settings: dict[str, tuple] = field(default_factory=dict)  # selection settings: (before, after)
    models: list[str] = field(default_factory=list)  # what changed in each model's identity

    @property
    def newly_kept(self) -> pl.DataFrame:
        return self.flips.filter(pl.col("decision_after") == KEEP)

    @property
    def newly_dropped(self) -> pl.DataFrame:
        return self.flips.filter(pl.col("decision_before") == KEEP)


def _decisions(lake: Lake, version: int) -> pl.DataFrame:
    curated = with_reason_code(lake.scan(CURATED_SUBSET, version).collect())
    return curated.select(*_KEY, "row_index", "decision", "reason_code").unique(subset=_KEY, keep="first")


def diff_versions(lake: Lake, old: int | str, new: int | str | None = None) -> VersionDiff:
    """What changed from curated version ``old`` to ``new`` (default latest)."""
    before_lineage, after_lineage = lineage_record(lake, old), lineage_record(lake, new)
    before = _decisions(lake, before_lineage["curated_version"])
    after = _decisions(lake, after_lineage["curated_version"])
    both = before.join(after, on=_KEY, how="inner", suffix="_after").rename(
        {"decision": "decision_before", "reason_code": "reason_code_before"}
    )
    flips = both.filter(pl.col("decision_before") != pl.col("decision_after")).select(
        *_KEY,
        pl.col("row_index_after").alias("row_index"),
        "decision_before",
        "reason_code_before",
        "decision_after",
        "reason_code_after",
    )
    shards_before, shards_after = set(before["shard"]), set(after["shard"])
    return VersionDiff(
        old=before_lineage["curated_version"],
        new=after_lineage["curated_version"],
        shards_added=sorted(shards_after - shards_before),
        shards_removed=sorted(shards_before - shards_after),
        samples_added=after.join(before, on=_KEY, how="anti").height,
        samples_removed=before.join(after, on=_KEY, how="anti").height,
        kept_before=before.filter(pl.col("decision") == KEEP).height,
        kept_after=after.filter(pl.col("decision") == KEEP).height,
        flips=flips.sort(*_KEY),
        settings=_changed(before_lineage["selection_config"], after_lineage["selection_config"]),
        models=_model_changes(before_lineage["models"], after_lineage["models"]),
    )


def _changed(before: dict, after: dict) -> dict[str, tuple]:
    names = sorted(set(before) | set(after))
    return {name: (before.get(name), after.get(name)) for name in names if before.get(name) != after.get(name)}


def _model_changes(before: list[dict], after: list[dict]) -> list[str]:
    old = {model["model_key"]: model for model in before}
    new = {model["model_key"]: model for model in after}
    lines = [f"model {key} added ({new[key]['model_id']})" for key in new if key not in old]
    lines += [f"model {key} removed" for key in old if key not in new]
    for key in sorted(new.keys() & old.keys()):
        lines += [f"model {key}: {name} {was} -> {now}" for name, (was, now) in _changed(old[key], new[key]).items()]
    return lines


def _counts(frame: pl.DataFrame, column: str) -> str:
    counts = frame.group_by(column).len().sort(["len", column], descending=[True, False])
    return ", ".join(f"{code} {n}" for code, n in counts.iter_rows()) or "none"


def _named(shards: list[str], shown: int = 5) -> str:
    if not shards:
        return "0"
    more = ", ..." if len(shards) > shown else ""
    return f"{len(shards)} ({', '.join(shards[:shown])}{more})"


def summary_lines(diff: VersionDiff) -> list[str]:
    """The diff in a few lines (the same in the terminal, the UI and the report)."""
    lines = [
        f"curated version {diff.old} -> {diff.new}: kept {diff.kept_before:,} -> {diff.kept_after:,}",
        f"shards added {_named(diff.shards_added)}, removed {_named(diff.shards_removed)}",
        f"samples added {diff.samples_added:,}, removed {diff.samples_removed:,}",
        f"decisions flipped on samples in both: {diff.flips.height:,} "
        f"({diff.newly_dropped.height:,} kept -> dropped, {diff.newly_kept.height:,} dropped -> kept)",
    ]
    if diff.newly_dropped.height:
        lines.append(f"  kept -> dropped, now for: {_counts(diff.newly_dropped, 'reason_code_after')}")
    if diff.newly_kept.height:
        lines.append(f"  dropped -> kept, dropped before for: {_counts(diff.newly_kept, 'reason_code_before')}")
    if diff.flips.height and not diff.settings and not diff.models:
        lines.append("  (same settings and models: the strata and ranks span the whole corpus, so new data moves them)")
    for name, (old, new) in diff.settings.items():
        lines.append(f"setting {name}: {old} -> {new}")
    lines += diff.models
    return lines


def markdown(diff: VersionDiff, examples: int = 10) -> str:
    """The diff for run metadata: the summary, then a table of a few flipped samples."""
    text = "\n".join(f"- {line.strip()}" for line in summary_lines(diff))
    if diff.flips.height:
        rows = ["| sample | was | now |", "|---|---|---|"]
        for flip in diff.flips.head(examples).iter_rows(named=True):
            rows.append(
                f"| {flip['shard']}:{flip['row_index']} | {flip['decision_before']} ({flip['reason_code_before']}) "
                f"| {flip['decision_after']} ({flip['reason_code_after']}) |"
            )
        text += "\n\n" + "\n".join(rows)
    return text
