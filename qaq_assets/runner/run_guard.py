"""What keeps an in-process CLI run from hanging or publishing after a signal.

- A run whose process is gone (``kill -9``) never frees its ``gpu`` pool slot by itself:
  :func:`~qaq_assets.defs.run_liveness.reap_dead_runs` marks it failed and frees its slots.
- Before a run that needs a pool slot, :func:`wait_for_pool` waits (saying for what) while
  live runs hold every slot, and gives up with one clear error after a bounded time; Dagster's
  own in-process wait neither says so on the terminal nor ends.
(Signals: :mod:`qaq_assets.runner.signals`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg

from qaq_assets.defs.run_liveness import HOST_TAG, PID_TAG, reap_dead_runs
from qaq_assets.lib.errors import QaqError


class PoolTimeout(QaqError):
    """A pool stayed full for longer than the configured wait."""


def wait_for_pool(
    instance: dg.DagsterInstance,
    pool: str,
    timeout_seconds: float,
    log: Callable[[str], None],
    poll_seconds: float = 1.0,
) -> None:
    """Return once ``pool`` has a free slot; raise :class:`PoolTimeout` after ``timeout_seconds``."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    deadline = time.monotonic() + timeout_seconds
    said = None
    while True:
        reap_dead_runs(instance, log)  # a holder killed while we wait
        info = storage.get_concurrency_info(pool)
        limit = info.limit if info.limit is not None else info.slot_count
        if not limit or info.active_slot_count < limit:
            return
        holders = ", ".join(sorted(_describe_run(instance, run_id) for run_id in info.active_run_ids))
        if holders != said:
            log(f"waiting for pool {pool!r} ({info.active_slot_count}/{limit} slots held by {holders})")
            said = holders
        if time.monotonic() >= deadline:
            raise PoolTimeout(
                f"pool {pool!r} stayed full for {timeout_seconds:.0f}s (held by {holders}); raise its limit "
                f"(dagster instance concurrency set {pool} N) or wait for those runs"
            )
        time.sleep(poll_seconds)


def _describe_run(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"run {run_id[:8]}"
    where = f", pid {run.tags[PID_TAG]} on {run.tags.get(HOST_TAG, '?')}" if PID_TAG in run.tags else ""
    return f"run {run_id[:8]} ({run.job_name}, {run.status.value}{where})"
