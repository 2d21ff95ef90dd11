"""Whether a process lives, and which processes carry a marker in their environment."""

from __future__ import annotations

import os
import signal


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def processes_with(variable: str, value: str) -> list[int]:
    """The processes whose environment holds ``variable=value`` (inherited by everything they
    start, whatever they retitle themselves), this one excepted."""
    marker = f"{variable}={value}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if marker in environ.read() + b"\0":
                    found.append(int(entry))
        except OSError:
            continue  # gone meanwhile, or another user's
    return found


def kill_processes_with(variable: str, value: str) -> list[int]:
    """SIGKILL every process whose environment holds ``variable=value`` (this one excepted), as
    when its machine dies; returns their pids (some may have ended meanwhile)."""
    found = processes_with(variable, value)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found
