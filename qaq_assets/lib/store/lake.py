"""Delta Lake storage for every table: partition replacement, appends, scans, versions.

Writes go straight through deltalake (via polars) rather than an IO manager: a
partition is replaced with a predicate overwrite of exactly its rows, so re-runs are
idempotent and concurrent writers of other partitions are untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.fs as pa_fs
from deltalake import ColumnProperties, DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler

from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.store.faults import StorageFault, fault_of
from qaq_assets.lib.store.tables import ALL_TABLES, TableSpec

log = logging.getLogger(__name__)
# Storage options (object-store credentials) reach Dagster runs through this variable, read at
# run time: never through resource config, which Dagster stores in its run storage and shows.
STORAGE_OPTIONS_ENV = "QAQ_STORAGE_OPTIONS"


def storage_options_from_env(variable: str = STORAGE_OPTIONS_ENV) -> dict[str, str]:
    """Storage options held as a JSON object in ``variable`` (empty when unset)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise LakeError(f"{variable} is not a JSON object of storage options: {error}") from error
    except RecursionError:
        raise LakeError(f"{variable}: JSON nested too deeply to be storage options") from None
    if not isinstance(options, dict):
        raise LakeError(f"{variable} must be a JSON object of storage options")
    return {str(key): str(value) for key, value in options.items()}


@contextlib.contextmanager
def storage_options_exported(options: Mapping[str, str], variable: str = STORAGE_OPTIONS_ENV):
    """``options`` in the environment for the runs made inside (in this process), then restored."""
    previous = os.environ.get(variable)
    if options:
        os.environ[variable] = json.dumps(dict(options))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


def sql_literal(value: str) -> str:
    """Quote a string for a Delta predicate."""
    return "'" + str(value).replace("'", "''") + "'"


# A partition column's value, or a list of them: the rows of several partitions at once.
Partitions = Mapping[str, "str | Sequence[str]"]


def partition_predicate(partition: Partitions) -> str:
    """The Delta predicate selecting the rows of ``partition``."""
    return " AND ".join(
        f"{column} = {sql_literal(value)}"
        if isinstance(value, str)
        else f"{column} IN ({', '.join(sql_literal(v) for v in value)})"
        for column, value in partition.items()
    )


def partition_filter(partition: Partitions) -> pl.Expr:
    """The polars filter selecting the rows of ``partition``."""
    return pl.all_horizontal(
        [pl.col(c) == v if isinstance(v, str) else pl.col(c).is_in(list(v)) for c, v in partition.items()]
    )


class _LocalTable(DeltaTable):
    """A table on a local path. delta-rs gives its files' paths with the table's own path
    percent-encoded (a lake under ``my data/`` lists ``my%20data/...``; what follows is the file's
    real name) and polars opens them as written: the table's path is decoded here."""

    def file_uris(self, *args, **kwargs) -> list[str]:
        encoded = self.table_uri.removeprefix("file://")
        real = unquote(encoded)
        return [
            real + uri[len(encoded) :] if uri.startswith(encoded) else uri for uri in super().file_uris(*args, **kwargs)
        ]


