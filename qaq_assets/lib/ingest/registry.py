"""Shard registry: which file each shard partition reads, recorded in the lake.

A shard belongs to its source file. Registering the same path again (changed content
included) is an update; a different file whose name maps to an already registered shard
key is refused, unless the caller takes the key over on purpose (``replace_shard``), which
is recorded with the previous path.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath

import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest import dataset_folders, field_sidecars
from qaq_assets.lib.ingest.file_formats import DATA_SUFFIXES, ShardReadError, detect_format, is_data_file
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SHARD_SOURCES

# Joins the directories of a landed file's path relative to the landing directory, so that
# Spark/Hive-style dumps (a/part-0.jsonl, b/part-0.jsonl) land as distinct shards.
DIRECTORY_SEPARATOR = "__"


class ShardRegistrationError(QaqError, ValueError):
    """A file that cannot become (or take over) a shard; the message names the file and why."""


def shard_name(path: str | Path) -> str:
    """Partition key for a file: its name without format suffixes, in letters and digits of any
    script, ``.``, ``_`` and ``-`` (``数据.jsonl`` is ``数据``)."""
    name = PurePath(path).name
    name = re.sub(r"\.(jsonl|json|ndjson|csv|tsv)(\.gz)?$|\.(parquet|arrow)$", "", name, flags=re.IGNORECASE)
    name = _key_part(name)
    if not name:
        raise ShardRegistrationError(f"{path}: cannot derive a shard name from the file name")
    return name[:120]


def _key_part(text: str) -> str:
    # Dagster refuses "..." in a partition key; other characters become "-".
    return re.sub(r"\.{2,}", ".", re.sub(r"[^\w.-]+", "-", text)).strip("-.")


def landed_shard_name(path: Path, landing_dir: Path, prefix: str = "") -> str:
    """Partition key of a file found under a directory: its path relative to ``landing_dir``,
    after ``prefix``, directories joined by ``__`` (``a/part-0.jsonl`` -> ``a__part-0``)."""
    relative = path.relative_to(landing_dir)
    parts = [prefix, *relative.parts[:-1]]
    directories = [_key_part(part) for part in parts]
    return DIRECTORY_SEPARATOR.join([*[d for d in directories if d], shard_name(relative)])[:120]


def hidden(path: Path, root: Path) -> bool:
    """A file under a hidden or underscored folder of ``root`` (writers stage there; a
    ``_delta_log`` is no input), or hidden itself."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def data_files_under(root: Path) -> list[Path]:
    """The data files anywhere under ``root``, in path order; links that lead out of it are
    not followed."""
    resolved = root.resolve()
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and is_data_file(path) and not hidden(path, root) and path.resolve().is_relative_to(resolved)
    )


_GLOB_MAGIC = re.compile(r"[*?[]")


def _expand(raw_path: str | Path) -> tuple[list[ShardFile], dict[str, str]]:
    """The shard files a path names: a file (keyed by its name), a directory (every data file
    under it, keyed ``<directory>__<path below it>``) or a glob (keyed by the path below its
    fixed part, so ``'data/*.jsonl'`` keys as the shell's expansion would)."""
    path = Path(raw_path)
    if path.is_dir():
        found = data_files_under(path)
        if not found:
            return [], {str(path): f"{path}: a directory with no data files in it ({', '.join(DATA_SUFFIXES)})"}
        named, failures = named_files(found, path, prefix=path.resolve().name)
        return list(named), failures
    if _GLOB_MAGIC.search(str(raw_path)) and not path.exists():
        fixed = Path(*[part for part in itertools.takewhile(lambda p: not _GLOB_MAGIC.search(p), path.parts)])
        matches = [Path(m) for m in sorted(glob.glob(str(raw_path), recursive=True))]
        files = [m for m in matches if m.is_file() and is_data_file(m) and not hidden(m, fixed)]
        if not files:
            return [], {str(raw_path): f"{raw_path}: no data file matches"}
        named, failures = named_files(files, fixed)
        return list(named), failures
    try:
        return [ShardFile(path.resolve(), shard_name(raw_path))], {}
    except ShardRegistrationError as error:
        return [], {str(raw_path): str(error)}


def named_files(files: list[Path], root: Path, prefix: str = "") -> tuple[dict[ShardFile, Path], dict[str, str]]:
    """``files`` under ``root`` as shard files (each with the path it was found by); a file whose
    name yields no key fails alone."""
    named, failures = {}, {}
    for file in files:
        try:
            named[ShardFile(file.resolve(), landed_shard_name(file, root, prefix=prefix))] = file
        except ShardRegistrationError as error:
            failures[str(file)] = str(error)
    return named, failures


