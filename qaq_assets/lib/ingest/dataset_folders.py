"""Hugging Face ``save_to_disk`` folders: every file they list is there, with every row.

Such a folder's ``state.json`` lists its Arrow files and ``dataset_info.json`` usually says how
many rows its split holds. A missing file or one cut at a batch boundary still reads cleanly as
fewer rows; checked against those two, the shortfall is reported instead of passing silently."""

from __future__ import annotations

import json
from pathlib import Path

STATE_FILE, INFO_FILE = "state.json", "dataset_info.json"


def shortfalls(files: list[Path]) -> dict[str, str]:
    """For each dataset folder among ``files``' parents: what it lacks (keyed by the missing
    file's path, or by the folder for missing rows), as one line each."""
    problems: dict[str, str] = {}
    for folder in sorted({file.parent for file in files if (file.parent / STATE_FILE).is_file()}):
        problems |= _folder_shortfalls(folder)
    return problems


def _folder_shortfalls(folder: Path) -> dict[str, str]:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        listed = [entry["filename"] for entry in state.get("_data_files", [])]
    except (OSError, ValueError, TypeError, KeyError) as error:
        return {str(folder / STATE_FILE): f"{folder / STATE_FILE}: unreadable ({error}); the folder is not checked"}
    missing = {
        str(folder / name): f"{folder / name}: listed in {STATE_FILE} but missing: the dataset folder is incomplete"
        for name in listed
        if not (folder / name).is_file()
    }
    if missing:
        return missing
    expected = _expected_rows(folder, state.get("_split"))
    if expected is None:
        return {}
    held = sum(_arrow_rows(folder / name) for name in listed)
    if held < expected:
        return {
            str(folder): f"{folder}: its files hold {held} rows where {INFO_FILE} says the split has {expected}: "
            "a file is cut short (the rows it holds are ingested)"
        }
    return {}


def _expected_rows(folder: Path, split: str | None) -> int | None:
    try:
        splits = json.loads((folder / INFO_FILE).read_text(encoding="utf-8")).get("splits") or {}
        return int(splits[split]["num_examples"]) if split in splits else None
    except (OSError, ValueError, TypeError, KeyError):
        return None  # no row count to hold the files to


def _arrow_rows(path: Path) -> int:
    import pyarrow as pa

    rows = 0
    try:
        with pa.memory_map(str(path)) as source:
            if source.read(6) == b"ARROW1":  # an Arrow file; save_to_disk writes streams
                source.seek(0)
                return pa.ipc.open_file(source).read_all().num_rows
            source.seek(0)
            for batch in pa.ipc.open_stream(source):
                rows += batch.num_rows
    except (OSError, pa.ArrowException):
        pass  # cut inside a batch: the whole batches before it count; its ingest says the rest
    return rows
