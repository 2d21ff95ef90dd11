"""Read one shard file (JSONL, JSONL.gz or Parquet) into normalised samples plus quarantined rows.

Every row read ends up in exactly one of the two frames, so ``rows_read ==
samples.height + quarantine.height`` always holds. Only a file that cannot be read
as its format at all raises :class:`ShardReadError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from qaq_assets.lib.ingest.record_formats import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_RAW_CHARS,
    BadRecord,
    ShardReadError,
    detect_format,
    extract_pair,
    iter_jsonl,
    record_id_of,
    sample_id_for,
    text_problem,
)
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES


@dataclass
class ShardRead:
    samples: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    source_format: str


def _iter_parquet(path: Path, max_record_bytes: int) -> Iterator[tuple[int, dict | BadRecord, str]]:
    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for a corrupt file
        raise ShardReadError(f"{path}: cannot read as Parquet: {error}") from error
    for row_number, record in enumerate(frame.iter_rows(named=True), start=1):
        preview = json.dumps(record, default=str, ensure_ascii=False)
        if len(preview.encode("utf-8")) > max_record_bytes:
            yield (
                row_number,
                BadRecord("record_too_large", f"row larger than {max_record_bytes} bytes"),
                preview[:MAX_RAW_CHARS],
            )
            continue
        yield row_number, text_problem(record) or record, preview[:MAX_RAW_CHARS]


def read_shard(
    path: str | Path,
    shard: str,
    label_field: str = "defect",
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> ShardRead:
    """Read ``path`` as shard ``shard``: valid samples, quarantined rows, and the count read.

    ``label_field`` (a planted-defect label, if the data has one) is carried in the
    ``label`` column and never used for scoring or selection.
    """
    path = Path(path)
    fmt = detect_format(path)
    if not path.is_file():
        raise ShardReadError(f"{path}: no such file")
    rows = _iter_parquet(path, max_record_bytes) if fmt == "parquet" else iter_jsonl(path, fmt, max_record_bytes)

    now = datetime.now(UTC)
    samples: list[dict] = []
    quarantined: list[dict] = []
    first_row_of_sample: dict[str, int] = {}
    first_row_of_id: dict[str, tuple[int, str]] = {}
    rows_read = 0
    for row_index, record, preview in rows:
        rows_read += 1
        try:
            if isinstance(record, BadRecord):
                raise record
            instruction, response, used = extract_pair(record)
            record_id = record_id_of(record)
            sample_id = sample_id_for(instruction, response)
            if record_id is not None and record_id in first_row_of_id:
                earlier_row, earlier_sample = first_row_of_id[record_id]
                if earlier_sample != sample_id:
                    raise BadRecord("duplicate_id", f"id {record_id!r} already used by row {earlier_row}")
            label = record.get(label_field)
        except BadRecord as bad:
            quarantined.append(
                {
                    "shard": shard,
                    "row_index": row_index,
                    "reason": bad.reason,
                    "detail": bad.detail[:500],
                    "raw": preview,
                    "source_file": str(path),
                    "quarantined_at": now,
                }
            )
            continue
        if record_id is not None:
            first_row_of_id.setdefault(record_id, (row_index, sample_id))
        first_row = first_row_of_sample.setdefault(sample_id, row_index)
        extra = {k: v for k, v in record.items() if k not in used and k not in ("id", label_field)}
        samples.append(
            {
                "shard": shard,
                "row_index": row_index,
                "id": record_id,
                "sample_id": sample_id,
                "instruction": instruction,
                "response": response,
                "label": None if label is None else str(label),
                "is_duplicate": first_row != row_index,
                "duplicate_of": f"{shard}:{first_row}" if first_row != row_index else None,
                "source_file": str(path),
                "source_format": fmt,
                "extra_fields": json.dumps(extra, default=str, ensure_ascii=False) if extra else None,
                "ingested_at": now,
            }
        )
    return ShardRead(
        samples=pl.DataFrame(samples, schema=RAW_SAMPLES.schema) if samples else RAW_SAMPLES.empty(),
        quarantine=pl.DataFrame(quarantined, schema=QUARANTINE.schema) if quarantined else QUARANTINE.empty(),
        rows_read=rows_read,
        source_format=fmt,
    )