def file_signature(path: Path) -> tuple[int, int]:
    """Size and mtime of the file itself (registered paths are resolved: a link found here later
    is a swap, and shows as a change)."""
    stat = path.lstat()
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
    """The files ``paths`` name (files, directories, globs), each with its shard key, and the
    paths that cannot be shards."""
    files, failures = [], {}
    for raw_path in paths:
        found, problems = _expand(raw_path)
        files.extend(found)
        failures |= problems
    return files, failures | dataset_folders.shortfalls([file.path for file in files])


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
    known = {row["shard"]: row for row in lake.scan(SHARD_SOURCES).collect().iter_rows(named=True)}
    now = datetime.now(UTC)
    rows = []
    for file in files:
        size, mtime = file_signature(file.path)
        row = dict(known.get(file.shard, {}))
        previous = row.get("path")
        taken_over = previous not in (None, str(file.path))
        row.update(
            shard=file.shard,
            path=str(file.path),
            size_bytes=size,
            mtime_ns=mtime,
            registered_at=now,
            previous_path=previous if taken_over else None,
            ingested=None if taken_over else row.get("ingested"),
        )
        rows.append(row)
    lake.upsert(SHARD_SOURCES, pl.DataFrame(rows, schema=SHARD_SOURCES.schema), keys=["shard"])
    return [file.shard for file in files]


def ingest_signature(size: int, mtime_ns: int, options_key: str) -> str:
    return f"{size}:{mtime_ns}:{options_key}"


def record_ingested(lake: Lake, signatures: dict[str, str]) -> None:
    """Record what each shard's successful ingest read (see ``shard_sources.ingested``)."""
    rows = lake.scan(SHARD_SOURCES).filter(pl.col("shard").is_in(list(signatures))).collect()
    read = pl.DataFrame({"shard": list(signatures), "ingested": list(signatures.values())})
    if rows.height:
        lake.upsert(SHARD_SOURCES, rows.drop("ingested").join(read, on="shard"), keys=["shard"])


def stale_shards(lake: Lake, shards: list[str], options_key: str) -> list[str]:
    """The shards of ``shards`` whose file or ingest options changed since their last ingest
    (or that were never ingested): the others need not be read again."""
    current = (
        lake.scan(SHARD_SOURCES)
        .filter(pl.col("shard").is_in(shards))
        .select("shard", "path", "size_bytes", "mtime_ns", "ingested")
        .collect()
    )
    fresh = {
        row["shard"]
        for row in current.iter_rows(named=True)
        if row["ingested"]
        == ingest_signature(row["size_bytes"], row["mtime_ns"], field_sidecars.keyed(options_key, Path(row["path"])))
    }
    return [shard for shard in shards if shard not in fresh]


def record_shrinks(lake: Lake, shrinks: dict[str, tuple[int, int]]) -> None:
    """Record in ``shard_sources`` each accepted shrink: shard -> (valid records before, after)."""
    rows = lake.scan(SHARD_SOURCES).filter(pl.col("shard").is_in(list(shrinks))).collect()
    if rows.height == 0:
        return
    sizes = pl.DataFrame(
        [{"shard": shard, "shrunk_from": before, "shrunk_to": after} for shard, (before, after) in shrinks.items()],
        schema={"shard": pl.String, "shrunk_from": pl.Int64, "shrunk_to": pl.Int64},
    )
    rows = rows.drop("shrunk_from", "shrunk_to").join(sizes, on="shard")
    lake.upsert(SHARD_SOURCES, rows.with_columns(shrunk_at=pl.lit(datetime.now(UTC))), keys=["shard"])


def register(lake: Lake, files: list[ShardFile], replace_shard: bool = False) -> Registration:
    """Check and record ``files``: the accepted ones become shards, the others are reported."""
    accepted, failures = check(lake, files, replace_shard)
    return Registration(shards=record(lake, accepted), failures=failures)


def registered_sources(lake: Lake) -> pl.DataFrame:
    return lake.scan(SHARD_SOURCES).collect()


def source_paths(lake: Lake, shards: list[str]) -> tuple[dict[str, Path], dict[str, ShardRegistrationError]]:
    """The file each shard reads, checked to be the file that was registered (a file changed since,
    by a writer still appending or a copy cut short after the sensor looked, is not read
    half-way), and each shard refused with its cause."""
    rows = lake.scan(SHARD_SOURCES).filter(pl.col("shard").is_in(shards)).collect()
    registered = {row["shard"]: row for row in rows.iter_rows(named=True)}
    paths, failures = {}, {}
    for shard in shards:
        try:
            paths[shard] = _checked_source(shard, registered.get(shard))
        except ShardRegistrationError as error:
            failures[shard] = error
    return paths, failures


def _checked_source(shard: str, row: dict | None) -> Path:
    if row is None:
        raise ShardRegistrationError(
            f"shard {shard!r} has no registered source file; land it via the sensor or `qaq curate`"
        )
    path = Path(row["path"])
    try:
        signature = file_signature(path)
    except OSError as error:
        raise ShardRegistrationError(f"{path}: cannot read shard {shard!r}'s file: {error.strerror or error}") from None
    registered = (row["size_bytes"], row["mtime_ns"])
    if signature != registered:
        raise ShardRegistrationError(
            f"{path} changed since it was registered as shard {shard!r} ({registered[0]} -> {signature[0]} bytes): "
            "a writer may still be writing it; it is ingested once it settles (the sensor) or when curated again"
        )
    return path
