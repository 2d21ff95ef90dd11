"""What a user sees while qaq curate runs: each stage's progress, without --verbose, on a terminal
(a live line) and through a pipe (plain lines), and nothing of the libraries' own logs."""

import os
import pty
import subprocess
import sys
import time

import pytest

from qaq_assets.lib.progress import TerminalProgress
from qaq_assets_tests.helpers import CODE_PAIRS, TINY_FLAGS, write_jsonl


def _command(tmp_path):
    shards = [
        write_jsonl(tmp_path / f"s{i}.jsonl", [{"instruction": f"{i} {q}", "response": a} for q, a in CODE_PAIRS])
        for i in range(3)
    ]
    return [
        sys.executable,
        "-m",
        "qaq_assets.cli",
        "curate",
        *map(str, shards),
        "--lake",
        str(tmp_path / "lake"),
        *TINY_FLAGS,
    ]


def _environment():
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


@pytest.mark.slow  # a real process
def test_through_a_pipe_each_stage_says_where_it_is_in_plain_lines(tmp_path):
    done = subprocess.run(_command(tmp_path), capture_output=True, text=True, env=_environment(), timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("ingest: 0/3 files")
    assert any(line.startswith("ingest: 3/3 files, 36 records read") for line in lines)
    assert any(line.startswith("scoring 3 shards/tiny: 36/36 samples") and "tokens/s" in line for line in lines)
    assert any(line.startswith("curation: done, ") and " of 36 rows kept" in line for line in lines)
    assert not any("Warning" in line or "DEBUG" in line or "Loading" in line for line in lines), lines
    assert "\r" not in done.stderr


@pytest.mark.slow  # a real process
def test_on_a_terminal_the_progress_is_one_live_line_per_stage(tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen(_command(tmp_path), stdout=follower, stderr=follower, env=_environment())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=300) == 0
    text = output.decode(errors="replace")
    assert "\r\x1b[2Kingest: 0/3 files" in text and "\r\x1b[2Kscoring 3 shards/tiny:" in text
    assert "samples_in=36 samples_scored=36" in text


class Sink:
    """A pipe's end: what was written, not a terminal."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return False


def test_the_progress_line_states_done_total_rate_and_eta():
    sink = Sink()
    progress = TerminalProgress(sink, interval=0.0)
    progress.start("ingest", 4, "files")
    progress.update("ingest", 1, "12 records read")
    time.sleep(0.05)
    progress.update("ingest", 2, "24 records read")
    progress.finish("ingest")
    lines = sink.text.splitlines()
    assert lines[0] == "ingest: 0/4 files, 0s elapsed"
    # The first unit's time (a model loading, a first pass compiling) is not taken as the rate.
    assert lines[1] == "ingest: 1/4 files, 12 records read, ETA after the next update, 0s elapsed"
    assert lines[2].startswith("ingest: 2/4 files, 24 records read, ") and "files/s, ETA " in lines[2]
    assert lines[3].startswith("ingest: 4/4 files, ")


def test_a_stage_that_does_not_advance_still_says_so_every_interval():
    sink = Sink()
    progress = TerminalProgress(sink, interval=0.2)
    progress.start("scoring s/m", 100, "samples", "loading the model")

    def shown() -> list[str]:
        return [line for line in sink.text.splitlines() if "0/100 samples, loading the model" in line]

    deadline = time.monotonic() + 60  # the model loads: no update arrives (generous under load)
    while len(shown()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    progress.finish("scoring s/m")
    assert len(shown()) >= 3, sink.text  # the start line and the ticker's redraws
