"""The formats `qaq export` writes, and which one a file's extension asks for (no polars here:
the command line lists them in its help)."""

from __future__ import annotations

from pathlib import Path

from qaq_assets.lib.errors import QaqError

FORMATS = ("messages-jsonl", "sharegpt-jsonl", "alpaca-jsonl", "original", "parquet")
BY_EXTENSION = {
    ".parquet": "parquet",
    ".jsonl": "messages-jsonl",
    ".json": "messages-jsonl",
    ".ndjson": "messages-jsonl",
}


def format_for(out: str | Path, fmt: str | None) -> str:
    """The export format: as asked, else from the file's extension (``.parquet``, ``.jsonl``)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise QaqError(f"--format must be one of {list(FORMATS)}, not {fmt!r}")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in BY_EXTENSION:
        raise QaqError(
            f"{out}: cannot tell the format from {suffix or 'no extension'}; pass --format ({', '.join(FORMATS)})"
        )
    return BY_EXTENSION[suffix]
