"""A Ray instance on this machine alone: on loopback, and gone when its driver is.

Ray has no authentication: whoever reaches its ports runs code as the pipeline user. A local
instance started the default way listens on every interface, and its workers and agents
outlive a killed driver by a minute or more, still listening. Here every server binds
loopback, there is no dashboard, and a watchdog kills every process of the instance as soon as
the driver is gone, whatever killed it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from qaq_assets.lib.processes import kill_processes_with, process_alive, processes_with

LOOPBACK = "127.0.0.1"
# Ray resolves a loopback node address to the machine's external one unless it believes it runs a
# single-machine instance (its Windows and macOS default), which this setting declares.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTANCE_ENV = "QAQ_RAY_INSTANCE"
WATCH_SECONDS = 0.2


class LocalRayUnsafe(RuntimeError):
    """The local Ray instance did not bind loopback."""


def init_local_ray(**init_options) -> str:
    """``ray.init`` a new local instance bound to loopback and watched; returns its directory
    (every process of the instance names it on its command line)."""
    os.environ[SINGLE_MACHINE_ENV] = "0"
    import ray
    from ray._private import ray_constants  # read once at import: ray may be imported already

    ray_constants.ENABLE_RAY_CLUSTER = False
    # Short: Ray's socket paths under it must fit a Unix socket name.
    directory = tempfile.mkdtemp(prefix="qaq-ray-", dir="/tmp")
    # Every process of the instance inherits it (Ray retitles its agents, so their command line
    # does not name the directory): the watchdog finds them by it.
    os.environ[INSTANCE_ENV] = directory
    try:
        ray.init(
            _node_ip_address=LOOPBACK,
            _temp_dir=directory,
            include_dashboard=False,
            log_to_driver=False,
            **init_options,
        )
    finally:
        del os.environ[INSTANCE_ENV]
    node_address = ray.util.get_node_ip_address()
    if node_address != LOOPBACK:
        ray.shutdown()
        raise LocalRayUnsafe(f"the local Ray instance bound {node_address}, not {LOOPBACK}: refusing to score on it")
    subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), directory],
        start_new_session=True,  # a signal to the driver's group must not end the watchdog first
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return directory


def processes_of(directory: str) -> list[int]:
    """The processes of the local instance in ``directory``, this one excepted."""
    return processes_with(INSTANCE_ENV, directory)


def watch(driver: int, directory: str) -> None:
    """Wait for ``driver`` to end, then kill every process of the instance in ``directory``."""
    while process_alive(driver):
        time.sleep(WATCH_SECONDS)
    # Again for a second: a worker the raylet was starting as the driver died.
    for _ in range(5):
        kill_processes_with(INSTANCE_ENV, directory)
        time.sleep(WATCH_SECONDS)
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
