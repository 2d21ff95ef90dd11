"""The whole deployment on one machine, as a team runs it on several.

    python deploy/local/deployment.py start --dir .deploy     # prints where the UI is
    python deploy/local/deployment.py stop --dir .deploy      # leaves nothing running

It starts, each a process of its own on loopback:

- PostgreSQL (the distribution's server, a throwaway cluster): Dagster's run, event and
  schedule storage (``dagster-postgres``, ``deploy/local/dagster.yaml``);
- an S3 API server (moto) holding the lake at ``s3://qaq/lake``;
- a Ray cluster: a head without CPUs and two worker nodes of one CPU each, token-authenticated;
- ``dagster-daemon run`` (sensors, the automation sensor, the run queue, run monitoring, the
  dead-run reaper) and ``dagster-webserver``, both loading ``deploy/local/workspace.yaml``.

Runs score on the Ray nodes (``QAQ_BACKEND=ray``, two replicas, one per node). The storage
credentials and the Ray token travel in the environment of the daemon and the webserver only.
Everything it starts carries ``QAQ_DEPLOYMENT=<dir>`` in its environment, which is how ``stop``
finds what Ray forked. ``--models`` picks the models (default: the bundled one).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qaq_assets.lib.processes import kill_processes_with, processes_with

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MARKER = "QAQ_DEPLOYMENT"
RAY_NODE = "QAQ_RAY_NODE"
BUCKET, LAKE_PREFIX = "qaq", "lake"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path:
    """The PostgreSQL server's programs (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = Path(found[-1]) if found else (Path(shutil.which("pg_ctl")) if shutil.which("pg_ctl") else None)
    if pg_ctl is None:
        raise SystemExit("deployment: no PostgreSQL server here (apt-get install postgresql)")
    return pg_ctl.parent


def as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the distribution's postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"deployment: {what} did not come up within {seconds:.0f}s")
        time.sleep(0.5)


