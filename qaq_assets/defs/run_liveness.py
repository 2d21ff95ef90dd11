"""Which unfinished runs are dead, and freeing what they hold.

A run killed with ``kill -9`` never reports its end, so it keeps its ``gpu`` pool slot and every
later scoring run waits for it forever. Each run records the process that executes it (tags
``qaq/pid`` and ``qaq/host``): the CLI when it launches a run; for a run the UI, the daemon or a
schedule launched, its run worker as soon as it starts executing (the code location's executor,
:data:`pid_recording_executor`). A run on this host whose process is gone is marked failed and
its slots are freed, by the CLI before its runs and by the daemon's ``reap_dead_runs`` sensor.

A run worker can be killed before it tags the run (between Dagster's "Started process for run"
event, its RUN_START and the executor's first line). The daemon's sensor knows those too: where the
daemon launches every run (queued runs) into the code server that evaluates the sensor (the default
run launcher), the pid in that event is a process on the sensor's host."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable

import dagster as dg

from qaq_assets.lib.processes import process_alive

PID_TAG, HOST_TAG = "qaq/pid", "qaq/host"
UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
REAPER_INTERVAL_SECONDS = 30
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")


def run_tags() -> dict[str, str]:
    """Tags that let a later command tell whether this process still runs."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


class _PidRecordingExecutor(dg.Executor):
    """Dagster's multiprocess executor, which first tags the run with this run worker's process."""

    def __init__(self, inner: dg.Executor):
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        run = plan_context.dagster_run
        if PID_TAG not in run.tags:  # the CLI tags its own runs
            plan_context.instance.add_run_tags(run.run_id, run_tags())
        yield from self.inner.execute(plan_context, execution_plan)


@dg.executor(
    name="multiprocess_recording_pid",
    config_schema=dg.multiprocess_executor.config_schema,
    requirements=dg.multiprocess_executor.get_requirements(None),
)
def pid_recording_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """The multiprocess executor, the run tagged with its worker's process before any step: a run
    whose worker is killed before its first step is reaped too."""
    return _PidRecordingExecutor(dg.multiprocess_executor.executor_creation_fn(init_context))


def _worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The pid in the run worker's "Started process for run (pid: N)" event, the last one."""
    for record in reversed(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        started = WORKER_STARTED.match(record.message or "")
        if started:
            return int(started.group(1))
    return None


def _process_of(
    instance: dg.DagsterInstance, run: dg.DagsterRun, host: str, launched_here: Callable[[dg.DagsterRun], bool]
) -> int | None:
    """The process on this host that executes ``run``; None where it is elsewhere or unknown."""
    if HOST_TAG in run.tags:
        pid = run.tags.get(PID_TAG, "")
        return int(pid) if run.tags[HOST_TAG] == host and pid.isdigit() else None
    return _worker_pid(instance, run) if launched_here(run) else None


def reap_dead_runs(
    instance: dg.DagsterInstance,
    log: Callable[[str], None],
    launched_here: Callable[[dg.DagsterRun], bool] = lambda run: False,
) -> list[str]:
    """Fail the unfinished runs of this host whose process is gone, freeing their pool slots.
    ``launched_here``: the untagged runs known to run on this host (the daemon's, see above)."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED)):
        pid = _process_of(instance, run, host, launched_here)
        if pid is None or process_alive(pid):
            continue
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        instance.report_run_failed(run, f"its process {pid} on {host} is gone (killed); its pool slots were freed")
        log(f"run {run.run_id[:8]} of a killed process ({pid}) marked failed; its pool slots freed")
        reaped.append(run.run_id)
    return reaped


def launched_by_this_code_server(context: dg.SensorEvaluationContext) -> Callable[[dg.DagsterRun], bool]:
    """Whether a run was launched into the code server that evaluates this sensor: the daemon
    launches every run (queued runs) with the default launcher, and the run is of this location."""
    instance = context.instance
    origin = context.code_location_origin
    daemon_launches_locally = isinstance(instance.run_launcher, dg.DefaultRunLauncher) and isinstance(
        instance.run_coordinator, dg.QueuedRunCoordinator
    )
    if origin is None or not daemon_launches_locally:
        return lambda run: False
    return lambda run: run.remote_job_origin is not None and run.remote_job_origin.location_name == origin.location_name


@dg.sensor(
    name="reap_dead_runs",
    minimum_interval_seconds=REAPER_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks failed the runs of this host whose process was killed (kill -9, out of memory) and frees "
        "their gpu pool slots, so later scoring runs do not wait for them forever."
    ),
)
def reap_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance, context.log.warning, launched_by_this_code_server(context))
    return dg.SkipReason(f"reaped {len(reaped)} dead run(s)" if reaped else "no dead run")
