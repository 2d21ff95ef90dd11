"""Shard registry: which file each shard partition reads, recorded in the lake."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from qaq_assets.lib.lake import Lake
from qaq_assets.lib.records import detect_format
from qaq_assets.lib.tables import SHARD_SOURCES


def shard_name(path: str | Path) -> str:
    """Partition key for a file: its name without format suffixes, in [A-Za-z0-9._-]."""
    name = Path(path).name
    name = re.sub(r"\.(jsonl|json|ndjson)(\.gz)?$|\.parquet$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not name:
        raise ValueError(f"{path}: cannot derive a shard name from the file name")
    return name[:120]


def file_signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def register_files(lake: Lake, paths: list[str | Path]) -> list[str]:
    """Record each file as a shard (one file = one shard) and return the shard names."""
    rows, names = [], {}
    for raw_path in paths:
        path = Path(raw_path).resolve()
        detect_format(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        name = shard_name(path)
        if name in names and names[name] != path:
            raise ValueError(f"{names[name]} and {path} would both be shard {name!r}; rename one")
        names[name] = path
        size, mtime = file_signature(path)
        rows.append(
            {
                "shard": name,
                "path": str(path),
                "size_bytes": size,
                "mtime_ns": mtime,
                "registered_at": datetime.now(UTC),
            }
        )
    if rows:
        lake.upsert(SHARD_SOURCES, pl.DataFrame(rows, schema=SHARD_SOURCES.schema), keys=["shard"])
    return list(names)


def registered_sources(lake: Lake) -> pl.DataFrame:
    return lake.scan(SHARD_SOURCES).collect()


def source_path(lake: Lake, shard: str) -> Path | None:
    rows = lake.scan(SHARD_SOURCES).filter(pl.col("shard") == shard).select("path").collect()
    return Path(rows.item(0, 0)) if rows.height else None