def start_postgres(state: dict) -> None:
    binary = postgres_bin()
    # Outside the deployment directory: the server's user must reach it (a test's tmp is 0700).
    data_root = tempfile.mkdtemp(prefix="qaq-pg-")
    os.chmod(data_root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(data_root, "postgres")
    data, port = f"{data_root}/data", free_port()
    subprocess.run(
        as_server_user([str(binary / "initdb"), "-D", data, "-U", "qaq", "--auth=trust", "-E", "UTF8"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    state["postgres"] = {"bin": str(binary), "data": data, "root": data_root, "port": port}
    postgres_server(state, "start")
    subprocess.run([str(binary / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "qaq", "dagster"], check=True)


def postgres_server(state: dict, action: str) -> None:
    """``pg_ctl start`` or ``stop`` (fast: open connections are cut) of the deployment's server."""
    pg = state["postgres"]
    command = [f"{pg['bin']}/pg_ctl", "-D", pg["data"], "-w"]
    if action == "start":
        options = f"-h 127.0.0.1 -p {pg['port']} -k {pg['root']}"
        command += ["-l", f"{pg['root']}/server.log", "-o", options, "start"]
    else:
        command += ["-m", "fast", "stop"]
    subprocess.run(as_server_user(command), check=True, stdout=subprocess.DEVNULL)


def start_object_store(state: dict, directory: Path) -> None:
    import boto3

    port = free_port()
    server = spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], directory / "logs" / "s3.log")
    endpoint = f"http://127.0.0.1:{port}"
    key, secret = "qaq-deployment", f"qaq-secret-{secrets.token_hex(8)}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
    )

    def bucket_made() -> bool:
        try:
            client.create_bucket(Bucket=BUCKET)
            return True
        except Exception:  # noqa: BLE001 - the server is still starting
            return False

    wait_for(bucket_made, 60, "the S3 API server")
    state["s3"] = {"pid": server, "endpoint": endpoint, "key": key, "secret": secret}


def start_ray(state: dict, environment: dict) -> None:
    ray = str(BIN / "ray")
    port = free_port()
    head = subprocess.run(
        [ray, "start", "--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
         "--disable-usage-stats"],
        env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    address = next(
        line.split("--address=")[1].strip().strip("'\"") for line in head.stderr.splitlines() + head.stdout.splitlines()
        if "ray start --address=" in line
    )  # fmt: skip
    for node in (1, 2):
        # Each node's processes carry its name: a fault drill kills one node whole (kill_ray_node).
        subprocess.run(
            [ray, "start", "--address", address, "--num-cpus", "1", "--resources", json.dumps({f"worker{node}": 1}),
             "--disable-usage-stats"],
            env={**environment, RAY_NODE: f"worker{node}"}, capture_output=True, text=True, check=True,
        )  # fmt: skip
    state["ray"] = {"address": address}


def kill_ray_node(node: str) -> list[int]:
    """SIGKILL every process of one Ray worker node (``worker1``, ``worker2``): its raylet, its
    object store and the workers running its tasks, as when the machine dies. Returns the pids."""
    return kill_processes_with(RAY_NODE, node)


def spawn(command: list[str], log: Path, environment: dict | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # stopped as a group (a webserver's and a daemon's code servers)
        )  # fmt: skip
    return process.pid


def dagster_environment(state: dict, directory: Path, models: str) -> dict:
    """What the daemon, the webservers and their code servers run with."""
    s3, pg = state["s3"], state["postgres"]
    storage = {
        "AWS_ENDPOINT_URL": s3["endpoint"],
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": s3["key"],
        "AWS_SECRET_ACCESS_KEY": s3["secret"],
        "aws_conditional_put": "etag",
    }
    return {
        **state["environment"],
        "DAGSTER_HOME": str(directory / "dagster_home"),
        "DAGSTER_PG_URL": f"postgresql+psycopg2://qaq@127.0.0.1:{pg['port']}/dagster",
        "QAQ_LAKE": f"s3://{BUCKET}/{LAKE_PREFIX}",
        "QAQ_STORAGE_OPTIONS": json.dumps(storage),
        "QAQ_LANDING_DIR": str(directory / "incoming"),
        "QAQ_MODELS": models,
        "QAQ_BACKEND": "ray",
        "QAQ_RAY_ADDRESS": state["ray"]["address"],
        "QAQ_RAY_REPLICAS": "2",
    }


def start_daemon(state: dict, directory: Path) -> int:
    command = [str(BIN / "dagster-daemon"), "run", "-w", str(HERE / "workspace.yaml")]
    return spawn(command, directory / "logs" / "daemon.log", state["dagster_environment"])


def start_webserver(state: dict, directory: Path, name: str = "webserver") -> int:
    port = free_port()
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(HERE / "workspace.yaml")]
    pid = spawn(command, directory / "logs" / f"{name}.log", state["dagster_environment"])
    state.setdefault("webservers", {})[name] = {"pid": pid, "port": port}
    return port


def start(directory: Path, models: str, settings: dict[str, str] | None = None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "incoming").mkdir(exist_ok=True)
    home = directory / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(HERE / "dagster.yaml", home / "dagster.yaml")
    environment = {
        **os.environ,
        MARKER: str(directory),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PYTHONUNBUFFERED": "1",
    }
    state: dict = {
        "directory": str(directory),
        "environment": {k: environment[k] for k in (MARKER, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")},
    }
    save(directory, state)  # what stop needs, as soon as anything runs
    start_postgres(state)
    save(directory, state)
    start_object_store(state, directory)
    start_ray(state, environment)
    state["dagster_environment"] = {**environment, **dagster_environment(state, directory, models), **(settings or {})}
    state["daemon"] = {"pid": start_daemon(state, directory)}
    port = start_webserver(state, directory)
    save(directory, state)
    pid = state["webservers"]["webserver"]["pid"]
    wait_for(lambda: _answers(port, pid, directory, "webserver"), 180, "the Dagster webserver")
    return state


def _answers(port: int, pid: int, directory: Path, name: str) -> bool:
    import urllib.request

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        log = (directory / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        raise SystemExit(f"deployment: the {name} exited: {log[-1] if log else 'no log'}") from None
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200
    except OSError:
        return False


def save(directory: Path, state: dict) -> None:
    path = directory / "deployment.json"
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)  # it names the storage secret


def load(directory: Path) -> dict:
    return json.loads((directory / "deployment.json").read_text())


def processes_of(directory: Path) -> list[int]:
    """Every process started for this deployment (its environment names it), this one excepted."""
    return processes_with(MARKER, str(directory))


def stop(directory: Path) -> None:
    state = load(directory)
    groups = [state.get("daemon", {}).get("pid"), *(w["pid"] for w in state.get("webservers", {}).values())]
    for pid in filter(None, groups):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while processes_of(directory) and time.monotonic() < deadline:
        time.sleep(0.5)
    kill_processes_with(MARKER, str(directory))  # Ray's nodes and whatever outlived the grace period
    if "s3" in state:
        try:
            os.killpg(state["s3"]["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    if "postgres" in state:
        try:
            postgres_server(state, "stop")
        except subprocess.CalledProcessError:
            pass  # not running (a failed start, or stopped by a fault drill)
        shutil.rmtree(state["postgres"]["root"], ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action",
        choices=["start", "stop", "webserver", "restart-daemon", "postgres-outage", "kill-ray-node"],
        help="webserver: one more on the same instance; fault drills: restart-daemon (SIGKILL, then start again), "
        "postgres-outage (stop the database for --seconds, then start it), kill-ray-node (SIGKILL worker node --node)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="postgres-outage: how long the database is down")
    parser.add_argument("--node", default="worker2", choices=["worker1", "worker2"], help="kill-ray-node: which node")
    parser.add_argument("--dir", default=".deploy", help="where the deployment keeps its state and logs")
    parser.add_argument("--models", default="smollm2-135m", help="QAQ_MODELS of the deployment")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="QAQ_NAME=VALUE", help="another setting (repeatable)"
    )
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    if args.action == "stop":
        stop(directory)
        print(f"stopped the deployment in {directory}")
        return
    if args.action == "restart-daemon":
        state = load(directory)
        try:
            os.killpg(state["daemon"]["pid"], signal.SIGKILL)  # as a crash would: no clean shutdown
        except ProcessLookupError:
            pass
        state["daemon"]["pid"] = start_daemon(state, directory)
        save(directory, state)
        print(f"daemon restarted (pid {state['daemon']['pid']})")
        return
    if args.action == "postgres-outage":
        state = load(directory)
        postgres_server(state, "stop")
        time.sleep(args.seconds)
        postgres_server(state, "start")
        print(f"PostgreSQL was down for {args.seconds:.0f}s and is up again")
        return
    if args.action == "kill-ray-node":
        print(f"killed Ray node {args.node}: {len(kill_ray_node(args.node))} processes")
        return
    if args.action == "webserver":
        state = load(directory)
        name = f"webserver{len(state['webservers']) + 1}"
        port = start_webserver(state, directory, name)
        save(directory, state)
        wait_for(lambda: _answers(port, state["webservers"][name]["pid"], directory, name), 180, f"the {name}")
        print(f"UI: http://127.0.0.1:{port}")
        return
    try:
        settings = dict(item.split("=", 1) for item in args.setting)
        state = start(directory, args.models, settings)
    except BaseException:
        if (directory / "deployment.json").exists():
            stop(directory)
        raise
    port = state["webservers"]["webserver"]["port"]
    print(f"UI: http://127.0.0.1:{port}  lake: s3://{BUCKET}/{LAKE_PREFIX}  landing: {directory / 'incoming'}")
    print(f"stop: python deploy/local/deployment.py stop --dir {directory}")


if __name__ == "__main__":
    main()
