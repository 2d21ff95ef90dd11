"""Files a user keeps: the mode a trainer's loader expects, and nothing left by a killed write."""

import os
import stat
import time

import pytest

from qaq_assets.lib.reports.output_files import STALE_PARTIAL_SECONDS, OutputError, atomic_output


def write(target, text: str) -> None:
    with atomic_output(target) as temporary:
        temporary.write_text(text)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umasks_mode_and_a_rewrite_keeps_the_files(tmp_path):
    previous = os.umask(0o022)
    try:
        target = tmp_path / "train.jsonl"
        write(target, "1\n")
        assert mode(target) == 0o644  # not mkstemp's 0600
        write(target, "2\n")
        assert mode(target) == 0o644 and target.read_text() == "2\n"
        target.chmod(0o640)  # the user's choice survives a re-export
        write(target, "3\n")
        assert mode(target) == 0o640
    finally:
        os.umask(previous)


def test_temporary_files_of_a_killed_write_are_removed_by_the_next(tmp_path):
    target = tmp_path / "train.jsonl"
    stale = tmp_path / ".train.jsonl.abc123.partial"
    stale.write_text("half")
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = tmp_path / ".train.jsonl.def456.partial"  # a writer may still be behind it
    fresh.write_text("in progress")
    other = tmp_path / ".other.jsonl.x.partial"
    other.write_text("not ours")
    os.utime(other, (old, old))
    write(target, "ok\n")
    assert not stale.exists() and fresh.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other.jsonl.x.partial", ".train.jsonl.def456.partial", "train.jsonl"]
    )


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "train.jsonl"
    write(target, "before\n")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "before\n" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(OutputError, match="cannot write"), atomic_output(tmp_path / "train.jsonl" / "x"):
        pass
