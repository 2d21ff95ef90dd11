"""The gpu pool's slots: a killed run's are freed, a live run's are waited for with a bound, and a
``qaq curate`` after kill -9 goes on."""

import os
import signal
import subprocess
import sys
import time
from unittest import mock

import dagster as dg
import polars as pl
import pytest

from qaq_assets.defs.run_liveness import reap_dead_runs, reap_dead_runs_sensor
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import RAW_SAMPLES
from qaq_assets.runner.instance import open_instance
from qaq_assets.runner.run_guard import PoolTimeout, wait_for_pool
from qaq_assets_tests.helpers import dagster_home, spawn_curate, write_jsonl


def _hold_slot(instance, pid: int) -> str:
    """A started run tagged as a CLI run of process ``pid``, holding the gpu pool's one slot."""
    job = dg.Definitions(jobs=[dg.define_asset_job("held")], assets=[dg.asset(lambda: None, name="a")])
    run = instance.create_run_for_job(
        job.resolve_job_def("held"), tags={"qaq/pid": str(pid), "qaq/host": os.uname().nodename}
    )
    instance.run_storage.handle_run_event(
        run.run_id, dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=run.job_name)
    )
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", run.run_id, "token_logprobs").is_claimed
    return run.run_id


def test_a_killed_runs_pool_slot_is_freed_and_a_live_one_is_waited_for_with_a_bound(tmp_path):
    with dg.instance_for_test(temp_dir=str(dagster_home(tmp_path))) as instance:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        held = _hold_slot(instance, dead.pid)
        messages = []
        assert reap_dead_runs(instance, messages.append) == [held]
        assert instance.get_run_by_id(held).status == dg.DagsterRunStatus.FAILURE
        wait_for_pool(instance, "gpu", 1.0, messages.append)  # free now: returns at once

        live = _hold_slot(instance, os.getpid())
        assert reap_dead_runs(instance, messages.append) == []
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=rf"pool 'gpu' stayed full .*run {live[:8]}.*pid {os.getpid()}"):
            wait_for_pool(instance, "gpu", 0.5, messages.append, poll_seconds=0.1)
        assert time.monotonic() - started < 5
        assert any("waiting for pool 'gpu'" in m for m in messages)


@pytest.mark.slow
def test_after_kill_9_the_next_curate_does_not_hang(tmp_path):
    home = dagster_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    big = write_jsonl(
        tmp_path / "big.jsonl",
        [
            {"instruction": f"Task {i}: add {i} to x.", "response": f"def f(x):\n    return x + {i}"}
            for i in range(4000)
        ],
    )
    lake = tmp_path / "lake"
    first = spawn_curate(env, big, "--lake", lake)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        deadline = time.monotonic() + 120
        while not instance.event_log_storage.get_concurrency_info("gpu").active_slot_count:
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
    first.kill()  # SIGKILL while it holds the gpu slot
    first.wait()
    second = spawn_curate(env, big, "--lake", lake)
    try:
        # Behaviour, not speed: the second run reaps the first and takes the slot itself (it is
        # then scoring; how fast a loaded machine scores 4,000 samples is not this test's business).
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 300

            def slot_holders() -> set[str]:
                held = instance.event_log_storage.get_concurrency_info("gpu").active_run_ids
                return {instance.get_run_by_id(run_id).tags.get("qaq/pid") for run_id in held}

            while slot_holders() != {str(second.pid)}:
                assert second.poll() is None and time.monotonic() < deadline, second.stderr.read()
                time.sleep(0.5)
            killed = instance.get_runs(dg.RunsFilter(job_name="scoring_job", tags={"qaq/pid": str(first.pid)}))
            assert [run.status for run in killed] == [dg.DagsterRunStatus.FAILURE]
    finally:
        second.kill()
        _, err = second.communicate()
    assert "marked failed; its pool slots freed" in err
    # The file was ingested once, before the first kill: the second run did not read it again.
    assert Lake(lake).scan(RAW_SAMPLES).select(pl.len()).collect().item() == 4000


