"""Run untrusted code in a sandbox: bubblewrap namespaces, rlimits, a throwaway in-memory directory.

What the code sees and may do:
- **no network**: a new network namespace (only a loopback that is down);
- **no other processes**: a new PID namespace; killing the parent kills everything inside;
- **nothing of the host's files but the toolchains**: read-only binds of ``/usr``, ``/lib*``,
  ``/bin`` and each toolchain's own directory (never ``/etc``, ``/home``, ``/root``, the lake);
  the working directory is a size-capped tmpfs holding only the files given; ``/tmp`` likewise;
- **limits**: CPU seconds, address space, processes (threads count), file size, open files, no
  core dumps, a wall-clock deadline after which the whole namespace is killed;
- **no secrets**: an empty environment but ``PATH``, ``HOME``, ``TMPDIR`` and ``LANG``;
- **no privilege**: run as root, the code runs as a fresh unprivileged uid (per run, so one run's
  processes never count against another's limit) with every capability dropped and
  ``no_new_privs``; run as a user, bubblewrap's user namespace maps it to that user.

Requires ``bwrap`` (Debian package ``bubblewrap``; ``make setup`` installs it where it can) and
util-linux's ``prlimit`` and ``setpriv``. :func:`unavailable` says why not where they are missing:
code is then never run, and callers record ``not_run``.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

# Host directories every toolchain needs, bound read-only where they exist.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Files of /etc that dynamic linking and the alternatives system read; nothing with secrets.
SYSTEM_ETC = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/ssl/openssl.cnf")
WORKDIR = "/sandbox"
# Fresh uids for sandboxed runs started as root: far above any login or system account.
_UID_BASE, _UID_SPAN = 1_000_000, 1_000_000


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30  # address space (RLIMIT_AS)
    processes: int = 64  # tasks of the run's uid: threads count
    file_bytes: int = 16 << 20  # largest file written, stdout and stderr included
    open_files: int = 256
    disk_bytes: int = 64 << 20  # the working directory's and /tmp's tmpfs each
    output_bytes: int = 64 << 10  # what is read back of stdout and stderr each


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed at the wall-clock deadline
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def signal_name(self) -> str | None:
        """The signal that ended the command (SIGKILL, SIGXCPU, ...), if one did."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run on this machine (a tool is missing or namespaces are refused)."""


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why code cannot be run in the sandbox here, or None when it can (checked once: a trivial
    command must run inside)."""
    missing = [tool for tool in ("bwrap", "prlimit", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"no sandbox: {', '.join(missing)} not installed (Debian: apt-get install bubblewrap util-linux)"
    try:
        outcome = run(["/bin/true"], {}, Limits(wall_seconds=20))
    except OSError as error:
        return f"no sandbox: {error}"
    if outcome.returncode != 0:
        return f"no sandbox: bwrap failed ({outcome.stderr.strip()[:200] or outcome.returncode})"
    return None


def _binds(paths: tuple[str, ...]) -> list[str]:
    """Read-only binds of the paths that exist, their parent directories made first (traversable:
    bwrap would make them private to root)."""
    args, made, bound = [], set(), []
    for path in dict.fromkeys(paths):
        if not os.path.exists(path) or any(path.startswith(root + "/") for root in bound):
            continue  # missing, or visible already through a bound directory above it
        bound.append(path)
        parent = os.path.dirname(path)
        ancestors = []
        while parent not in ("/", "") and parent not in made:
            ancestors.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(ancestors):
            args += ["--perms", "0755", "--dir", directory]
            made.add(directory)
        args += ["--ro-bind", path, path]
    return args


def command_line(argv: list[str], files: dict[str, int], limits: Limits, toolchain_dirs: tuple[str, ...]) -> list[str]:
    """The full command: prlimit, then bwrap, then (as root) setpriv to a fresh uid, then ``argv``.
    ``files`` maps a name in the working directory to an open descriptor bwrap copies it from."""
    as_root = os.geteuid() == 0
    command = [
        "prlimit",
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.processes}" if as_root else f"--nproc={limits.processes + _user_tasks()}",
        f"--fsize={limits.file_bytes}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
        "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
    ]
    if not as_root:
        command += ["--unshare-user", "--disable-userns"]
    command += _binds(SYSTEM_DIRS + SYSTEM_ETC + toolchain_dirs)
    command += ["--proc", "/proc", "--dev", "/dev"]
    command += ["--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    command += ["--perms", "1777", "--size", str(limits.disk_bytes), "--tmpfs", WORKDIR]
    for name, descriptor in files.items():
        command += ["--perms", "0644", "--file", str(descriptor), f"{WORKDIR}/{name}"]
    command += ["--chdir", WORKDIR, "--clearenv"]
    for key, value in (
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", WORKDIR),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
    ):
        command += ["--setenv", key, value]
    if as_root:
        uid = str(_UID_BASE + secrets.randbelow(_UID_SPAN))
        command += [
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--",
            "setpriv",
            "--reuid",
            uid,
            "--regid",
            uid,
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]
    return [*command, "--", *argv]


def _user_tasks() -> int:
    """Tasks the calling user runs already (RLIMIT_NPROC counts them all, outside a fresh uid)."""
    try:
        uid = os.getuid()
        return sum(
            int(entry) > 0 and os.stat(f"/proc/{entry}").st_uid == uid and len(os.listdir(f"/proc/{entry}/task"))
            for entry in os.listdir("/proc")
            if entry.isdigit()
        )
    except OSError:
        return 1024


def run(
    argv: list[str],
    files: dict[str, str | bytes],
    limits: Limits = Limits(),
    toolchain_dirs: tuple[str, ...] = (),
) -> Outcome:
    """Run ``argv`` in a new sandbox whose working directory holds ``files`` (name -> content)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qaq-sandbox-") as host:
        descriptors = {}
        try:
            for name, content in files.items():
                data = content.encode("utf-8") if isinstance(content, str) else content
                handle = tempfile.TemporaryFile(dir=host)
                handle.write(data)
                handle.seek(0)
                descriptors[name] = handle
            stdout_path, stderr_path = os.path.join(host, "stdout"), os.path.join(host, "stderr")
            with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
                process = subprocess.Popen(
                    command_line(argv, {n: h.fileno() for n, h in descriptors.items()}, limits, toolchain_dirs),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=[h.fileno() for h in descriptors.values()],
                    start_new_session=True,  # one process group: the deadline kills all of it
                )
                timed_out = False
                try:
                    returncode = process.wait(timeout=limits.wall_seconds)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill(process)
                    returncode = None
        finally:
            for handle in descriptors.values():
                handle.close()
        return Outcome(
            returncode=returncode,
            stdout=_head(stdout_path, limits.output_bytes),
            stderr=_head(stderr_path, limits.output_bytes),
            timed_out=timed_out,
            seconds=time.monotonic() - started,
        )


def _kill(process: subprocess.Popen) -> None:
    # bwrap's child is PID 1 of the sandbox's namespace and dies with bwrap (--die-with-parent);
    # when PID 1 dies the kernel kills every process left inside.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _head(path: str, limit: int) -> str:
    with open(path, "rb") as handle:
        return handle.read(limit).decode("utf-8", errors="replace")
