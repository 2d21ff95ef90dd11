"""The sandbox against hostile answers: each attack ends as error/timeout/failed, nothing outside
is read, written, reached or killed, and the next run works. Real processes, real namespaces."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from qaq_assets.lib.ingest.execution import sandbox
from qaq_assets.lib.ingest.execution.run_tests import FAILING, execute

pytestmark = [
    pytest.mark.skipif(sandbox.unavailable() is not None, reason=str(sandbox.unavailable())),
    pytest.mark.slow,  # real processes in real namespaces, some running into their time limits
]

TESTS = "assert f() == 1"


def attack(body: str):
    """An answer whose function ``f`` runs ``body`` (indented), checked by ``assert f() == 1``."""
    code = "def f():\n" + "\n".join("    " + line for line in body.strip().splitlines()) + "\n    return 1\n"
    return execute("Write `f()`.", f"```python\n{code}```", TESTS, "python")


def assert_contained(result):
    assert result.status in FAILING, result


def test_a_plain_answer_passes_and_a_wrong_one_fails_naming_the_assertion():
    assert execute("x", "def f():\n    return 1\n", TESTS, "python").status == "passed"
    failed = execute("x", "def f():\n    return 2\n", TESTS, "python")
    assert failed.status == "failed" and failed.detail.startswith("assert f() == 1") and "got 2" in failed.detail


def test_a_fork_bomb_is_stopped_and_leaves_no_process_behind():
    before = _processes()
    result = attack("import os\nwhile True:\n    os.fork()")
    assert_contained(result)
    time.sleep(0.5)
    assert _processes() - before <= 2  # nothing of the bomb survives its sandbox
    assert execute("x", "def f():\n    return 1\n", TESTS, "python").status == "passed"


def test_an_endless_loop_is_a_timeout_within_the_unit_alarm():
    started = time.monotonic()
    result = attack("while True:\n    pass")
    assert result.status in ("failed", "timeout") and "timed out" in (result.detail or "")
    assert time.monotonic() - started < 60


def test_an_endless_loop_at_import_is_a_timeout():
    result = execute("x", "while True:\n    pass\ndef f():\n    return 1\n", TESTS, "python")
    assert result.status in FAILING and "did not finish" in result.detail


def test_a_ten_gigabyte_allocation_fails_inside():
    result = attack("x = bytearray(10 * 1024 ** 3)")
    assert_contained(result)
    assert "MemoryError" in result.detail


def test_host_secrets_are_not_readable(tmp_path, monkeypatch):
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    for path in ("/etc/passwd", "/etc/shadow", os.path.expanduser("~/.aws/credentials"), str(secret)):
        result = attack(f"open({path!r}).read()")
        assert result.status == "failed" and ("FileNotFoundError" in result.detail or "Permission" in result.detail)
    leaked = attack("import os\nassert 'AWS_SECRET_ACCESS_KEY' not in os.environ, 'leaked'")
    assert leaked.status == "passed"  # the variable did not reach the sandbox


def test_nothing_outside_the_throwaway_directory_is_written_or_deleted(tmp_path):
    lake = tmp_path / "lake"
    (lake / "_delta_log").mkdir(parents=True)
    (lake / "_delta_log" / "0.json").write_text("{}")
    outside = tmp_path / "pwned"
    for body in (
        f"open({str(outside)!r}, 'w').write('x')",
        f"import shutil\nshutil.rmtree({str(lake)!r})",
        "open('/usr/pwned', 'w').write('x')",
        f"import os\nos.remove({str(lake / '_delta_log' / '0.json')!r})",
    ):
        assert_contained(attack(body))
    assert not outside.exists() and not os.path.exists("/usr/pwned")
    assert (lake / "_delta_log" / "0.json").read_text() == "{}"
    # Inside its own directory an answer may write: that is the throwaway tmpfs.
    assert attack("open('scratch.txt', 'w').write('x')").status == "passed"


def test_no_network_even_to_the_hosts_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def listen():
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not accepted:
            try:
                accepted.append(server.accept())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        result = attack(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)")
        outside = attack("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)")
    finally:
        listener.join()
        server.close()
    assert_contained(result)
    assert_contained(outside)
    assert not accepted


def test_signals_cannot_reach_the_host():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for body in (
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
            f"import os, signal\nos.kill({sleeper.pid}, signal.SIGKILL)",
            "import os, signal\nos.kill(-1, signal.SIGKILL)",
        ):
            attack(body)
        assert sleeper.poll() is None  # alive: pids outside the sandbox are not even visible
    finally:
        sleeper.kill()
        sleeper.wait()


def test_filling_the_disk_or_the_output_is_bounded():
    assert_contained(attack("open('big', 'wb').write(b'x' * (200 * 1024 * 1024))"))
    flooded = attack("import sys\nfor _ in range(10 ** 5):\n    sys.__stdout__.write('x' * 10000)\nassert False")
    assert_contained(flooded)


def test_exiting_early_or_forging_nothing_still_fails():
    assert_contained(attack("import sys\nsys.exit(0)"))
    assert_contained(attack("import os\nos._exit(0)"))


def test_runs_are_isolated_from_each_other_in_parallel():
    results = []

    def one(index):
        results.append(execute("x", f"def f():\n    return {index % 2}\n", TESTS, "python").status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["failed"] * 3 + ["passed"] * 3


def _processes() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())
