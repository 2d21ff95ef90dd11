"""What keeps an in-process CLI run from hanging or publishing after a signal.

- Runs the CLI launches carry their process id and host as tags. A run whose process is gone
  (``kill -9``) never frees its ``gpu`` pool slot by itself, and every later run would wait for
  it forever: :func:`reap_dead_runs` marks such runs failed and frees their slots.
- Before a run that needs a pool slot, :func:`wait_for_pool` waits (saying for what) while
  live runs hold every slot, and gives up with one clear error after a bounded time; Dagster's
  own in-process wait neither says so on the terminal nor ends.
(Signals: :mod:`qaq_assets.runner.signals`.)
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import dagster as dg

from qaq_assets.lib.errors import QaqError

PID_TAG, HOST_TAG = "qaq/pid", "qaq/host"
_UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]


class PoolTimeout(QaqError):
    """A pool stayed full for longer than the configured wait."""


def run_tags() -> dict[str, str]:
    """Tags that let a later command tell whether this process still runs."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def reap_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None]) -> list[str]:
    """Fail the unfinished CLI runs of this host whose process is gone, freeing their pool slots."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(dg.RunsFilter(statuses=_UNFINISHED, tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        instance.report_run_failed(run, f"its process {pid} on {host} is gone (killed); its pool slots were freed")
        log(f"run {run.run_id[:8]} of a killed process ({pid}) marked failed; its pool slots freed")
        reaped.append(run.run_id)
    return reaped


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
