"""Read one shard file (any supported format) into normalised samples plus quarantined rows.

Every row read ends up in exactly one of the two frames, so ``rows_read ==
samples.height + quarantine.height`` always holds. A file that cannot be read as its format
at all, or none of whose rows could ever be a sample (no field maps, every record over the
size limit), raises :class:`ShardReadError` with one line saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from qaq_assets.lib.ingest import lossless_json
from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.file_formats import BadRecord, ShardReadError, detect_format, iter_rows
from qaq_assets.lib.ingest.record_fields import FieldMap, extract_sample, record_id_of, sample_id_for
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES

_DEFAULTS = IngestConfig()  # the declared defaults

# Reasons that say a record's fields did not map to a sample (rather than that it was broken).
UNMAPPED = ("missing_instruction", "missing_response")
_FIELDS_SAMPLED = 50  # records whose field names are listed when none maps


@dataclass
class ShardRead:
    samples: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    source_format: str


def read_shard(
    path: str | Path,
    shard: str,
    label_field: str = _DEFAULTS.label_field,
    max_record_bytes: int = _DEFAULTS.max_record_bytes,
    fields: FieldMap = FieldMap(),
) -> ShardRead:
    """Read ``path`` as shard ``shard``: valid samples, quarantined rows, and the count read.

    ``label_field`` (a planted-defect label, if the data has one) is carried in the
    ``label`` column and never used for scoring or selection; ``fields`` maps roles to fields
    the usual names miss.
    """
    path = Path(path)
    fmt = detect_format(path)
    if not path.is_file():
        raise ShardReadError(f"{path}: no such file")

    now = datetime.now(UTC)
    samples: list[dict] = []
    quarantined: list[dict] = []
    first_row_of_sample: dict[str, int] = {}
    first_row_of_id: dict[str, tuple[int, str]] = {}
    field_names: dict[str, None] = {}
    rows_read = 0
    for row_index, record, preview in iter_rows(path, max_record_bytes):
        rows_read += 1
        try:
            if isinstance(record, BadRecord):
                raise record
            if len(field_names) < 100 and rows_read <= _FIELDS_SAMPLED:
                field_names.update(dict.fromkeys(record))
            sample = extract_sample(record, fields)
            record_id = record_id_of(record, fields)
            sample_id = sample_id_for(sample.instruction, sample.response)
            if record_id is not None and record_id in first_row_of_id:
                earlier_row, earlier_sample = first_row_of_id[record_id]
                if earlier_sample != sample_id:
                    raise BadRecord("duplicate_id", f"id {record_id!r} already used by row {earlier_row}")
            label = record.get(label_field)
            if label is None:  # a spreadsheet's "Defect" column
                label = next((v for k, v in record.items() if str(k).lower() == label_field.lower()), None)
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
        named = {(fields.id or "id").lower(), label_field.lower()}  # kept in their own columns
        extra = {k: v for k, v in record.items() if k not in sample.used and str(k).lower() not in named}
        samples.append(
            {
                "shard": shard,
                "row_index": row_index,
                "id": record_id,
                "sample_id": sample_id,
                "instruction": sample.instruction,
                "response": sample.response,
                "conversation": sample.conversation,
                "tests": sample.tests,
                "record_style": sample.style,
                "label": None if label is None else str(label),
                "is_duplicate": first_row != row_index,
                "duplicate_of": f"{shard}:{first_row}" if first_row != row_index else None,
                "source_file": str(path),
                "source_format": fmt,
                "extra_fields": lossless_json.dumps(extra) if extra else None,
                # The record as it came, its text shared with the columns above (export --format original).
                "original": lossless_json.dumps(
                    record, {"instruction": sample.instruction, "response": sample.response}
                ),
                "ingested_at": now,
            }
        )
    if not samples and quarantined:
        _refuse_unusable(path, quarantined, list(field_names), max_record_bytes)
    return ShardRead(
        samples=pl.DataFrame(samples, schema=RAW_SAMPLES.schema) if samples else RAW_SAMPLES.empty(),
        quarantine=pl.DataFrame(quarantined, schema=QUARANTINE.schema) if quarantined else QUARANTINE.empty(),
        rows_read=rows_read,
        source_format=fmt,
    )


def _refuse_unusable(path: Path, quarantined: list[dict], field_names: list[str], max_record_bytes: int) -> None:
    """One line for a file none of whose rows can be a sample for one shared reason."""
    reasons = {row["reason"] for row in quarantined}
    if reasons == {"record_too_large"}:
        raise ShardReadError(
            f"{path}: every record is larger than --max-record-bytes ({max_record_bytes} bytes); raise the limit"
        )
    if reasons <= set(UNMAPPED):
        found = ", ".join(field_names[:20]) or "none"
        raise ShardReadError(
            f"{path}: no record maps to an instruction and a response (fields found: {found}); "
            "map them with --fields instruction=FIELD,response=FIELD (or conversation=FIELD), or for this file "
            f"alone in {path.name}.fields beside it"
        )
