"""Small files merged: each table's files under a target size compacted into files of about that
size (Delta OPTIMIZE) and its log checkpointed, as delta-rs users do after many commits. A lake
that receives a few files at a time (a landing directory) otherwise gains a data file per table
per run. Older versions keep their files (nothing is vacuumed), so every curated version stays
readable."""

from __future__ import annotations

from dataclasses import dataclass

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import ALL_TABLES

TARGET_FILE_BYTES = 128 << 20
# Fewer small files than this are left alone: merging them saves little and rewrites data.
MIN_SMALL_FILES = 16


@dataclass(frozen=True)
class Compacted:
    table: str
    files_removed: int
    files_added: int

    def line(self) -> str:
        return f"{self.table}: {self.files_removed:,} small files merged into {self.files_added:,}"


def compact_lake(
    lake: Lake, target_bytes: int = TARGET_FILE_BYTES, min_small_files: int = MIN_SMALL_FILES
) -> list[Compacted]:
    """Compact every table holding at least ``min_small_files`` files under ``target_bytes``."""
    done = []
    for table in ALL_TABLES:
        metrics = lake.compact(table, target_bytes, min_small_files)
        if metrics:
            done.append(Compacted(table.name, metrics["numFilesRemoved"], metrics["numFilesAdded"]))
    return done
