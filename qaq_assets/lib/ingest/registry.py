"""Shard registry: which file each shard partition reads, recorded in the lake.

A shard belongs to its source file. Registering the same path again (changed content
included) is an update; a different file whose name maps to an already registered shard
key is refused, unless the caller takes the key over on purpose (``replace_shard``), which
is recorded with the previous path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath

import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest.record_formats import ShardReadError, detect_format
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SHARD_SOURCES

# Joins the directories of a landed file's path relative to the landing directory, so that
# Spark/Hive-style dumps (a/part-0.jsonl, b/part-0.jsonl) land as distinct shards.
DIRECTORY_SEPARATOR = "__"


class ShardRegistrationError(QaqError, ValueError):
    """A file that cannot become (or take over) a shard; the message names the file and why."""


def shard_name(path: str | Path) -> str:
    """Partition key for a file: its name without format suffixes, in [A-Za-z0-9._-]."""
    name = PurePath(path).name
    name = re.sub(r"\.(jsonl|json|ndjson)(\.gz)?$|\.parquet$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not name:
        raise ShardRegistrationError(f"{path}: cannot derive a shard name from the file name")
    return name[:120]


def landed_shard_name(path: Path, landing_dir: Path) -> str:
    """Partition key of a landed file: its path relative to ``landing_dir``, directories
    joined by ``__`` (``a/part-0.jsonl`` -> ``a__part-0``)."""
    relative = path.relative_to(landing_dir)
    directories = [re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.") for part in relative.parts[:-1]]
    return DIRECTORY_SEPARATOR.join([*[d for d in directories if d], shard_name(relative)])[:120]


def file_signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class ShardFile:
    """A file to register and the shard key it would take."""

    path: Path
    shard: str


@dataclass
class Registration:
    """The outcome of :func:`register`: shards registered, and each refused file's one-line cause."""

    shards: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # path -> cause


def shard_files(paths: list[str | Path]) -> tuple[list[ShardFile], dict[str, str]]:
    """Each path with its shard key (from the file name), and the paths that cannot be shards."""
    files, failures = [], {}
    for raw_path in paths:
        try:
            files.append(ShardFile(Path(raw_path).resolve(), shard_name(raw_path)))
        except ShardRegistrationError as error:
            failures[str(raw_path)] = str(error)
    return files, failures


def _problem(file: ShardFile) -> str | None:
    try:
        detect_format(file.path)
    except ShardReadError as error:
        return str(error)
    if not file.path.exists():
        return f"{file.path}: no such file"
    if not file.path.is_file():
        return f"{file.path}: not a regular file"
    if not os.access(file.path, os.R_OK):
        return f"{file.path}: not readable (permission denied)"
    return None


def check(lake: Lake, files: list[ShardFile], replace_shard: bool = False) -> tuple[list[ShardFile], dict[str, str]]:
    """Files that can be registered, and each other file's one-line cause. Reads the lake,
    writes nothing: a file is refused when it is unreadable or unsupported, when another file
    of the same call maps to its shard key, or when its key belongs to another source."""
    owners = dict(lake.scan(SHARD_SOURCES).select("shard", "path").collect().iter_rows())
    accepted, failures, claimed = [], {}, {}
    for file in files:
        problem = _problem(file)
        if problem is None and file.shard in claimed and claimed[file.shard] != file.path:
            problem = f"{claimed[file.shard]} and {file.path} would both be shard {file.shard!r}; rename one"
        owner = owners.get(file.shard)
        if problem is None and owner is not None and owner != str(file.path) and not replace_shard:
            problem = (
                f"{file.path} would take over shard {file.shard!r}, which reads {owner}; rename the file, "
                "or pass --replace-shard to replace that shard's samples with this file's"
            )
        if problem is None:
            claimed[file.shard] = file.path
            accepted.append(file)
        else:
            failures[str(file.path)] = problem
    return accepted, failures


def record(lake: Lake, files: list[ShardFile]) -> list[str]:
    """Record ``files`` as their shards' sources (checked by :func:`check` first)."""
    if not files:
        return []
    owners = dict(lake.scan(SHARD_SOURCES).select("shard", "path").collect().iter_rows())
    now = datetime.now(UTC)
    rows = []
    for file in files:
        size, mtime = file_signature(file.path)
        previous = owners.get(file.shard)
        rows.append(
            {
                "shard": file.shard,
                "path": str(file.path),
                "size_bytes": size,
                "mtime_ns": mtime,
                "registered_at": now,
                "previous_path": previous if previous not in (None, str(file.path)) else None,
            }
        )
    lake.upsert(SHARD_SOURCES, pl.DataFrame(rows, schema=SHARD_SOURCES.schema), keys=["shard"])
    return [file.shard for file in files]


def register(lake: Lake, files: list[ShardFile], replace_shard: bool = False) -> Registration:
    """Check and record ``files``: the accepted ones become shards, the others are reported."""
    accepted, failures = check(lake, files, replace_shard)
    return Registration(shards=record(lake, accepted), failures=failures)


def register_files(lake: Lake, paths: list[str | Path], replace_shard: bool = False) -> list[str]:
    """Record each file as a shard (one file = one shard); all or nothing. Raises
    :class:`ShardRegistrationError` naming the first file refused."""
    files, failures = shard_files(paths)
    accepted, refused = check(lake, files, replace_shard)
    failures |= refused
    if failures:
        raise ShardRegistrationError(next(iter(failures.values())))
    return record(lake, accepted)


def registered_sources(lake: Lake) -> pl.DataFrame:
    return lake.scan(SHARD_SOURCES).collect()


def source_path(lake: Lake, shard: str) -> Path | None:
    rows = lake.scan(SHARD_SOURCES).filter(pl.col("shard") == shard).select("path").collect()
    return Path(rows.item(0, 0)) if rows.height else None
