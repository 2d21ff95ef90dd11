"""``qaq ui``: the Dagster UI (``dagster dev``) that stops when asked, whoever is asked.

``dagster dev`` runs a webserver, a daemon and code servers. A SIGINT or SIGTERM to this
process, or the death of the process that started it (``make ui`` killed), stops all of them:
the signal is passed on, and whatever still runs after a grace period is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 10.0
POLL_SECONDS = 0.5


def run_ui(workspace: str, extra: list[str]) -> int:
    """Run ``dagster dev -w workspace`` until it ends or this process is told to stop."""
    if os.environ.get("DAGSTER_HOME"):
        from qaq_assets.runner.instance import open_instance  # dagster: only now

        # Created here, under the lock, before the webserver and the daemon both create it.
        open_instance(os.environ["DAGSTER_HOME"]).dispose()
    parent = os.getppid()
    extra = extra[1:] if extra[:1] == ["--"] else extra
    command = [sys.executable, "-m", "dagster", "dev", "-w", workspace, *extra]
    # Its own session: the whole group (webserver, daemon, code servers) can be stopped at once.
    server = subprocess.Popen(command, start_new_session=True)
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    while server.poll() is None:
        orphaned = os.getppid() != parent  # whoever started us died (make ui killed)
        if stop["signal"] is not None or orphaned:
            return _stop(server, stop["signal"] or signal.SIGTERM)
        time.sleep(POLL_SECONDS)
    return server.returncode


def _stop(server: subprocess.Popen, signum: int) -> int:
    group = os.getpgid(server.pid)
    os.killpg(group, signum)
    try:
        server.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(group, signal.SIGKILL)  # what outlived the grace period (the daemon, code servers)
    except ProcessLookupError:
        pass
    server.wait()
    return 128 + signum
