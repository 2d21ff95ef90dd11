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
import uuid
from collections.abc import Mapping

import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from qaq_assets.lib.tables import ALL_TABLES, TableSpec

log = logging.getLogger(__name__)
COMMIT_ID_KEY = "qaq.commit"


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
        if self.delta_table(table) is None:
            if version is not None:
                raise TableNotFoundError(f"{self.uri(table)} does not exist")
            return table.empty().lazy()
        return pl.scan_delta(self.uri(table), version=version, storage_options=self.storage_options)

    def replace_partition(self, table: TableSpec, frame: pl.DataFrame, partition: Mapping[str, str]) -> int:
        """Atomically replace the rows of one partition with ``frame``; returns the new version."""
        frame = table.conform(frame)
        for column, value in partition.items():
            wrong = frame.filter(pl.col(column) != value).height
            if wrong:
                raise ValueError(f"{wrong} rows of {table.name} lie outside partition {dict(partition)}")
        self.ensure(table)
        return self._commit(table, frame, mode="overwrite", predicate=partition_predicate(partition))

    def append(self, table: TableSpec, frame: pl.DataFrame) -> int:
        self.ensure(table)
        return self._commit(table, table.conform(frame), mode="append")

    def overwrite(self, table: TableSpec, frame: pl.DataFrame) -> int:
        """Replace the whole table's content in one new version (older versions stay readable)."""
        self.ensure(table)
        return self._commit(table, table.conform(frame), mode="overwrite")

    def upsert(self, table: TableSpec, frame: pl.DataFrame, keys: list[str]) -> int:
        """MERGE ``frame`` into ``table`` on ``keys``: update matches, insert the rest."""
        self.ensure(table)
        predicate = " AND ".join(f"s.{k} = t.{k}" for k in keys)

        def merge() -> int:
            commit_id = uuid.uuid4().hex
            (
                table.conform(frame)
                .write_delta(
                    self.uri(table),
                    mode="merge",
                    storage_options=self.storage_options,
                    delta_merge_options={
                        "predicate": predicate,
                        "source_alias": "s",
                        "target_alias": "t",
                        "commit_properties": CommitProperties(custom_metadata={COMMIT_ID_KEY: commit_id}),
                    },
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            return self.committed_version(table, commit_id)

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
            commit_id = uuid.uuid4().hex
            options["commit_properties"] = CommitProperties(custom_metadata={COMMIT_ID_KEY: commit_id})
            frame.write_delta(
                self.uri(table), mode=mode, storage_options=self.storage_options, delta_write_options=options
            )
            return self.committed_version(table, commit_id)

        return self._with_retries(table, write)

    def committed_version(self, table: TableSpec, commit_id: str) -> int:
        """The version our own commit got: with concurrent writers, "latest" may be someone else's."""
        delta = self.delta_table(table)
        for entry in delta.history(limit=256):
            if entry.get(COMMIT_ID_KEY) == commit_id:
                return int(entry["version"])
        # mode="ignore" on an existing table commits nothing: the table's version is the answer.
        return delta.version()

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
