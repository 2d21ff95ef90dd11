"""Which files in a landing directory are complete and ready to ingest.

A file is ready when its size and modification time are unchanged since the previous look
(a writer still appending changes one or the other) and either it is at least
``settle_seconds`` old or a ``<name>.ready`` marker sits beside it (a marked file seen for the
first time needs no second look). Ingest checks the file again against what was registered.
"""

from __future__ import annotations

from pathlib import Path

from qaq_assets.lib.ingest.registry import data_files_under

READY_MARKER = ".ready"


def candidate_files(landing_dir: Path) -> list[Path]:
    """Data files anywhere under ``landing_dir``; hidden files and folders are skipped
    (writers stage there), and no link is followed out of it (it may point at /etc/passwd)."""
    return data_files_under(landing_dir) if landing_dir.is_dir() else []


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
        seen = previous.get(str(path))
        # Changed since the last look: still being written, whatever a marker says.
        changing = seen is not None and seen != signature
        old_enough = now_ns - stat.st_mtime_ns >= settle_seconds * 1e9
        if not changing and (marked or (seen == signature and old_enough)):
            ready.append(path)
    return ready, observed
