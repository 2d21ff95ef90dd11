"""Files a user keeps (exports, reports) are written whole or not at all.

Each is written to a temporary file beside its target and renamed over it only once
complete: a full disk or a crash mid-write leaves the previous file as it was, and no
half-written file under the target's name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from qaq_assets.lib.store.faults import StorageFault


class OutputError(StorageFault):
    """An output file that could not be written; the previous one is untouched."""


@contextlib.contextmanager
def atomic_output(target: str | Path) -> Iterator[Path]:
    """A temporary path to write ``target``'s new content to; renamed over ``target`` when the
    block ends without error, removed otherwise (an OSError becomes one line naming the file)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        os.close(handle)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # on disk before it takes the target's name
        os.replace(temporary, target)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}; the previous file is untouched") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