def test_a_ui_or_daemon_run_killed_while_it_holds_the_pool_is_reaped_by_the_daemon(tmp_path):
    """A run launched as the UI and the daemon launch them (a run worker without the CLI's tags,
    its step in a child process) is killed with SIGKILL while its step holds the gpu slot: the
    daemon's reaper sensor fails it and frees the slot."""
    home = dagster_home(tmp_path)
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # The instance's storage created before the worker opens it, as a deployment does (this test
    # and the worker opening a new instance at once raced to create its schema).
    with mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home)}):
        open_instance(str(home)).dispose()
    worker = subprocess.Popen(
        [sys.executable, "-m", "qaq_assets_tests.runner.held_slot_job"], env=env, start_new_session=True
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 120
            while True:
                runs = instance.get_runs(dg.RunsFilter(tags={"qaq/pid": str(worker.pid)}))
                if runs and instance.event_log_storage.get_concurrency_info("gpu").active_slot_count:
                    break
                assert worker.poll() is None and time.monotonic() < deadline, "the run never held the slot"
                time.sleep(0.2)
            (run,) = runs
            os.killpg(worker.pid, signal.SIGKILL)  # the run worker and its step, as an OOM kill would
            worker.wait()
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nobody said

            result = reap_dead_runs_sensor(dg.build_sensor_context(instance=instance))
            assert "reaped 1 dead run" in result.skip_message
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
            assert "no dead run" in reap_dead_runs_sensor(dg.build_sensor_context(instance=instance)).skip_message
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)


def test_a_daemon_run_killed_before_its_worker_tagged_it_is_reaped_by_the_daemon_only(tmp_path):
    """The run worker is killed after Dagster's "Started process for run (pid: N)" event and
    RUN_START but before it tagged the run: the daemon's reaper finds the pid in that event where
    the daemon launched the run into this code server; the CLI and another location leave it."""
    from dagster._core.events import EngineEventData
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

    def coordinator(name: str) -> dict:
        return {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": name}}

    here = GrpcServerCodeLocationOrigin(host="localhost", port=4266, location_name="qaq_assets.definitions")
    elsewhere = GrpcServerCodeLocationOrigin(host="localhost", port=4267, location_name="another_team")
    job = dg.Definitions(jobs=[dg.define_asset_job("held")], assets=[dg.asset(lambda: None, name="a")])

    def sensor_context(instance, location):
        return dg.SensorEvaluationContext(instance_ref=None, instance=instance, code_location_origin=location)

    def untagged_run(instance, pid: int) -> str:
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(here, "__repository__"), "held")
        run = instance.create_run_for_job(job.resolve_job_def("held"), remote_job_origin=origin)
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
        instance.run_storage.handle_run_event(
            run.run_id, dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=run.job_name)
        )
        return run.run_id

    with dg.instance_for_test(
        temp_dir=str(dagster_home(tmp_path)), overrides=coordinator("QueuedRunCoordinator")
    ) as instance:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        killed, live = untagged_run(instance, dead.pid), untagged_run(instance, os.getpid())
        assert reap_dead_runs(instance, print) == []  # the CLI cannot tell where an untagged run runs
        assert "no dead run" in reap_dead_runs_sensor(sensor_context(instance, elsewhere)).skip_message
        assert "reaped 1 dead run" in reap_dead_runs_sensor(sensor_context(instance, here)).skip_message
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED

    (tmp_path / "direct").mkdir()
    direct = coordinator("DefaultRunCoordinator")  # runs not queued: a webserver elsewhere may launch them
    with dg.instance_for_test(temp_dir=str(dagster_home(tmp_path / "direct")), overrides=direct) as instance:
        untagged_run(instance, dead.pid)
        assert "no dead run" in reap_dead_runs_sensor(sensor_context(instance, here)).skip_message
