"""One DAGSTER_HOME opened for the first time by several processes at once stays usable."""

import multiprocessing
import os
import subprocess
import sys

import pytest

from qaq_assets.runner.instance import InstanceUnusable, open_instance

PROCESSES = 6


def _first_use(home: str, barrier, failures) -> None:
    barrier.wait()  # all at once, as barrier-synchronised first commands
    try:
        with open_instance(home) as instance:
            instance.get_runs(limit=1)
    except Exception as error:  # noqa: BLE001 (any failure is what this test counts)
        failures.put(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_first_uses_of_one_instance_leave_it_usable(tmp_path, monkeypatch, attempt):
    home = str(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", home)
    context = multiprocessing.get_context("fork")  # dagster already imported: a quick start
    barrier, failures = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_first_use, args=(home, barrier, failures)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    errors = [failures.get() for _ in range(failures.qsize())]
    assert errors == [] and all(worker.exitcode == 0 for worker in workers)
    # A later command, in a fresh interpreter, opens it as Dagster itself does.
    later = subprocess.run(
        [sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get().get_runs(limit=1)"],
        env={**os.environ, "DAGSTER_HOME": home},
        capture_output=True,
        text=True,
    )
    assert later.returncode == 0, later.stderr[-2000:]


def test_a_dagster_home_that_cannot_be_created_is_named_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InstanceUnusable, match=r"^DAGSTER_HOME .*a_file/home cannot be used: Not a directory$"):
        open_instance(str(blocker / "home"))