def _refuse_file_in_path(root: str) -> None:
    """A local lake path through a file cannot hold tables: one line, before any write."""
    path = root
    while path and not os.path.exists(path):
        path = os.path.dirname(path) if os.path.dirname(path) != path else ""
    if path and not os.path.isdir(path):
        raise LakeError(f"lake {root}: {path} is a file, not a directory; give --lake a directory")


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
        self._table_class = DeltaTable if "://" in root else _LocalTable
        if "://" not in root:
            _refuse_file_in_path(self.root)
        # Table handles kept per thread (a DeltaTable object is not shared across threads) and
        # brought up to date with update_incremental(), which reads only the commits since:
        # opening a table anew replays its whole log, and a shard's chunk commits grow it.
        self._handles = threading.local()

    def uri(self, table: TableSpec | str) -> str:
        name = table.name if isinstance(table, TableSpec) else table
        return f"{self.root}/{name}"

    def delta_table(self, table: TableSpec | str, version: int | None = None) -> DeltaTable | None:
        """The table (at ``version``), or None where it does not exist. A version the log
        does not hold raises :class:`LakeError`; a broken log, :class:`StorageFault` naming the table."""
        try:
            return self._table_class(self.uri(table), version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except DeltaError as error:
            if version is None or self.delta_table(table) is None:
                raise self._fault(table, error) from error
            raise LakeError(f"{self.uri(table)} has no version {version}: {str(error).splitlines()[0]}") from error

    def _fault(self, table: TableSpec | str, error: Exception) -> Exception:
        """``error`` as a one-line :class:`StorageFault` naming ``table``, where it is one."""
        fault = fault_of(error, self.root)
        if fault is None:
            return error
        name = table.name if isinstance(table, TableSpec) else table
        described = str(fault)
        return StorageFault(described if described.startswith(f"{name}:") else f"{name}: {described}")

    def readable_versions(self, table: TableSpec | str, newest: int = 100) -> list[int]:
        """The versions of ``table`` (among its ``newest`` commits) that open: after a truncated
        commit or a gap in the log, those before it."""
        filesystem = pa_fs.PyFileSystem(DeltaStorageHandler(self.uri(table), self.storage_options))
        try:
            listed = filesystem.get_file_info(pa_fs.FileSelector("_delta_log"))
        except (OSError, DeltaError):
            return []
        versions = sorted(
            (int(info.base_name[:20]) for info in listed if re.fullmatch(r"\d{20}\.json", info.base_name)),
            reverse=True,
        )[:newest]
        readable = []
        for version in versions:
            try:
                DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)
            except Exception:  # noqa: BLE001 - any failure to open is "not readable"
                continue
            readable.append(version)
        return sorted(readable)

    def version(self, table: TableSpec | str) -> int | None:
        delta = self.delta_table(table)
        return None if delta is None else delta.version()

    def latest(self, table: TableSpec | str) -> DeltaTable | None:
        """This thread's handle on the table at its latest version (None where it does not exist)."""
        name = table.name if isinstance(table, TableSpec) else table
        handles = self._handles.__dict__.setdefault("tables", {})
        delta = handles.get(name)
        if delta is None:
            delta = self.delta_table(table)
            if delta is not None:
                handles[name] = delta
        else:
            delta.update_incremental()
        return delta

    def ensure(self, table: TableSpec) -> None:
        """Create ``table`` empty with its schema and partitioning if it does not exist."""
        if self.latest(table) is not None:
            return
        self._commit(table, table.empty(), mode="ignore")

    def ensure_all(self) -> None:
        for table in ALL_TABLES:
            self.ensure(table)

    def scan(self, table: TableSpec, version: int | None = None) -> pl.LazyFrame:
        """Lazily scan ``table`` (an empty frame of its schema when it does not exist). Columns the
        spec has and a table written by an older release lacks read as typed nulls: readers see
        the current schema, whatever release wrote the version."""
        delta = self.delta_table(table, version)
        if delta is None:
            if version is not None:
                raise LakeError(f"{self.uri(table)} does not exist")
            return table.empty().lazy()
        scan = pl.scan_delta(delta)  # the loaded snapshot: the log is read once
        stored = set(scan.collect_schema().names())
        missing = [pl.lit(None, dtype).alias(name) for name, dtype in table.schema.items() if name not in stored]
        return scan.with_columns(missing) if missing else scan

    def missing_columns(self, table: TableSpec) -> list[str]:
        """Columns of the table's spec that the stored table lacks (a schema check)."""
        delta = self.delta_table(table)
        if delta is None:
            return list(table.schema.names())
        stored = set(pl.scan_delta(delta).collect_schema().names())
        return [column for column in table.schema.names() if column not in stored]

    def shard_ranges(self, table: TableSpec, version: int | None = None) -> pl.DataFrame:
        """Each data file of ``table`` (as of ``version``): ``path`` (as the log names it) and
        the first and last shard it holds, from its partition value where the table is
        partitioned by shard, else from the log's min/max statistics (null where it has none)."""
        columns = {"path": pl.String, "first_shard": pl.String, "last_shard": pl.String}
        delta = self.delta_table(table, version)
        if delta is None:
            return pl.DataFrame(schema=columns)
        actions = pl.DataFrame(pa.table(delta.get_add_actions(flatten=True)))
        first, last = pl.lit(None, pl.String), pl.lit(None, pl.String)
        if "partition.shard" in actions.columns:
            first = last = pl.col("partition.shard")
        elif "min.shard" in actions.columns:
            first, last = pl.col("min.shard"), pl.col("max.shard")
        return actions.select("path", first_shard=first, last_shard=last).cast(columns)

    def partition_columns(self, table: TableSpec) -> list[str]:
        """The columns ``table`` is partitioned by as stored: a table created by an older release
        keeps its layout (a table's partitioning cannot change in place), a new one takes the spec's."""
        delta = self.latest(table)
        return list(table.partition_by) if delta is None else list(delta.metadata().partition_columns)

    def replace_partition(self, table: TableSpec, frame: pl.DataFrame, partition: Partitions) -> int:
        """Atomically replace the rows of one partition (or, where a column's value is a list, of
        several: ``{"shard": [...]}``) with ``frame``, in one commit; returns the new version."""
        frame = table.conform(frame)
        _check_partition(table, frame, partition)
        self.ensure(table)
        predicate = partition_predicate(partition)
        return self._until_partition_holds(
            table,
            partition,
            lambda: frame.height,
            lambda: self._commit(table, frame, mode="overwrite", predicate=predicate),
        )

    def _until_partition_holds(
        self, table: TableSpec, partition: Partitions, rows: Callable[[], int], write: Callable[[], int]
    ) -> int:
        """Run ``write`` (a partition replacement) until the version it returns holds exactly
        ``rows()`` rows in the partition (known once ``write`` has run). Two writers that both
        read the partition empty remove nothing, so delta-rs sees no conflict and keeps both
        writers' rows; the writer that finds the other's rows beside its own replaces the
        partition again."""
        predicate = partition_filter(partition)
        for _ in range(self.commit_retries + 1):
            version = write()
            expected = rows()
            held = self.scan(table, version).filter(predicate).select(pl.len()).collect().item()
            if held == expected:
                return version
            log.warning(
                "%s partition %s holds %d rows after a concurrent write, not %d; replacing it again",
                table.name,
                dict(partition),
                held,
                expected,
            )
        raise RuntimeError(f"{table.name} {dict(partition)}: concurrent replacements kept merging")

    def _add_missing_columns(self, table: TableSpec) -> None:
        # A table written by an older release gains the spec's new columns (older rows read null).
        if self.missing_columns(table):
            self._commit(table, table.empty(), mode="append")

    def compact(self, table: TableSpec, target_bytes: int, min_small_files: int) -> dict | None:
        """Merge ``table``'s files smaller than ``target_bytes`` into files of about that size (Delta
        OPTIMIZE: one commit; older versions keep their files and stay readable) where it holds at
        least ``min_small_files`` of them, and checkpoint its log; returns delta-rs' metrics, or None
        where there was nothing to merge."""
        delta = self.latest(table)
        if delta is None:
            return None
        sizes = pl.DataFrame(pa.table(delta.get_add_actions(flatten=True)).select(["size_bytes"]))
        if sizes.filter(pl.col("size_bytes") < target_bytes).height < min_small_files:
            return None

        def optimize() -> dict:
            latest = self.latest(table)
            metrics = latest.optimize.compact(target_size=target_bytes, writer_properties=_writer_properties(table))
            latest.create_checkpoint()
            return metrics

        return self._with_retries(table, optimize)

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
        self._add_missing_columns(table)
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
        options: dict = {
            "partition_by": self.partition_columns(table) or None,
            "writer_properties": _writer_properties(table),
        }
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
            delta = self.latest(table) if mode != "ignore" else None
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
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # a full disk can surface as a Rust panic
                fault = self._fault(table, error)
                if fault is error:
                    raise
                raise fault from error
        raise AssertionError("unreachable")


def _writer_properties(table: TableSpec) -> WriterProperties:
    with_statistics = ColumnProperties(statistics_enabled="CHUNK")
    return WriterProperties(
        compression=table.compression,
        default_column_properties=ColumnProperties(statistics_enabled="NONE", dictionary_enabled=table.dictionary),
        column_properties=dict.fromkeys(table.statistics_columns(), with_statistics),
    )


def _check_partition(table: TableSpec, frame: pl.DataFrame, partition: Partitions) -> None:
    wrong = frame.filter(~partition_filter(partition)).height
    if wrong:
        raise ValueError(f"{wrong} rows of {table.name} lie outside partition {dict(partition)}")
