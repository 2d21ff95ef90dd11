"""The samples' features over worker processes: record batches spread over the cores.

Features are per-row pure functions (hashes, code checks, MinHash, benchmark overlap), so a
batch of rows computed in a worker equals the same rows computed here, bit for bit, and the
batches concatenated in order equal the whole. Python's parser and the shingle hashing hold the
GIL, so threads would not help: processes do. The pool is started once per process (spawned:
the parent runs Dagster's and polars' threads, which ``fork`` must not copy) and reused by every
later ingest; a batch too small to repay shipping its rows is computed here. An ingest hands
over each file's rows as soon as it has read them (:class:`FeatureStream`), so the workers
compute while the next file is read.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import polars as pl

from qaq_assets.lib.ingest.decontamination import Benchmark
from qaq_assets.lib.ingest.features import FEATURE_INPUTS, sample_features

log = logging.getLogger(__name__)

# Below this many rows per worker, shipping rows to a process costs more than it saves.
MIN_ROWS_PER_WORKER = 2048
# Rows computed at once: the decontamination's n-gram windows take ~10 KB per row in flight, so a
# 256 MB batch of files computed whole would need gigabytes per process.
BATCH_ROWS = 4096
MAX_AUTO_WORKERS = 8
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def resolved_workers(setting: int, rows: int, min_rows_per_worker: int = MIN_ROWS_PER_WORKER) -> int:
    """Worker processes for ``rows`` samples: the setting (0 = one per core, at most 8), no more
    than the rows fill at ``min_rows_per_worker`` each; 1 means this process."""
    wanted = setting or min(available_cores(), MAX_AUTO_WORKERS)
    return max(1, min(wanted, rows // min_rows_per_worker))


def _start_worker() -> None:
    # Ctrl-C reaches the whole process group: the ingesting process decides how a run stops
    # (after the interrupted step), so a worker must not die mid-batch on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The modules this worker imported live as long as it does: out of the collector's sight,
    # its full collections (which the parse trees of every batch trigger) stop walking them.
    gc.freeze()


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
            )
            _pool_workers = workers
        return _pool


def shutdown_pool(wait: bool = True) -> None:
    """Stop the worker processes (a later ingest starts them again)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=wait, cancel_futures=True)
            _pool = None


atexit.register(shutdown_pool, wait=False)


def start_features(
    samples: pl.DataFrame,
    benchmark: Benchmark | None = None,
    workers: int = 0,
    min_rows_per_worker: int = MIN_ROWS_PER_WORKER,
    execute: bool = True,
    run_untested: bool = False,
) -> Callable[[], pl.DataFrame]:
    """Start ``sample_features(samples, benchmark)`` on up to ``workers`` processes (0 = one per
    core) and return what waits for it, so the caller can write other tables meanwhile. A pool
    that breaks (a worker killed) costs time, not rows: the features are then computed here,
    with a warning. With one worker, nothing starts until the result is asked for."""
    processes = resolved_workers(workers, samples.height, min_rows_per_worker)
    if processes == 1:
        return lambda: _in_batches(samples, benchmark, execute, run_untested)
    # At least two batches per worker even out the rows that parse slowly.
    batch_rows = min(BATCH_ROWS, -(-samples.height // (processes * 2)))
    batches = _batches(samples, batch_rows)
    try:
        pool = _shared_pool(processes)
        futures = [pool.submit(sample_features, batch, benchmark, execute, run_untested) for batch in batches]
    except (BrokenProcessPool, RuntimeError) as error:  # RuntimeError: a pool shut down meanwhile
        return _in_this_process(samples, benchmark, execute, run_untested, error)

    def result() -> pl.DataFrame:
        try:
            return pl.concat([future.result() for future in futures])
        except BrokenProcessPool as error:
            return _in_this_process(samples, benchmark, execute, run_untested, error)()

    return result


class FeatureStream:
    """Features of samples added file by file, started on the workers as soon as enough rows
    have gathered to give each worker two batches: reading the next file overlaps computing the
    last. ``result()`` returns them in the order added, the rows ``sample_features`` would give
    for all the samples at once."""

    def __init__(
        self,
        benchmark: Benchmark | None = None,
        workers: int = 0,
        min_rows_per_worker: int = MIN_ROWS_PER_WORKER,
        execute: bool = True,
        run_untested: bool = False,
    ):
        self._benchmark, self._workers, self._min_rows_per_worker = benchmark, workers, min_rows_per_worker
        self._execute, self._run_untested = execute, run_untested
        self._start_rows = 2 * min_rows_per_worker * resolved_workers(workers, sys.maxsize, min_rows_per_worker)
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._started: list[Callable[[], pl.DataFrame]] = []

    def add(self, samples: pl.DataFrame) -> None:
        self._pending.append(samples)
        self._pending_rows += samples.height
        if self._pending_rows >= self._start_rows:
            self._start()

    def _start(self) -> None:
        pending = pl.concat(self._pending, rechunk=False)  # only FEATURE_INPUTS are shipped (_batches)
        self._started.append(
            start_features(
                pending, self._benchmark, self._workers, self._min_rows_per_worker, self._execute, self._run_untested
            )
        )
        self._pending, self._pending_rows = [], 0

    def result(self) -> pl.DataFrame:
        """The features of every sample added (waits for the workers)."""
        if self._pending or not self._started:
            self._start()
        return pl.concat([started() for started in self._started])


def _batches(samples: pl.DataFrame, batch_rows: int = BATCH_ROWS) -> list[pl.DataFrame]:
    needed = samples.select(FEATURE_INPUTS)  # what features read: the rest is not shipped
    return [needed.slice(offset, batch_rows) for offset in range(0, samples.height, batch_rows)]


def _in_batches(samples: pl.DataFrame, benchmark: Benchmark | None, execute: bool, run_untested: bool) -> pl.DataFrame:
    if samples.height <= BATCH_ROWS:
        return sample_features(samples, benchmark, execute, run_untested)
    return pl.concat([sample_features(batch, benchmark, execute, run_untested) for batch in _batches(samples)])


def _in_this_process(
    samples: pl.DataFrame, benchmark: Benchmark | None, execute: bool, run_untested: bool, error: Exception
) -> Callable[[], pl.DataFrame]:
    shutdown_pool(wait=False)
    log.warning("feature workers failed (%s); computing %d samples' features in this process", error, samples.height)
    return lambda: _in_batches(samples, benchmark, execute, run_untested)
