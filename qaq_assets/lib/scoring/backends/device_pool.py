"""Scoring on every GPU of this machine: one worker process per device, each with its replica.

Each worker is a spawned process (CUDA does not survive a fork) that loads the model onto
its own device and checks it is the model the driver identified. Chunks go to the next
free worker and the results come back in the chunks' order, so the driver commits exactly
what one device would. Processes, not threads: each worker's host work (laying out passes,
launching kernels) runs on a core of its own, and compiled kernels are never shared across
threads.

A pool outlives the partition that started it (as a loaded model does in one process), so
the next shard scores without loading the model again; it shuts down with the process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from qaq_assets.lib.scoring.backends.local import (
    Chunk,
    OnPass,
    ScoredChunk,
    ScorerIdentity,
    ScorerOptions,
    ScoringReplica,
)
from qaq_assets.lib.scoring.engine.models import ModelSpec

_replica: ScoringReplica | None = None
_replica_name = ""


def _start_worker(
    devices, spec: ModelSpec, dtype: str, options: ScorerOptions, threads: int, expected: ScorerIdentity
) -> None:
    global _replica, _replica_name
    device = devices.get()
    _replica = ScoringReplica(spec, device, dtype, options, threads)
    _replica_name = f"{device} (pid {os.getpid()})"
    if _replica.identity != expected:
        raise RuntimeError(f"the model loaded on {device} is {_replica.identity}, not the identified {expected}")


def _score(chunk: Chunk) -> ScoredChunk:
    return _replica.score(chunk, _replica_name)


def _describe() -> str:
    return _replica.describe_forward()


class DevicePoolBackend:
    """Score chunks with one worker process per device of ``devices``."""

    def __init__(
        self, spec: ModelSpec, devices: list[str], dtype: str, options: ScorerOptions, identity: ScorerIdentity
    ):
        self.identity = identity
        self.devices = devices
        self.on_gpu = any(device.startswith("cuda") for device in devices)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        threads = max(1, (os.cpu_count() or 1) // len(devices))
        self.pool = ProcessPoolExecutor(
            len(devices),
            mp_context=context,
            initializer=_start_worker,
            initargs=(queue, spec, dtype, options, threads, identity),
        )

    def score_chunks(self, chunks: Iterable[Chunk], on_pass: OnPass | None = None) -> Iterator[ScoredChunk]:
        """Results in the chunks' order; progress comes per chunk (the passes run in the workers)."""
        in_flight: deque[Future[ScoredChunk]] = deque()

        def finished() -> ScoredChunk:
            try:
                scored = in_flight.popleft().result()
            except BrokenProcessPool:
                _forget(self)  # the next partition starts a fresh pool
                raise
            if on_pass is not None:
                on_pass(2 * len(scored.tokens), scored.real_tokens)
            return scored

        for chunk in chunks:
            in_flight.append(self.pool.submit(_score, chunk))
            # One chunk queued behind each busy worker: none waits between chunks.
            if len(in_flight) >= 2 * len(self.devices):
                yield finished()
        while in_flight:
            yield finished()

    def describe_forward(self) -> str:
        return f"{self.pool.submit(_describe).result()}, {len(self.devices)} devices"

    def close(self) -> None:
        pass  # the pool stays for the next partition (see the module's docstring)

    def shutdown(self) -> None:
        self.pool.shutdown(cancel_futures=True)


_pools: dict[tuple, DevicePoolBackend] = {}
_pools_lock = threading.Lock()


def device_pool(
    spec: ModelSpec, devices: list[str], dtype: str, options: ScorerOptions, identity: ScorerIdentity
) -> DevicePoolBackend:
    """The pool for this model on these devices, started once per process."""
    key = (spec, tuple(devices), dtype, options, identity)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = DevicePoolBackend(spec, devices, dtype, options, identity)
        return pool


def _forget(pool: DevicePoolBackend) -> None:
    with _pools_lock:
        for key in [key for key, cached in _pools.items() if cached is pool]:
            del _pools[key]
    pool.shutdown()


@atexit.register
def _shutdown_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.shutdown()
        _pools.clear()
