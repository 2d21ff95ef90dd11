"""The deployment docs/deployment.md describes, run whole on one machine as a team runs it:
PostgreSQL, the daemon, two webservers, three Ray nodes and a lake on an S3 API server.
Files land; the daemon's sensors ingest, score on Ray's worker nodes and curate, through a crash
of the daemon and an outage of PostgreSQL; the run history is in PostgreSQL; no secret is stored;
stopping leaves nothing running. (A Ray node's death: test_ray_node_loss.py.)"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, RAW_SAMPLES
from qaq_assets_tests.helpers import CODE_PAIRS, REPO, TINY, graphql, write_jsonl

pytestmark = pytest.mark.slow  # a database, a daemon, webservers and a Ray cluster

SCRIPT = REPO / "deploy" / "local" / "deployment.py"
SHARDS = ("alpha", "beta", "gamma")
# Long enough for: the landing sensor's settle time and two ticks, the ingest run, the automation
# sensor's scoring and curation runs, each a fresh run worker on a loaded 2-core machine.
LANDED_TO_CURATED_SECONDS = 600


def _deployment(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def _skip_where_it_cannot_run() -> None:
    if not any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) and shutil.which("pg_ctl") is None:
        pytest.skip("no PostgreSQL server on this machine (apt-get install postgresql)")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        pytest.skip("running as root without a postgres user to run PostgreSQL as")
    pytest.importorskip("ray", reason="the deployment scores on Ray: pip install 'qaq-assets[ray]'")
    pytest.importorskip("dagster_postgres", reason="pip install 'qaq-assets[deploy]'")


def _reaped(instance, run) -> bool:
    import dagster as dg

    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return any("is gone (killed)" in (event.message or "") for event in failures)


def _where_it_stands(directory: Path) -> str:
    """What each run did last and the daemon's last lines: the message of a wait that ran out."""
    import dagster as dg

    lines = []
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            last = instance.all_logs(run.run_id)[-3:]
            events = " | ".join(f"{e.dagster_event_type or ''} {(e.message or '')[:160]}" for e in last)
            lines.append(f"{run.run_id[:8]} {run.job_name} {run.status.value} tags={dict(run.tags)}: {events}")
    daemon = (directory / "logs" / "daemon.log").read_text().splitlines()
    noise = ("skipped", "Checking", "etching", "BetaWarning", "return fn(")
    said = [line for line in daemon if line.strip() and not any(word in line for word in noise)]
    return "\n".join([*lines, "--- daemon.log ---", *said[-40:]])


def _every_step_succeeded(instance, run) -> bool:
    import dagster as dg

    started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
    succeeded = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    return {e.step_key for e in started} == {e.step_key for e in succeeded}


