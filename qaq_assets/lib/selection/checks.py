"""What a published curated version must satisfy (the curated_subset asset's blocking checks)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import polars as pl

from qaq_assets.lib.selection.config import STABLE
from qaq_assets.lib.selection.curation import candidates_of, decision_counts
from qaq_assets.lib.selection.reasons import is_filtered
from qaq_assets.lib.selection.rules import KEEP, RMI_BAND_CHECKS, RMI_BAND_CODE, SelectionConfig

# Rules whose band never keeps a rank above the guard, however many rows the checks removed.
GUARDED = (RMI_BAND_CODE, RMI_BAND_CHECKS)


@dataclass
class CuratedCheck:
    valid: bool  # unique rows and kept samples, finite RMI, only keep and drop
    kept: int
    expected: int  # the rounded budget, unless the rule's checks left fewer eligible samples
    # --decisions stable: earlier samples whose decision differs from the previous version's
    # (the budget then holds for new samples only, so it is not what is checked).
    flipped: int | None = None

    @property
    def passed(self) -> bool:
        if self.flipped is not None:
            return self.valid and self.flipped == 0
        return self.valid and self.kept == self.expected


def expected_kept(candidates: pl.DataFrame, config: SelectionConfig) -> int:
    """The rows a version must keep: the budget over its distinct ``candidates``, rounded half up
    (README), or every eligible one where the rule's checks (and its guard) left fewer. Counted
    here from the rows and the reason codes' declarations, not with the rule's own helpers: a
    check that shared the rule's arithmetic would pass whatever the rule got wrong."""
    eligible = candidates.filter(~is_filtered(pl.col("reason_code")))
    if candidates.height and candidates["strategy"][0] in GUARDED:
        eligible = eligible.filter(pl.col("rmi_rank") <= config.band_guard)
    budgeted = min(candidates.height, math.floor(config.budget * candidates.height + 0.5))
    return min(budgeted, eligible.height)


def check_curated(curated: pl.DataFrame, config: SelectionConfig, earlier: pl.DataFrame | None = None) -> CuratedCheck:
    kept = curated.filter(pl.col("decision") == KEEP)
    candidates = candidates_of(curated)
    valid = bool(
        curated.select(pl.struct("shard", "row_index").is_unique().all()).item()
        and kept["sample_id"].is_unique().all()
        and candidates.select(pl.col("rmi").is_finite().all()).item() is not False
        and curated["decision"].is_in(["keep", "drop"]).all()
    )
    flipped = None
    if config.decisions == STABLE and earlier is not None:
        both = curated.join(earlier, on=["shard", "row_index", "sample_id"], suffix="_earlier")
        flipped = both.filter(pl.col("decision") != pl.col("decision_earlier")).height
    return CuratedCheck(valid=valid, kept=kept.height, expected=expected_kept(candidates, config), flipped=flipped)


def counts_agree(curated: pl.DataFrame, recorded_counts_json: str | None) -> tuple[bool, dict]:
    """Whether the lineage's counts per ``decision:reason_code`` describe exactly these rows."""
    recorded = json.loads(recorded_counts_json) if recorded_counts_json else {}
    return recorded == decision_counts(curated) and sum(recorded.values()) == curated.height, recorded
