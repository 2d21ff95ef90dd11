"""The toolchains answers run on, found on this machine: what each binds into the sandbox and the
commands that build and run a program.

Python runs on this interpreter's base installation (``-I``: not the project's virtualenv); JavaScript on
``node``; Rust is compiled by ``rustc`` and run; Java compiled by ``javac`` and run by ``java``.
A language whose toolchain is missing is reported, never guessed at: its answers are
``not_run``.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from qaq_assets.lib.ingest.execution.sandbox import Limits


@dataclass(frozen=True)
class Toolchain:
    language: str
    binds: tuple[str, ...]  # host directories bound read-only
    compile: tuple[str, ...] | None  # a build step, where the language has one
    run: tuple[str, ...]  # the program's command; MARKER and SECONDS are appended
    limits: Limits  # the run's limits (the build's: BUILD_LIMITS)


# Compilers are bigger than programs: more memory, threads and time.
BUILD_LIMITS = Limits(
    wall_seconds=60, cpu_seconds=60, memory_bytes=4 << 30, processes=256, file_bytes=256 << 20, disk_bytes=512 << 20
)
# V8 and the JVM reserve address space far beyond what they use: their heap flags bound memory.
RUNTIME_LIMITS = Limits(memory_bytes=8 << 30, processes=128)


def _outside_usr(path: str) -> tuple[str, ...]:
    """The installation directory of a binary that does not live under /usr (which is bound anyway)."""
    real = os.path.realpath(path)
    return () if real.startswith("/usr/") else (os.path.dirname(os.path.dirname(real)),)


@functools.lru_cache(maxsize=1)
def _python() -> Toolchain | None:
    prefix = os.path.realpath(sys.base_prefix)
    interpreter = os.path.join(prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
    if not os.path.exists(interpreter):
        return None
    binds = () if prefix.startswith("/usr") else (prefix,)
    return Toolchain("python", binds, None, (interpreter, "-I", "-B", "harness.py"), Limits())


@functools.lru_cache(maxsize=1)
def _javascript() -> Toolchain | None:
    node = shutil.which("node")
    if node is None:
        return None
    return Toolchain(
        "javascript",
        _outside_usr(node),
        None,
        (os.path.realpath(node), "--max-old-space-size=512", "--stack-size=2000", "harness.js"),
        RUNTIME_LIMITS,
    )


@functools.lru_cache(maxsize=1)
def _rust() -> Toolchain | None:
    if shutil.which("rustc") is None or shutil.which("cc") is None:
        return None
    try:
        sysroot = subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    rustc = os.path.join(sysroot, "bin", "rustc")
    if not os.path.exists(rustc):
        return None
    return Toolchain(
        "rust",
        (sysroot,),
        (rustc, "--edition", "2021", "-C", "debuginfo=0", "-o", "program", "main.rs"),
        ("./program",),
        Limits(),
    )


@functools.lru_cache(maxsize=1)
def _java() -> Toolchain | None:
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        return None
    jvm = (
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:CICompilerCount=1",
        "-Xss4m",
        "-XX:ReservedCodeCacheSize=32m",
        "-Xshare:auto",
    )
    binds = (*_outside_usr(javac), *_outside_usr(java), *glob.glob("/etc/java-*"))
    return Toolchain(
        "java",
        binds,
        (
            os.path.realpath(javac),
            *(f"-J{flag}" for flag in jvm),
            "-J-Xmx256m",
            "-nowarn",
            "-encoding",
            "UTF-8",
            "Main.java",
        ),
        (os.path.realpath(java), *jvm, "-Xmx256m", "-ea", "Main"),
        RUNTIME_LIMITS,
    )


# Languages answers are run in where their toolchain is present (Go would need `go` and an entry here).
FINDERS = {"python": _python, "javascript": _javascript, "rust": _rust, "java": _java}


def toolchain(language: str) -> Toolchain | None:
    """This machine's toolchain for ``language``, or None where it has none."""
    finder = FINDERS.get(language)
    return finder() if finder else None