@pytest.fixture
def deployment(tmp_path):
    _skip_where_it_cannot_run()
    directory = tmp_path / "deploy"
    started = _deployment(
        "start", "--dir", str(directory), "--models", TINY, "--setting", "QAQ_COMMIT_EVERY=4"
    )  # small chunks: they spread over both Ray nodes
    if started.returncode != 0:
        _deployment("stop", "--dir", str(directory))
        pytest.fail(f"the deployment did not start: {started.stderr[-3000:]}")
    assert started.stdout.startswith("UI: http://127.0.0.1:")
    yield directory, json.loads((directory / "deployment.json").read_text())
    stopped = _deployment("stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from deployment import processes_of

        assert processes_of(directory) == []  # nothing of it still runs
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_landed_files_are_curated_on_ray_nodes_into_the_object_store_with_runs_in_postgres(deployment):
    directory, state = deployment
    environment = state["dagster_environment"]
    lake = Lake(environment["QAQ_LAKE"], json.loads(environment["QAQ_STORAGE_OPTIONS"]))
    for name in SHARDS:
        records = [{"instruction": f"{name}: {q}", "response": a} for q, a in CODE_PAIRS]
        write_jsonl(directory / "incoming" / f"{name}.jsonl", records)
    landed = time.monotonic()
    os.environ.update({k: v for k, v in environment.items() if k.startswith("DAGSTER")})
    import dagster as dg

    # The daemon crashes (SIGKILL, with its code server and the run workers it launched) while the
    # first run works, and starts again: no run is lost, none runs twice.
    with dg.DagsterInstance.get() as instance:
        while not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert time.monotonic() - landed < LANDED_TO_CURATED_SECONDS, _where_it_stands(directory)
            time.sleep(1)
    restarted = _deployment("restart-daemon", "--dir", str(directory))
    assert restarted.returncode == 0, restarted.stderr

    def curated_shards() -> set[str]:
        if lake.version(CURATED_SUBSET) is None:
            return set()
        return set(lake.scan(CURATED_SUBSET).select("shard").unique().collect()["shard"])

    while curated_shards() != set(SHARDS):
        assert time.monotonic() - landed < LANDED_TO_CURATED_SECONDS, _where_it_stands(directory)
        time.sleep(5)
    print(f"landed -> curated: {time.monotonic() - landed:.0f}s")
    assert lake.scan(RAW_SAMPLES).select(pl.len()).collect().item() == 3 * len(CODE_PAIRS)
    assert lake.uri(CURATED_SUBSET) == "s3://qaq/lake/curated_subset"

    # The run history is in PostgreSQL: one ingest run for the three files, then scoring and curation.
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
        while not all(run.status in finished for run in instance.get_runs()):  # the curation run's checks
            assert time.monotonic() - landed < LANDED_TO_CURATED_SECONDS, _where_it_stands(directory)
            time.sleep(2)
        runs = instance.get_runs()
        # A run the crash killed is failed by the reaper, and retried where a step of it was not done.
        reaped = {r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE and _reaped(instance, r)}
        retried = {r.tags.get("dagster/parent_run_id") for r in runs if r.status == dg.DagsterRunStatus.SUCCESS}
        for run in runs:
            done = run.status == dg.DagsterRunStatus.SUCCESS or run.run_id in reaped
            assert done, [(r.job_name, r.status, r.run_id in reaped) for r in runs]
            if run.run_id in reaped and run.run_id not in retried:
                assert _every_step_succeeded(instance, run), run.job_name  # nothing was left to redo
        assert (
            len([run for run in runs if run.job_name == "ingest_job" and "dagster/parent_run_id" not in run.tags]) == 1
        )
        # Scoring ran as Ray tasks on both worker nodes (the head has no CPU).
        scored = instance.fetch_materializations(dg.AssetKey("token_logprobs"), limit=10).records
        by_node: dict[str, int] = {}
        for record in scored:
            by_node |= record.asset_materialization.metadata["samples_by_replica"].value
        assert len(by_node) == 2 and all(name.startswith("ray node ") for name in by_node), by_node
        assert all(record.asset_materialization.metadata["backend"].value == "ray" for record in scored)

    # PostgreSQL goes down for 5 s just as a newly landed file's run starts: whatever the outage
    # breaks fails with its error, and the next ticks curate the file, once.
    with dg.DagsterInstance.get() as instance:
        before = {run.run_id for run in instance.get_runs()}
    write_jsonl(
        directory / "incoming" / "delta.jsonl", [{"instruction": f"delta: {q}", "response": a} for q, a in CODE_PAIRS]
    )
    relanded = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        while not [run for run in instance.get_runs() if run.run_id not in before]:
            assert time.monotonic() - relanded < LANDED_TO_CURATED_SECONDS, "no run for the new file"
            time.sleep(1)
    outage = _deployment("postgres-outage", "--dir", str(directory), "--seconds", "5")
    assert outage.returncode == 0, outage.stderr
    while curated_shards() != {*SHARDS, "delta"}:
        assert time.monotonic() - relanded < LANDED_TO_CURATED_SECONDS, _where_it_stands(directory)
        time.sleep(5)
    print(f"landed -> curated through a PostgreSQL outage: {time.monotonic() - relanded:.0f}s")
    samples = lake.scan(RAW_SAMPLES).group_by("shard").agg(pl.len()).collect()
    assert dict(samples.iter_rows()) == {name: len(CODE_PAIRS) for name in (*SHARDS, "delta")}  # no duplicate
    with dg.DagsterInstance.get() as instance:
        while not all(run.status in finished for run in instance.get_runs()):
            assert time.monotonic() - relanded < LANDED_TO_CURATED_SECONDS, _where_it_stands(directory)
            time.sleep(2)
        for run in instance.get_runs():
            if run.run_id not in before:
                print(f"after the outage: {run.job_name} {run.status.value}")
            if run.run_id in before or run.status == dg.DagsterRunStatus.SUCCESS:
                continue
            failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert failures and all(event.message for event in failures), run.job_name  # failed with its reason

    # A second webserver on the same instance sees the same runs.
    first = state["webservers"]["webserver"]["port"]
    another = _deployment("webserver", "--dir", str(directory))
    assert another.returncode == 0, another.stderr[-2000:]
    second = int(another.stdout.strip().rsplit(":", 1)[1])
    query = "{ runsOrError { ... on Runs { results { runId status } } } }"
    assert graphql(first, query) == graphql(second, query)

    # The storage secret is in no table of the instance (run configs, tags, event logs).
    pg = state["postgres"]
    dump = subprocess.run(
        [f"{pg['bin']}/pg_dump", "-h", "127.0.0.1", "-p", str(pg["port"]), "-U", "qaq", "dagster"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "event_logs" in dump and state["s3"]["secret"] not in dump
