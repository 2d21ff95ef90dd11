"""What was quarantined, and why: per shard, the rows by reason, one example each, and what to do
about it (the flag that maps the fields, the limit to raise)."""

from __future__ import annotations

import json

import polars as pl

from qaq_assets.lib.reports.summary import shorten
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QUARANTINE

HINTS = {
    "missing_instruction": "map the instruction's field: --fields instruction=FIELD (or conversation=FIELD)",
    "missing_response": "map the response's field: --fields response=FIELD",
    "empty_instruction": "the instruction is empty: nothing to score",
    "empty_response": "the response is empty: nothing to score",
    "record_too_large": "raise --max-record-bytes if records this large are wanted",
    "malformed_json": "a broken or cut line: repair or re-export the file",
    "malformed_csv": "a quote never closed or a wrong number of fields in this row: repair it",
    "not_an_object": "a JSON value that is not an object: each record must be one",
    "wrong_type": "a field that is not text (the detail names the type found); map another with --fields",
    "unknown_role": "a conversation turn's role is none of user/assistant/system/tool (human/gpt in ShareGPT)",
    "duplicate_id": "two records share an id with different content: give them distinct ids",
    "nul_character": "a NUL character in the record: clean the file",
    "invalid_unicode": "a lone surrogate (\\\\ud800 ...): clean the file",
    "invalid_utf8": "bytes that are not UTF-8: re-encode the file",
    "too_deeply_nested": "JSON nested deeper than Python parses",
}


def quarantined(lake: Lake, shards: list[str] | None = None, reason: str | None = None) -> pl.DataFrame:
    """Quarantined rows (of ``shards`` and ``reason`` where given), in shard and row order."""
    rows = lake.scan(QUARANTINE)
    if shards is not None:
        rows = rows.filter(pl.col("shard").is_in(shards))
    if reason is not None:
        rows = rows.filter(pl.col("reason") == reason)
    return rows.sort("shard", "row_index").collect()


def _fields_of(raw: str) -> str:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return ""
    return f" (fields found: {', '.join(record)})" if isinstance(record, dict) and record else ""


def summary_lines(rows: pl.DataFrame) -> list[str]:
    """Per shard: its quarantined rows by reason, and for each reason one example and a hint."""
    lines = []
    for (shard,), of_shard in rows.group_by("shard", maintain_order=True):
        counts = of_shard.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
        by_reason = ", ".join(f"{reason} {n}" for reason, n in counts.iter_rows())
        lines.append(f"quarantined in {shard}: {of_shard.height} row{'s' * (of_shard.height != 1)} ({by_reason})")
        for reason, _ in counts.iter_rows():
            example = of_shard.filter(pl.col("reason") == reason).row(0, named=True)
            hint = HINTS.get(reason, "")
            if reason in ("missing_instruction", "missing_response"):
                hint += _fields_of(example["raw"])
            lines.append(
                f"  {reason}: e.g. row {example['row_index']}: {shorten(example['raw'].replace(chr(10), ' '), 100)!r}"
                + (f"; {hint}" if hint else "")
            )
    return lines
