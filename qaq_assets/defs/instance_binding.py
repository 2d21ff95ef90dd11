"""One lake, one Dagster instance.

A Dagster instance (``DAGSTER_HOME``) records partitions, materializations and automation
state. Shared between lakes, the UI would show one lake's shards as another's and automation
would act on partitions a lake does not have. So an instance belongs to the first lake that
uses it (recorded in its key-value store), and every run, sensor tick and code-location load
on another lake is refused with one line naming both."""

from __future__ import annotations

import dagster as dg

from qaq_assets.lib.errors import QaqError

LAKE_KEY = "qaq/lake"


class InstanceLakeMismatch(QaqError):
    """A Dagster instance that already belongs to another lake."""


def bind_to_lake(instance: dg.DagsterInstance | None, lake_uri: str) -> None:
    """Bind ``instance`` to ``lake_uri`` on first use; refuse when it belongs to another lake.
    Ephemeral instances (tests, a CLI run without DAGSTER_HOME) hold nothing to confuse."""
    if instance is None or instance.is_ephemeral:
        return
    bound = instance.run_storage.get_cursor_values({LAKE_KEY}).get(LAKE_KEY)
    if bound is None:
        instance.run_storage.set_cursor_values({LAKE_KEY: lake_uri})
    elif bound != lake_uri:
        raise InstanceLakeMismatch(
            f"the Dagster instance in {instance.root_directory} belongs to lake {bound}, not {lake_uri}: "
            "use one DAGSTER_HOME per lake (e.g. DAGSTER_HOME=<lake>/.dagster_home), or --lake "
            f"{bound} (QAQ_LAKE)"
        )
