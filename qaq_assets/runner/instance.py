"""The Dagster instance a command uses: ``DAGSTER_HOME``'s, created once even when raced.

Two processes creating one instance's storage at the same moment (two first commands, or a
command and ``qaq ui``) leave its SQLite schemas with two alembic heads, and every later command
and the UI fail for good. Opening an instance, and the first touch of each of its storages
(where their schemas are created or migrated), therefore happen under an exclusive lock in
``DAGSTER_HOME``."""

from __future__ import annotations

import fcntl
import os

import dagster as dg

from qaq_assets.lib.errors import QaqError

LOCK_FILE = ".qaq-instance.lock"


class InstanceUnusable(QaqError):
    """DAGSTER_HOME cannot be created, locked or written."""


def instance_for_cli() -> dg.DagsterInstance:
    """The persistent instance under ``DAGSTER_HOME`` (shared with the UI; created when it does
    not exist yet), else an ephemeral one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    return open_instance(home)


def open_instance(home: str) -> dg.DagsterInstance:
    """``DagsterInstance.get()`` for ``home`` (its ``dagster.yaml`` honoured), with every storage
    created under the lock."""
    try:
        os.makedirs(home, exist_ok=True)
        lock = open(os.path.join(home, LOCK_FILE), "a")  # noqa: SIM115 (held across the block below)
    except OSError as error:
        raise InstanceUnusable(f"DAGSTER_HOME {home} cannot be used: {error.strerror or error}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        # Each storage creates or migrates its schema on its first query.
        instance.get_runs(limit=1)
        instance.event_log_storage.get_concurrency_keys()
        instance.all_instigator_state()
    return instance
