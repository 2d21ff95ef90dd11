"""Storage faults as one line a user can act on: which table or file, what happened, and
where data is intact, how to read it.

Delta, polars and the OS report a full disk, a read-only lake, a truncated commit or a
missing data file in many shapes (``OSError: Generic LocalFileSystem error ... (os error 28)``,
``Kernel error: ... Truncated record``, a Rust panic); :func:`describe_fault` reads them all.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

from qaq_assets.lib.errors import QaqError

_OS_ERROR = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")
_LOG_FILE = re.compile(r"([A-Za-z0-9_.-]+)/_delta_log/(\d{20})\.json")
_DATA_FILE = re.compile(r"([A-Za-z0-9_.-]+)/(?:[^/\s\"']+=[^/\s\"']*/)*(part-[^/\s\"'#]+\.parquet)")
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EDQUOT: "disk quota exceeded",
}
# A Delta commit file that cannot be parsed (cut short by a crash or a full disk).
_CORRUPT_COMMIT = ("Json error", "Truncated record", "EOF while parsing", "Invalid JSON", "expected value")


class StorageFault(QaqError):
    """A lake or disk fault, described in one line."""


def _os_cause(message: str, error_number: int | None) -> str | None:
    numbers = [error_number] if error_number else []
    numbers += [int(a or b) for a, b in _OS_ERROR.findall(message)]
    for number in numbers:
        if number in _CAUSES:
            return _CAUSES[number]
    lowered = message.lower()
    if "no space left" in lowered or "database or disk is full" in lowered:
        return _CAUSES[errno.ENOSPC]
    if "read-only file system" in lowered:
        return _CAUSES[errno.EROFS]
    return None


def describe_fault(
    type_name: str, message: str, error_number: int | None = None, root: str | None = None
) -> str | None:
    """One line for a storage fault (by the error's type name and message), or None when the
    error is not one. ``root`` (the lake) lets a vague failure be checked against the disk."""
    first = message.strip().splitlines()[0] if message.strip() else type_name
    cause = _os_cause(message, error_number)
    log_file, data_file = _LOG_FILE.search(message), _DATA_FILE.search(message)
    where = ""
    if data_file:
        where = f"{data_file.group(1)}: data file {data_file.group(2)}: "
    elif log_file:
        where = f"{log_file.group(1)}: commit {log_file.group(2)}.json: "
    if cause is not None:
        return f"{where}{cause}"
    if "found gap" in message and log_file:
        table, version = log_file.group(1), int(log_file.group(2))
        return f"{table}: the commit log has a gap after version {version} (a commit file is missing)"
    if log_file and any(marker in message for marker in _CORRUPT_COMMIT):
        return f"{where}the commit is truncated or corrupt"
    if any(marker in message for marker in _CORRUPT_COMMIT) and "Kernel error" in message:
        return "a commit in _delta_log is truncated or corrupt"
    if data_file and ("No such file" in message or "not found" in message):
        return f"{where}missing (deleted, or removed by a vacuum): this version cannot be read"
    if type_name == "PanicException" or "Already shut down" in message:
        return f"the storage layer stopped ({first}){_disk_hint(root)}"
    return None


def _disk_hint(root: str | None) -> str:
    """What the disk under a local lake says: full, or not writable."""
    if not root or "://" in root:
        return ""
    existing = root
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not existing:
        return ""
    if shutil.disk_usage(existing).free < 1 << 20:
        return f": no space left on device under {existing}"
    if not os.access(existing, os.W_OK):
        return f": {existing} is not writable"
    return ""


def fault_of(error: BaseException, root: str | None = None) -> StorageFault | None:
    """``error`` as a :class:`StorageFault`, or None when it is no storage fault."""
    described = describe_fault(type(error).__name__, str(error), getattr(error, "errno", None), root)
    return StorageFault(described) if described else None
