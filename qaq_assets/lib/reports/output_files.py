"""Files a user keeps (exports, reports) are written whole or not at all.

Each is written to a temporary file beside its target and renamed over it only once
complete: a full disk or a crash mid-write leaves the previous file as it was, and no
half-written file under the target's name. The file gets the mode the previous one had (else
what the user's umask gives), and temporary files left by a killed write are removed by the next."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from qaq_assets.lib.store.faults import StorageFault


class OutputError(StorageFault):
    """An output file that could not be written; the previous one is untouched."""


# A temporary file of an export killed mid-write: unmodified this long, no writer is behind it.
STALE_PARTIAL_SECONDS = 600.0


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _mode_for(target: Path) -> int:
    """The mode the new file takes: the previous file's, else what the user's umask gives a new file."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _remove_stale_partials(target: Path) -> None:
    """Temporary files of earlier writes of ``target`` that were killed (no writer touched them
    for STALE_PARTIAL_SECONDS)."""
    now = time.time()
    for partial in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
        with contextlib.suppress(OSError):
            if now - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
                partial.unlink()


@contextlib.contextmanager
def atomic_output(target: str | Path) -> Iterator[Path]:
    """A temporary path to write ``target``'s new content to; renamed over ``target`` when the
    block ends without error, removed otherwise (an OSError becomes one line naming the file)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        os.close(handle)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # on disk before it takes the target's name
        os.chmod(temporary, _mode_for(target))  # mkstemp's 0600 is not what a user's file has
        os.replace(temporary, target)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}; the previous file is untouched") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
