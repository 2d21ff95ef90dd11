"""Selection rules over a score table: stratified RMI band and strong/weak disagreement.

Everything is deterministic: ties are broken by ``sample_id``, budgets are met exactly
(``floor(budget * n + 0.5)`` rows) by largest-remainder quotas across strata.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import polars as pl

RMI_BAND, DIFF, AUTO = "rmi-band", "diff", "auto"
KEEP, DROP = "keep", "drop"


@dataclass(frozen=True)
class SelectionConfig:
    strategy: str = AUTO
    budget: float = 0.25
    band_low: float = 0.5
    strata: int = 10
    diff_threshold: float = 0.1
    # Fewer strata on small inputs: a rank within a bin of 2 samples carries no signal.
    min_stratum_size: int = 10

    def __post_init__(self) -> None:
        if self.strategy not in (RMI_BAND, DIFF, AUTO):
            raise ValueError(f"strategy must be {RMI_BAND}, {DIFF} or {AUTO}, not {self.strategy!r}")
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(f"budget must be in (0, 1], not {self.budget}")
        if not 0.0 <= self.band_low < 1.0:
            raise ValueError(f"band_low must be in [0, 1), not {self.band_low}")
        if self.strata < 1 or self.min_stratum_size < 1:
            raise ValueError("strata and min_stratum_size must be at least 1")

    def effective_strata(self, n: int) -> int:
        return max(1, min(self.strata, n // self.min_stratum_size))

    def resolved_strategy(self, n_models: int) -> str:
        if self.strategy == AUTO:
            return DIFF if n_models >= 2 else RMI_BAND
        if self.strategy == DIFF and n_models < 2:
            raise ValueError("strategy 'diff' needs two models (strong first, weak second)")
        return self.strategy

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def sha(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def keep_count(n: int, budget: float) -> int:
    return min(n, math.floor(budget * n + 0.5))


def largest_remainder_quotas(sizes: list[int], budget: float) -> list[int]:
    """Per-stratum keep counts proportional to ``sizes`` that sum to ``keep_count``."""
    total = keep_count(sum(sizes), budget)
    ideal = [budget * size for size in sizes]
    quotas = [min(math.floor(x), size) for x, size in zip(ideal, sizes, strict=True)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - quotas[i]), i))
    for i in by_remainder:
        if sum(quotas) >= total:
            break
        if quotas[i] < sizes[i]:
            quotas[i] += 1
    return quotas


def stratified_ranks(frame: pl.DataFrame, strata: int, prefix: str = "") -> pl.DataFrame:
    """Add ``stratum`` (equal-count bins of ``nll_query``) and ``rmi_rank`` (0..1 within
    the stratum, ties averaged) and ``rmi_position`` (0-based order within the stratum)."""
    n = frame.height
    stratum, rank, position = f"{prefix}stratum", f"{prefix}rmi_rank", f"{prefix}rmi_position"
    return (
        frame.sort(["nll_query", "sample_id"])
        .with_columns(((pl.int_range(pl.len()) * strata) // max(n, 1)).cast(pl.Int32).alias(stratum))
        .sort([stratum, "rmi", "sample_id"])
        .with_columns(pl.int_range(pl.len()).over(stratum).alias(position))
        .with_columns(
            pl.when(pl.len().over(stratum) > 1)
            .then((pl.col("rmi").rank("average").over(stratum) - 1) / (pl.len().over(stratum) - 1))
            .otherwise(0.5)
            .alias(rank)
        )
    )


def select_rmi_band(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Keep the band starting at ``band_low`` of RMI order within each NLL(Q) stratum.

    Below the band the answer explains the query poorly (misaligned or hallucinated);
    above it the answer restates the query (an echo the model finds trivially easy)."""
    ranked = stratified_ranks(scores, config.effective_strata(scores.height))
    sizes = ranked.group_by("stratum").len().sort("stratum")
    quotas = largest_remainder_quotas(sizes["len"].to_list(), config.budget)
    starts = [
        min(math.floor(config.band_low * size), size - quota)
        for size, quota in zip(sizes["len"].to_list(), quotas, strict=True)
    ]
    bounds = pl.DataFrame(
        {"stratum": sizes["stratum"], "band_start": starts, "band_end": [s + q for s, q in zip(starts, quotas, strict=True)]},
        schema_overrides={"stratum": pl.Int32},
    )
    return (
        ranked.join(bounds, on="stratum")
        .with_columns(
            decision=pl.when(pl.col("rmi_position").is_between("band_start", "band_end", closed="left"))
            .then(pl.lit(KEEP))
            .otherwise(pl.lit(DROP)),
            reason=pl.when(pl.col("rmi_position") < pl.col("band_start"))
            .then(pl.lit("rmi_below_band: answer explains the query poorly (misaligned or hallucinated)"))
            .when(pl.col("rmi_position") >= pl.col("band_end"))
            .then(pl.lit("rmi_above_band: answer largely restates the query"))
            .otherwise(pl.lit("rmi_in_band")),
        )
        .drop("band_start", "band_end", "rmi_position")
    )


def select_diff(strong: pl.DataFrame, weak: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Strong/weak disagreement: ``diff = rmi_rank_strong - rmi_rank_weak`` with stratified
    ranks per model; keep ``diff > threshold`` by descending diff, trimmed to the budget,
    filled up to it with the next-highest diffs when too few pass."""
    strata = config.effective_strata(strong.height)
    strong_ranked = stratified_ranks(strong, strata).drop("rmi_position")
    weak_ranked = stratified_ranks(weak.select("sample_id", "nll_query", "rmi"), strata, prefix="weak_").select(
        "sample_id", "weak_rmi_rank"
    )
    joined = strong_ranked.join(weak_ranked, on="sample_id", how="inner")
    if joined.height != strong.height:
        raise ValueError(f"weak model scores cover {joined.height} of {strong.height} samples")
    budget = keep_count(joined.height, config.budget)
    ordered = (
        # Rounded so that equal rank gaps tie exactly (2/3 - 0 vs 1 - 1/3) and fall to sample_id.
        joined.with_columns(diff=(pl.col("rmi_rank") - pl.col("weak_rmi_rank")).round(12))
        .sort(["diff", "sample_id"], descending=[True, False])
        .with_columns(position=pl.int_range(pl.len()))
    )
    above = pl.col("diff") > config.diff_threshold
    return ordered.with_columns(
        decision=pl.when(pl.col("position") < budget).then(pl.lit(KEEP)).otherwise(pl.lit(DROP)),
        reason=pl.when((pl.col("position") < budget) & above)
        .then(pl.lit("diff_above_threshold"))
        .when(pl.col("position") < budget)
        .then(pl.lit("diff_fill: below threshold, kept to fill the budget"))
        .when(above)
        .then(pl.lit("diff_over_budget: above threshold, trimmed to the budget"))
        .otherwise(pl.lit("diff_below_threshold: weak model finds it as easy as the strong one")),
    ).drop("position")
