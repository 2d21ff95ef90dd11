"""Selection rules over a score table: stratified RMI band and strong/weak disagreement.

Everything is deterministic: ties are broken by ``sample_id``, budgets are met exactly
(``floor(budget * n + 0.5)`` rows) by largest-remainder quotas across strata.
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np
import polars as pl

from qaq_assets.lib.ingest.codecheck import CHECK_FAILED, UNUSABLE
from qaq_assets.lib.ingest.execution.run_tests import AGREED, FAILING, RAISED
from qaq_assets.lib.selection.config import (
    DIFF,
    IFD,
    PPL,
    PPL_CHECKS,
    RANDOM,
    RMI_BAND,
    RMI_BAND_CHECKS,
    RMI_BAND_CODE,
    SelectionConfig,
)
from qaq_assets.lib.selection.reasons import ReasonCode as Reason
from qaq_assets.lib.selection.reasons import code
from qaq_assets.lib.store.columns import SELECTION_FEATURES

KEEP, DROP = "keep", "drop"


class Filter(NamedTuple):
    """A check of the band rules: the rows it rules out, their reason code and their reason."""

    failing: pl.Expr
    reason_code: pl.Expr
    reason: pl.Expr
    # What the three read that depends on the whole frame (windows), computed over all its rows
    # first: codes and reasons are built for the failing rows only.
    columns: tuple[pl.Expr, ...] = ()


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


def sorted_positions(
    frame: pl.DataFrame,
    by: list[str],
    descending: bool | list[bool] = False,
    nulls_last: bool = False,
    within: str | None = None,
) -> pl.Series:
    """Each row's 0-based place in ``frame`` sorted by ``by`` (among the rows of its ``within``
    group, where given), the frame left in its order: only the key columns are sorted (a sorted
    copy of every column costs as much as the frame), and a group is not a sort key (each key
    more slows the sort down)."""
    order = frame.select(pl.arg_sort_by(by, descending=descending, nulls_last=nulls_last)).to_series()
    if within is None:
        return _inverse(order.to_numpy(), np.arange(frame.height, dtype=np.int64))
    in_order = frame.select(pl.col(within).gather(order)).select(pl.int_range(pl.len()).over(within)).to_series()
    return _inverse(order.to_numpy(), in_order.to_numpy())


def _inverse(order: np.ndarray, values_in_order: np.ndarray) -> pl.Series:
    """``values_in_order`` put back in the frame's order: one scatter, where sorting ``order``
    again to invert it costs a second sort."""
    values = np.empty(len(order), dtype=values_in_order.dtype)
    values[order] = values_in_order
    return pl.Series("_position", values)


# Rows one slice of a row-wise text column is built from (see in_slices).
TEXT_SLICE_ROWS = 1_000_000


def in_slices(frame: pl.DataFrame, row_wise: pl.Expr) -> pl.Series:
    """``frame.select(row_wise)``, a slice of rows at a time: a text built from several columns
    holds each as text while it is built, for every row at once otherwise."""
    if frame.height <= TEXT_SLICE_ROWS:
        return frame.select(row_wise).to_series()
    return pl.concat(
        [
            frame.slice(start, TEXT_SLICE_ROWS).select(row_wise).to_series()
            for start in range(0, frame.height, TEXT_SLICE_ROWS)
        ]
    )


def stratified_ranks(frame: pl.DataFrame, strata: int, prefix: str = "") -> pl.DataFrame:
    """Add ``stratum`` (equal-count bins of ``nll_query``) and ``rmi_rank`` (0..1 within
    the stratum, ties averaged) and ``rmi_position`` (0-based order within the stratum),
    rows in ``frame``'s order."""
    n = frame.height
    stratum, rank, position = f"{prefix}stratum", f"{prefix}rmi_rank", f"{prefix}rmi_position"
    by_query = sorted_positions(frame, ["nll_query", "sample_id"])
    frame = frame.with_columns(((by_query.cast(pl.Int64) * strata) // max(n, 1)).cast(pl.Int32).alias(stratum))
    places = sorted_positions(frame, ["rmi", "sample_id"], within=stratum).cast(pl.Int64)
    frame = frame.with_columns(places.alias(position))
    # Without ties, a row's average rank is its place in RMI order: one sort fewer.
    tied = _ties_within(frame[stratum].to_numpy(), places.to_numpy(), frame["rmi"])
    place = pl.col("rmi").rank("average").over(stratum) - 1 if tied else pl.col(position)
    return frame.with_columns(
        pl.when(pl.len().over(stratum) > 1).then(place / (pl.len().over(stratum) - 1)).otherwise(0.5).alias(rank)
    )


def _ties_within(strata: np.ndarray, places: np.ndarray, values: pl.Series) -> bool:
    """Whether two rows of a stratum share a value (or a value is missing): the rows laid out by
    stratum, then by their ``places`` in it, and neighbours compared."""
    if values.null_count() or values.is_nan().any():
        return True
    sizes = np.bincount(strata)
    slot = (np.cumsum(sizes) - sizes)[strata] + places
    in_order, strata_in_order = np.empty(len(slot), dtype=np.float64), np.empty(len(slot), dtype=strata.dtype)
    in_order[slot], strata_in_order[slot] = values.to_numpy(), strata
    return bool(np.any((in_order[1:] == in_order[:-1]) & (strata_in_order[1:] == strata_in_order[:-1])))


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
    band = pl.col("stratum").replace_strict
    below, above = (
        pl.col("rmi_position") < band(sizes["stratum"], starts),
        pl.col("rmi_position") >= band(sizes["stratum"], [s + q for s, q in zip(starts, quotas, strict=True)]),
    )
    low, high = config.band_low, config.band_low + config.budget
    decided = ranked.with_columns(
        decision=pl.when(below | above).then(pl.lit(DROP)).otherwise(pl.lit(KEEP)),
        reason_code=pl.when(below)
        .then(code(Reason.RMI_BELOW_BAND))
        .when(above)
        .then(code(Reason.RMI_ABOVE_BAND))
        .otherwise(code(Reason.RMI_IN_BAND)),
        # Closeness to the band's centre: the score behind the decision (for AUROC).
        keep_score=-(pl.col("rmi_rank") - (config.band_low + config.budget / 2)).abs(),
    )
    where = pl.when(below).then(pl.lit("below")).when(above).then(pl.lit("above")).otherwise(pl.lit("in"))
    return decided.with_columns(reason=in_slices(decided, _measured(where, low, high))).drop("rmi_position")


def _measured(where: pl.Expr, low: float | pl.Expr, high: float | pl.Expr) -> pl.Expr:
    """A band decision's reason (its ``reason_code`` column's, decided before) with what was
    measured: the sample's RMI rank in its NLL(Q) stratum and the kept band it falls ``where``
    (below, in, above). One text column for every row, whatever the decision."""

    def edge(value: float | pl.Expr) -> pl.Expr:
        return (value if isinstance(value, pl.Expr) else pl.lit(float(value))).round(3)

    return pl.format(
        "{}: RMI rank {} in NLL(Q) stratum {}, {} the kept band {}-{}",
        pl.col("reason_code"),
        pl.col("rmi_rank").round(3),
        pl.col("stratum"),
        where,
        edge(low),
        edge(high),
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
    joined = strong_ranked.join(weak_ranked, on="sample_id", how="inner", maintain_order="left")
    if joined.height != strong.height:
        raise ValueError(f"weak model scores cover {joined.height} of {strong.height} samples")
    budget = keep_count(joined.height, config.budget)
    # Rounded so that equal rank gaps tie exactly (2/3 - 0 vs 1 - 1/3) and fall to sample_id.
    ordered = joined.with_columns(diff=(pl.col("rmi_rank") - pl.col("weak_rmi_rank")).round(12))
    ordered = ordered.with_columns(position=sorted_positions(ordered, ["diff", "sample_id"], descending=[True, False]))
    above = pl.col("diff") > config.diff_threshold
    return ordered.with_columns(
        decision=pl.when(pl.col("position") < budget).then(pl.lit(KEEP)).otherwise(pl.lit(DROP)),
        reason_code=pl.when((pl.col("position") < budget) & above)
        .then(code(Reason.DIFF_ABOVE_THRESHOLD))
        .when(pl.col("position") < budget)
        .then(code(Reason.DIFF_FILL))
        .when(above)
        .then(code(Reason.DIFF_OVER_BUDGET))
        .otherwise(code(Reason.DIFF_BELOW_THRESHOLD)),
        reason=pl.when((pl.col("position") < budget) & above)
        .then(pl.lit("diff_above_threshold"))
        .when(pl.col("position") < budget)
        .then(pl.lit("diff_fill: below threshold, kept to fill the budget"))
        .when(above)
        .then(pl.lit("diff_over_budget: above threshold, trimmed to the budget"))
        .otherwise(pl.lit("diff_below_threshold: weak model finds it as easy as the strong one")),
        keep_score=pl.col("diff"),
    ).drop("position")


def top_by_score(
    frame: pl.DataFrame, keep_score: pl.Expr, count: int, keep_reason: Reason, drop_reason: Reason
) -> pl.DataFrame:
    """Keep the ``count`` rows of highest ``keep_score`` (ties by sample_id); null scores never kept."""
    ordered = frame.with_columns(keep_score=keep_score)
    ordered = ordered.with_columns(
        position=sorted_positions(ordered, ["keep_score", "sample_id"], descending=[True, False], nulls_last=True)
    )
    kept = (pl.col("position") < count) & pl.col("keep_score").is_not_null()
    return (
        ordered.with_columns(
            decision=pl.when(kept).then(pl.lit(KEEP)).otherwise(pl.lit(DROP)),
            reason_code=pl.when(kept).then(code(keep_reason)).otherwise(code(drop_reason)),
        )
        .with_columns(reason=pl.col("reason_code"))
        .drop("position")
    )


def select_ifd(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Cherry LLM: drop IFD > 1 (the query does not help predict the answer), keep the highest IFD."""
    selected = top_by_score(
        scores,
        pl.when(pl.col("ifd_loss") <= 1).then(pl.col("ifd_loss")),
        keep_count(scores.height, config.budget),
        Reason.IFD_TOP,
        Reason.IFD_BELOW_CUT,
    )
    above_1 = pl.col("ifd_loss") > 1
    return selected.with_columns(
        reason_code=pl.when(above_1).then(code(Reason.IFD_ABOVE_1)).otherwise(pl.col("reason_code")),
        reason=pl.when(above_1)
        .then(pl.lit("ifd_above_1: the query does not help predict the answer"))
        .otherwise(pl.col("reason")),
    )


def select_ppl(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Keep the answers the model finds most likely given the query (lowest NLL(A|Q))."""
    return top_by_score(
        scores,
        -pl.col("nll_answer_given_query"),
        keep_count(scores.height, config.budget),
        Reason.PPL_LOWEST,
        Reason.PPL_HIGHER,
    )


def _seeded_uniform(sample_id: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def select_random(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """A seeded random subset: the same seed and samples give the same subset on any machine."""
    draw = pl.col("sample_id").map_elements(lambda sid: _seeded_uniform(sid, config.seed), return_dtype=pl.Float64)
    return top_by_score(
        scores, draw, keep_count(scores.height, config.budget), Reason.RANDOM_DRAW, Reason.RANDOM_NOT_DRAWN
    )


def _with_filter_reasons(scores: pl.DataFrame, filters: list[Filter]) -> pl.DataFrame:
    """``scores`` with ``_filtered_code`` and ``_filtered``: the reason code and reason of the first
    filter a row fails (null where it fails none). The texts are built for the failing rows only,
    where a text for each of 10^7 rows would cost seconds."""
    if any(".over(" in str(expr) for f in filters for expr in (f.failing, f.reason_code, f.reason)):
        raise ValueError("a filter reads a window: compute it in the filter's columns")
    prepared = scores.with_columns(*(column for f in filters for column in f.columns))
    failing = prepared.select(pl.any_horizontal(f.failing.fill_null(False) for f in filters)).to_series()
    reason_code, reason = pl.lit(None, pl.String), pl.lit(None, pl.String)
    for f in reversed(filters):
        # A reason that came out null must not let a failing row through.
        reason_code = pl.when(f.failing).then(f.reason_code).otherwise(reason_code)
        reason = pl.when(f.failing).then(f.reason.fill_null(pl.lit("filtered"))).otherwise(reason)
    reasons = prepared.filter(failing).select(_filtered_code=reason_code, _filtered=reason)
    # Each row's place among the failing ones (null where it passes), to spread them back.
    place = pl.select(pl.when(failing).then(failing.cast(pl.UInt32).cum_sum() - 1)).to_series()
    return scores.hstack(reasons.select(pl.all().gather(place)))


def _band_with_checks(
    scores: pl.DataFrame,
    config: SelectionConfig,
    filters: list[Filter],
    most_likely: bool = False,
):
    """Rule out the rows each filter names (the first that applies gives the reason), then keep
    the RMI band of each NLL(Q) stratum ranked among *all* the stratum's samples, so the band
    means the same whatever the checks removed. With ``most_likely``, keep instead each stratum's
    share of the rows the model finds most likely given their query (lowest NLL(A|Q)), still
    never above the guard.

    The band is centred where the paper's is (``band_low + budget / 2``) and widened around that
    centre, never above ``band_guard`` (the top ranks, where answers restate their query), until
    each stratum's share of the budget is met by rows the checks let through; strata that fall
    short leave their share to the rows nearest the centre elsewhere. Fewer rows than the
    budget are kept only when fewer pass the checks within the guard.

    Answers of the largest set that return the same for one request (``agreed``, see
    ``lib/ingest/execution/agreement.py``) are kept first in their stratum, before the band's
    nearest rows: execution is evidence, a likelihood only a hint (``agreed_kept``)."""
    count = keep_count(scores.height, config.budget)
    # Features that name reasons or group answers; scores without them read as unknown.
    scores = scores.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in SELECTION_FEATURES.items() if name not in scores.columns
    )
    ranked = stratified_ranks(_with_filter_reasons(scores, filters), config.effective_strata(scores.height))
    sizes = ranked.group_by("stratum").len().sort("stratum")
    quotas = largest_remainder_quotas(sizes["len"].to_list(), config.budget)
    centre = config.band_low + config.budget / 2
    # The frame keeps its order and width: each step sorts or groups only the columns it reads.
    ordered = ranked.with_columns(
        _quota=pl.col("stratum").replace_strict(sizes["stratum"], quotas, return_dtype=pl.Int64),
        _eligible=pl.col("_filtered_code").is_null() & (pl.col("rmi_rank") <= config.band_guard),
        _later=(pl.col("exec_status") != AGREED).fill_null(True),
        # What is kept first: the nearest the band's centre, or the most likely answer.
        _distance=pl.col("nll_answer_given_query") if most_likely else (pl.col("rmi_rank") - centre).abs(),
    )
    # Each stratum keeps its quota of its eligible rows: the agreed, then the nearest (a sort key
    # more only where some answer agreed: at 10^7 rows each key costs).
    order = ["_distance", "sample_id"] if ordered["_later"].all() else ["_later", "_distance", "sample_id"]
    eligible = ordered.select(*order, "stratum", "_quota", "_eligible").with_row_index("_row")
    eligible = eligible.filter("_eligible")
    eligible = eligible.with_columns(_place=sorted_positions(eligible, order, within="stratum"))
    kept_rows = np.zeros(ordered.height, dtype=bool)
    kept_rows[eligible.filter(pl.col("_place") < pl.col("_quota"))["_row"].to_numpy()] = True
    shortfall = count - int(kept_rows.sum())
    if shortfall > 0:
        # The nearest eligible rows of any stratum fill what the strata left.
        fill = eligible.filter(~pl.Series(kept_rows).gather(eligible["_row"])).sort(order).head(shortfall)["_row"]
        kept_rows[fill.to_numpy()] = True
    ordered = ordered.with_columns(_kept=pl.Series(kept_rows))
    kept, agreed_kept = pl.col("_kept") & pl.col("_later"), pl.col("_kept") & ~pl.col("_later")
    ordered = ordered.with_columns(
        _low=pl.col("rmi_rank").filter(kept).min().over("stratum").fill_null(centre),
        _high=pl.col("rmi_rank").filter(kept).max().over("stratum").fill_null(centre),
        _likely=pl.col("_distance").filter(kept).max().over("stratum"),
    )
    filtered = pl.col("_filtered_code").is_not_null()
    reason_code = pl.when(filtered).then(pl.col("_filtered_code")).when(agreed_kept).then(code(Reason.AGREED_KEPT))
    reason = (
        pl.when(filtered)
        .then(pl.col("_filtered"))
        .when(agreed_kept)
        .then(
            pl.format(
                "{}: {}; kept before the band (RMI rank {} in NLL(Q) stratum {})",
                pl.col("reason_code"),
                pl.col("exec_detail"),
                pl.col("rmi_rank").round(3),
                pl.col("stratum"),
            )
        )
    )
    if most_likely:
        likely = pl.format(
            "{}: NLL(A|Q) {} in NLL(Q) stratum {}, the kept reach {}",
            pl.col("reason_code"),
            pl.col("nll_answer_given_query").round(3),
            pl.col("stratum"),
            pl.col("_likely").round(3),
        )
        within_guard = pl.col("rmi_rank") <= config.band_guard
        reason_code = (
            reason_code.when(pl.col("_kept"))
            .then(code(Reason.LIKELY_KEPT))
            .when(within_guard)
            .then(code(Reason.LIKELY_BELOW))
        )
        reason = reason.when(pl.col("_kept") | within_guard).then(likely)
    above_guard, above_centre = pl.col("rmi_rank") > config.band_guard, pl.col("rmi_rank") > centre
    low, high = pl.col("_low"), pl.col("_high")
    where = (
        pl.when(pl.col("_kept"))
        .then(pl.lit("in"))
        .when(above_guard)
        .then(pl.lit(f"above the guard {config.band_guard:g} and"))
        .when(above_centre)
        .then(pl.lit("above"))
        .otherwise(pl.lit("below"))
    )
    decided = ordered.with_columns(
        decision=pl.when(pl.col("_kept")).then(pl.lit(KEEP)).otherwise(pl.lit(DROP)),
        reason_code=reason_code.when(pl.col("_kept"))
        .then(code(Reason.RMI_IN_BAND))
        .when(above_guard | above_centre)
        .then(code(Reason.RMI_ABOVE_BAND))
        .otherwise(code(Reason.RMI_BELOW_BAND)),
        # Closeness to the band's centre, among the rows the checks let through (for AUROC).
        keep_score=pl.when(pl.col("_filtered_code").is_null()).then(-pl.col("_distance")),
    )
    decided = decided.with_columns(reason=in_slices(decided, reason.otherwise(_measured(where, low, high))))
    return decided.drop(
        "_filtered_code",
        "_filtered",
        "_quota",
        "_eligible",
        "_distance",
        "_later",
        "_kept",
        "_low",
        "_high",
        "_likely",
    )


_language = pl.col("answer_language").fill_null("its")
_check_failed = pl.col("code_status").str.starts_with(CHECK_FAILED)
_UNUSABLE_CODE = Filter(
    pl.col("code_status").is_in(UNUSABLE) | _check_failed,
    pl.when(_check_failed).then(code(Reason.CODE_CHECK_FAILED)).otherwise(pl.lit("code_") + pl.col("code_status")),
    pl.lit("code_")
    + pl.col("code_status")
    + pl.when(pl.col("code_status") == "syntax_error")
    .then(pl.lit(": the answer's ") + _language + pl.lit(" code does not parse"))
    .when(pl.col("code_status") == "other_language")
    .then(
        pl.lit(": asked for ")
        + pl.col("requested_language").fill_null("another")
        + pl.lit(", answered in ")
        + _language
    )
    .when(pl.col("code_status") == "no_code")
    .then(pl.lit(": the answer has no code"))
    .when(pl.col("code_status") == "cut_off")
    .then(pl.lit(": the answer's code block is never closed (cut off)"))
    .when(pl.col("code_status") == "stub")
    .then(pl.lit(": the answer's functions do nothing (pass, ..., a docstring)"))
    .otherwise(pl.lit(": the code check could not run on this answer")),
)


# Execution is evidence, not a likelihood: an answer that fails the tests its record carries (or
# its instruction's examples) does not do what was asked, whatever its scores.
_TESTS_FAILED = Filter(
    pl.col("exec_status").is_in(FAILING),
    code(Reason.TESTS_FAILED),
    pl.lit(f"{Reason.TESTS_FAILED}: ")
    + pl.when(pl.col("exec_status") == "timeout")
    .then(pl.lit("timed out: "))
    .when(pl.col("exec_status") == "error")
    .then(pl.lit("error: "))
    .otherwise(pl.lit(""))
    + pl.col("exec_detail").fill_null("the answer fails its tests"),
)
# The same evidence without tests (--run-untested): the answer's own code, with the example usage
# it shows, raised an error of its own making when run alone.
_CODE_RAISES = Filter(
    pl.col("exec_status") == RAISED,
    code(Reason.CODE_RAISES),
    pl.lit(f"{Reason.CODE_RAISES}: run alone, ") + pl.col("exec_detail").fill_null("the answer's code raised"),
)


def select_rmi_band_code(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Beyond the paper: answers that fail the tests their record carries, and answers whose
    code does not parse, is in another language than the one asked for, or is missing are
    dropped first (RMI cannot see a truncated or wrong-language answer), then the RMI band fills
    the whole budget. Code in a language without a parser is never dropped for it."""
    return _band_with_checks(scores, config, [_TESTS_FAILED, _CODE_RAISES, _UNUSABLE_CODE])


# Answers of one language and ending needed to judge completeness against their own kind.
MIN_COMPLETENESS_PEERS = 20


def select_rmi_band_checks(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Beyond the paper: before the RMI band fills the budget (see :func:`_band_with_checks`),
    rule out the rows :func:`_checks` names."""
    return _band_with_checks(scores, config, _checks(config))


def _checks(config: SelectionConfig) -> list[Filter]:
    """The checks' filters, in this order of reasons:
    - answers that fail the tests their record carries or their instruction's examples, run in
      the sandbox at ingest (``tests_failed``, naming the first failing test), and answers
      without tests whose own code raised when run alone (``code_raises``, with --run-untested);
    - answers the model does not expect to end where they do: the end of the turn after [Q;A]
      is ``completeness_margin`` nats less likely than for the median answer of the input that
      ends the same way (a code block, a sentence, bare code). A cut-off function still parses
      and RMI cannot see it; answers without the signal (scored before it existed, or cut to
      fit) are not judged by it;
    - answers with unusable code (as rmi-band+code);
    - answers whose function takes other parameters than the instruction's backticked signature
      asks for: valid code for another task under the asked-for name, which RMI only partly sees;
      or whose code, in any language, never names the function the instruction asks for."""
    ending = pl.col("answer_ending").fill_null("any")
    # Answers of one language and ending are compared where there are enough of them: a model
    # expects the turn to end after unfenced Java differently than after unfenced Python.
    language = pl.col("answer_language").fill_null("unknown")
    same_language_peers = pl.col("answer_language").is_not_null() & (
        pl.col("nll_answer_end").count().over(ending, language) >= MIN_COMPLETENESS_PEERS
    )
    typical_end = (
        pl.when(same_language_peers)
        .then(pl.col("nll_answer_end").median().over(ending, language))
        .otherwise(pl.col("nll_answer_end").median().over(ending))
    )
    same_language, typical = pl.col("_same_language_peers"), pl.col("_typical_end")
    peers = pl.when(same_language).then(language + pl.lit(" ")).otherwise(pl.lit("")) + pl.lit("answer ending in ")
    incomplete = Filter(
        pl.col("nll_answer_end").is_not_null() & (pl.col("nll_answer_end") > typical + config.completeness_margin),
        code(Reason.ANSWER_INCOMPLETE),
        pl.format(
            "answer_incomplete: the end of the turn is {} nats less likely than for the median {}"
            "{} ({} > {} + {}; likely cut off)",
            (pl.col("nll_answer_end") - typical).round(2),
            peers,
            ending,
            pl.col("nll_answer_end").round(2),
            typical.round(2),
            pl.lit(config.completeness_margin),
        ),
        columns=(same_language_peers.alias("_same_language_peers"), typical_end.alias("_typical_end")),
    )
    signature = pl.col("signature_status").fill_null("unknown")
    mismatch = Filter(
        signature.is_in(["mismatch", "unused", "missing"]),
        pl.when(signature == "mismatch")
        .then(code(Reason.SIGNATURE_MISMATCH))
        .when(signature == "missing")
        .then(code(Reason.SIGNATURE_MISSING))
        .otherwise(code(Reason.SIGNATURE_UNUSED)),
        pl.when(signature == "mismatch")
        .then(pl.lit("signature_mismatch: the answer's function takes other parameters than the ones asked for"))
        .when(signature == "missing")
        .then(pl.lit("signature_missing: the answer's code never names the function the instruction asks for"))
        .otherwise(pl.lit("signature_unused: the answer's function reads none of its parameters")),
    )
    return [_TESTS_FAILED, _CODE_RAISES, incomplete, _UNUSABLE_CODE, mismatch]


def select_ppl_checks(scores: pl.DataFrame, config: SelectionConfig) -> pl.DataFrame:
    """Beyond the paper: the checks of :func:`select_rmi_band_checks`, then, within each NLL(Q)
    stratum and under the RMI guard (no echo), the answers the model finds most likely given
    their query (lowest NLL(A|Q)) instead of the RMI band: on answers graded by running their
    tests, RMI ranks passing answers no better than chance once the checks have run, NLL(A|Q)
    does (docs/evaluation)."""
    return _band_with_checks(scores, config, _checks(config), most_likely=True)


def select(strategy: str, strong: pl.DataFrame, weak: pl.DataFrame | None, config: SelectionConfig) -> pl.DataFrame:
    """Apply ``strategy`` (resolved, not ``auto``): every row gets decision, reason_code, reason
    and keep_score, rows in ``strong``'s order."""
    if strategy == DIFF:
        if weak is None:
            raise ValueError("strategy 'diff' needs a weak model's scores")
        return select_diff(strong, weak, config)
    rules = {
        RMI_BAND: select_rmi_band,
        IFD: select_ifd,
        PPL: select_ppl,
        RANDOM: select_random,
        RMI_BAND_CODE: select_rmi_band_code,
        RMI_BAND_CHECKS: select_rmi_band_checks,
        PPL_CHECKS: select_ppl_checks,
    }
    return rules[strategy](strong, config)
