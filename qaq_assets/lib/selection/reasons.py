"""Why each row of a curated version was kept or dropped: one code per reason, as data.

Every rule writes a row's ``reason_code`` (one of :class:`ReasonCode`) beside its human
``reason``; readers (the checks, ``qaq explain``, the evaluation, the lineage's counts) read the
code, never the prose.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl


class ReasonCode(StrEnum):
    # Before selection: rows that are not candidates for the budget.
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    BENCHMARK_OVERLAP = "benchmark_overlap"
    # The checks of rmi-band+code, rmi-band+checks and ppl+checks: rows ruled out before the band.
    TESTS_FAILED = "tests_failed"
    CODE_RAISES = "code_raises"
    ANSWER_INCOMPLETE = "answer_incomplete"
    CODE_SYNTAX_ERROR = "code_syntax_error"
    CODE_OTHER_LANGUAGE = "code_other_language"
    CODE_NO_CODE = "code_no_code"
    CODE_CUT_OFF = "code_cut_off"
    CODE_STUB = "code_stub"
    CODE_CHECK_FAILED = "code_check_failed"
    SIGNATURE_MISMATCH = "signature_mismatch"
    SIGNATURE_UNUSED = "signature_unused"
    SIGNATURE_MISSING = "signature_missing"
    # The band, and the other rules' own decisions.
    AGREED_KEPT = "agreed_kept"
    RMI_IN_BAND = "rmi_in_band"
    RMI_BELOW_BAND = "rmi_below_band"
    RMI_ABOVE_BAND = "rmi_above_band"
    LIKELY_KEPT = "likely_kept"
    LIKELY_BELOW = "likely_below"
    DIFF_ABOVE_THRESHOLD = "diff_above_threshold"
    DIFF_FILL = "diff_fill"
    DIFF_OVER_BUDGET = "diff_over_budget"
    DIFF_BELOW_THRESHOLD = "diff_below_threshold"
    IFD_TOP = "ifd_top"
    IFD_BELOW_CUT = "ifd_below_cut"
    IFD_ABOVE_1 = "ifd_above_1"
    PPL_LOWEST = "ppl_lowest"
    PPL_HIGHER = "ppl_higher"
    RANDOM_DRAW = "random_draw"
    RANDOM_NOT_DRAWN = "random_not_drawn"

    @property
    def filters(self) -> bool:
        """Whether a rule's checks ruled the row out before selection (such rows can leave fewer
        kept than the budget)."""
        return self in FILTERS

    @property
    def candidate(self) -> bool:
        """Whether the row competed for the budget (not a duplicate or a benchmark overlap)."""
        return self not in NOT_CANDIDATES


FILTERS = frozenset(
    {
        ReasonCode.TESTS_FAILED,
        ReasonCode.CODE_RAISES,
        ReasonCode.ANSWER_INCOMPLETE,
        ReasonCode.CODE_SYNTAX_ERROR,
        ReasonCode.CODE_OTHER_LANGUAGE,
        ReasonCode.CODE_NO_CODE,
        ReasonCode.CODE_CUT_OFF,
        ReasonCode.CODE_STUB,
        ReasonCode.CODE_CHECK_FAILED,
        ReasonCode.SIGNATURE_MISMATCH,
        ReasonCode.SIGNATURE_UNUSED,
        ReasonCode.SIGNATURE_MISSING,
    }
)
NOT_CANDIDATES = frozenset({ReasonCode.EXACT_DUPLICATE, ReasonCode.NEAR_DUPLICATE, ReasonCode.BENCHMARK_OVERLAP})


def code(reason: ReasonCode) -> pl.Expr:
    """``reason`` as a literal column value."""
    return pl.lit(reason.value)


def is_filtered(reason_code: pl.Expr) -> pl.Expr:
    """Rows a rule's checks ruled out before selection."""
    return reason_code.is_in([reason.value for reason in FILTERS])
