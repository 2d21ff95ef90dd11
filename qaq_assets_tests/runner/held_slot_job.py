"""A job whose one step holds the ``gpu`` pool slot until killed, run the way the UI and the
daemon run jobs (a run worker with the code location's executor, the step in a child process),
for the reaper's tests."""

import time

import dagster as dg

from qaq_assets.defs.run_liveness import pid_recording_executor


@dg.asset(pool="gpu")
def holds_the_gpu(context: dg.AssetExecutionContext) -> None:
    while True:
        time.sleep(1)


held_job = dg.define_asset_job("held_job", selection=[holds_the_gpu])
defs = dg.Definitions(assets=[holds_the_gpu], jobs=[held_job], executor=pid_recording_executor)


def held_job_definition() -> dg.JobDefinition:
    return defs.resolve_job_def("held_job")


if __name__ == "__main__":
    dg.execute_job(dg.reconstructable(held_job_definition), instance=dg.DagsterInstance.get())
