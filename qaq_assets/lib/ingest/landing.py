"""Which files in a landing directory are complete and ready to ingest.

A file is ready when a ``<name>.ready`` marker sits beside it, or when its size and
modification time are unchanged since the previous look and it is at least
``settle_seconds`` old: a writer still appending changes one or the other.
"""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz", ".parquet")
READY_MARKER = ".ready"


def candidate_files(landing_dir: Path) -> list[Path]:
    """Data files anywhere under ``landing_dir``; hidden files and folders are skipped
    (writers stage there)."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        p
        for p in landing_dir.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(landing_dir).parts)
        and p.name.lower().endswith(SUFFIXES)
    )


def settled_files(
    landing_dir: Path, previous: dict[str, list[int]], now_ns: int, settle_seconds: float
) -> tuple[list[Path], dict[str, list[int]]]:
    """Files ready now, and this look's observations (to pass back as ``previous`` next time)."""
    ready, observed = [], {}
    for path in candidate_files(landing_dir):
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime_ns]
        observed[str(path)] = signature
        marked = path.with_name(path.name + READY_MARKER).exists()
        unchanged = previous.get(str(path)) == signature
        old_enough = now_ns - stat.st_mtime_ns >= settle_seconds * 1e9
        if marked or (unchanged and old_enough):
            ready.append(path)
    return ready, observed
