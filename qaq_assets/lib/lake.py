"""Delta Lake storage for every table: partition replacement, appends, scans, versions.

Writes go straight through deltalake (via polars) rather than an IO manager: a
partition is replaced with a predicate overwrite of exactly its rows, so re-runs are
idempotent and concurrent writers of other partitions are untouched.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Mapping

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from qaq_assets.lib.tables import ALL_TABLES, TableSpec

log = logging.getLogger(__name__)
STREAMED_FILE_BYTES = 16 * 2**20


def sql_literal(value: str) -> str:
    """Quote a string for a Delta predicate."""
    return "'" + str(value).replace("'", "''") + "'"


def partition_predicate(partition: Mapping[str, str]) -> str:
    return " AND ".join(f"{column} = {sql_literal(value)}" for column, value in partition.items())


class Lake:
    """A directory (or object-store prefix) holding one Delta table per name."""

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, str] | None = None,
        commit_retries: int = 8,
    ):
        root = str(root)
        # deltalake wants absolute local paths; object-store URIs pass through.
        self.root = (root if "://" in root else os.path.abspath(root)).rstrip("/")
        self.storage_options = dict(storage_options or {}) or None
        self.commit_retries = commit_retries

    def uri(self, table: TableSpec | str) -> str:
        name = table.name if isinstance(table, TableSpec) else table
        return f"{self.root}/{name}"

    def delta_table(self, table: TableSpec | str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def version(self, table: TableSpec | str) -> int | None:
        delta = self.delta_table(table)
        return None if delta is None else delta.version()

    def ensure(self, table: TableSpec) -> None:
        """Create ``table`` empty with its schema and partitioning if it does not exist."""
        if self.delta_table(table) is not None:
            return
        self._commit(table, table.empty(), mode="ignore")

    def ensure_all(self) -> None:
        for table in ALL_TABLES:
            self.ensure(table)

    def scan(self, table: TableSpec, version: int | None = None) -> pl.LazyFrame:
        """Lazily scan ``table`` (an empty frame of its schema when it does not exist)."""
        delta = self.delta_table(table, version)
        if delta is None:
            if version is not None:
                raise TableNotFoundError(f"{self.uri(table)} does not exist")
            return table.empty().lazy()
        return pl.scan_delta(delta)  # the loaded snapshot: the log is read once

    def missing_columns(self, table: TableSpec) -> list[str]:
        """Columns of the table's spec that the stored table lacks (a schema check)."""
        stored = set(self.scan(table).collect_schema().names())
        return [column for column in table.schema.names() if column not in stored]

    def replace_partition(self, table: TableSpec, frame: pl.DataFrame, partition: Mapping[str, str]) -> int:
        """Atomically replace the rows of one partition with ``frame``; returns the new version."""
        frame = table.conform(frame)
        for column, value in partition.items():
            wrong = frame.filter(pl.col(column) != value).height
            if wrong:
                raise ValueError(f"{wrong} rows of {table.name} lie outside partition {dict(partition)}")
        self.ensure(table)
        return self._commit(table, frame, mode="overwrite", predicate=partition_predicate(partition))

    def replace_partition_streaming(
        self, table: TableSpec, batches: Iterable[pl.DataFrame], partition: Mapping[str, str]
    ) -> int:
        """Like :meth:`replace_partition`, for a partition too large to hold in memory: the
        frames of ``batches`` (iterated afresh on a retry) stream into one atomic commit."""
        self.ensure(table)
        schema = table.empty().to_arrow().schema
        mismatch = [f"{c} = {v}" for c, v in partition.items()]
        outside = f"rows of {table.name} lie outside partition {mismatch}"

        def arrow_batches():
            for frame in map(table.conform, batches):
                for column, value in partition.items():
                    if frame.filter(pl.col(column) != value).height:
                        raise ValueError(outside)
                yield from frame.to_arrow().cast(schema).to_batches()

        def write() -> int:
            delta = self.delta_table(table)
            try:
                write_deltalake(
                    delta,
                    pa.RecordBatchReader.from_batches(schema, arrow_batches()),
                    mode="overwrite",
                    predicate=partition_predicate(partition),
                    partition_by=list(table.partition_by) or None,
                    schema_mode="merge",
                    # delta-rs buffers a file's rows before encoding it: smaller files, lower peak.
                    target_file_size=STREAMED_FILE_BYTES,
                )
            except DeltaError as error:
                # deltalake wraps an exception raised while it reads the stream.
                if outside in str(error):
                    raise ValueError(outside) from error
                raise
            return delta.version()

        return self._with_retries(table, write)

    def append(self, table: TableSpec, frame: pl.DataFrame) -> int:
        self.ensure(table)
        return self._commit(table, table.conform(frame), mode="append")

    def overwrite(self, table: TableSpec, frame: pl.DataFrame) -> int:
        """Replace the whole table's content in one new version (older versions stay readable)."""
        self.ensure(table)
        frame = table.conform(frame)
        for _ in range(self.commit_retries + 1):
            version = self._commit(table, frame, mode="overwrite")
            # delta-rs can let two racing whole-table overwrites both commit (when the snapshot
            # they read had no files): our version then holds the other writer's rows too.
            # Overwriting again removes every file the new snapshot shows.
            if self.scan(table, version).select(pl.len()).collect().item() == frame.height:
                return version
            log.warning("a concurrent overwrite of %s merged into version %d; overwriting again", table.name, version)
        raise RuntimeError(f"{table.name}: concurrent overwrites kept merging after {self.commit_retries} attempts")

    def upsert(self, table: TableSpec, frame: pl.DataFrame, keys: list[str]) -> int:
        """MERGE ``frame`` into ``table`` on ``keys``: update matches, insert the rest."""
        self.ensure(table)
        predicate = " AND ".join(f"s.{k} = t.{k}" for k in keys)

        def merge() -> int:
            delta = self.delta_table(table)
            (
                delta.merge(
                    table.conform(frame).to_arrow(),
                    predicate=predicate,
                    source_alias="s",
                    target_alias="t",
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            return delta.version()

        return self._with_retries(table, merge)

    def _commit(self, table: TableSpec, frame: pl.DataFrame, mode: str, predicate: str | None = None) -> int:
        options: dict = {"partition_by": list(table.partition_by) or None}
        if predicate is not None:
            options["predicate"] = predicate
        # Tables outlive releases: a whole-table overwrite takes the current schema; appends and
        # partition replacements add new columns to an older table (its rows read them as null).
        if mode != "ignore":
            options["schema_mode"] = "overwrite" if mode == "overwrite" and predicate is None else "merge"

        def write() -> int:
            # Written through a DeltaTable object, which then holds the state after *our* commit:
            # with concurrent writers, the table's latest version (or the version numbers
            # history() reports) may be someone else's.
            delta = self.delta_table(table) if mode != "ignore" else None
            frame.write_delta(
                delta if delta is not None else self.uri(table),
                mode=mode,
                storage_options=self.storage_options if delta is None else None,
                delta_write_options=options,
            )
            return delta.version() if delta is not None else self.version(table)

        return self._with_retries(table, write)

    def _with_retries(self, table: TableSpec, operation):
        # Optimistic concurrency: writers of disjoint partitions rarely conflict, but a
        # concurrent commit of the same version number is retried with jittered backoff.
        for attempt in range(self.commit_retries + 1):
            try:
                return operation()
            except CommitFailedError:
                if attempt == self.commit_retries:
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.warning("commit conflict on %s, retrying in %.2fs", table.name, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")
