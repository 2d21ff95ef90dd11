"""Sensors and schedules: land a file, and the graph scores and re-curates by itself."""

import json
import time
from pathlib import Path

import dagster as dg

from qaq_assets.defs.automation.jobs import curation_job, ingest_job
from qaq_assets.defs.partitions import shard_partitions
from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.landing import settled_files
from qaq_assets.lib.shards import register_files, registered_sources, shard_name


def build_landing_sensor(landing_dir: str, settle_seconds: float = 10.0) -> dg.SensorDefinition:
    @dg.sensor(
        job=ingest_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Registers settled files in {landing_dir} as shards and ingests them.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        state = json.loads(context.cursor) if context.cursor else {}
        ready, observed = settled_files(Path(landing_dir), state.get("observed", {}), time.time_ns(), settle_seconds)
        store = lake.lake()
        known = {
            row["path"]: (row["size_bytes"], row["mtime_ns"])
            for row in registered_sources(store).select("path", "size_bytes", "mtime_ns").iter_rows(named=True)
        }
        # ``observed`` holds each file's (size, mtime) from this look: no second stat.
        new = [path for path in ready if known.get(str(path.resolve())) != tuple(observed[str(path)])]
        shards = register_files(store, new) if new else []
        requests = [
            dg.RunRequest(
                partition_key=shard_name(path), run_key=":".join(map(str, [shard_name(path), *observed[str(path)]]))
            )
            for path in new
        ]
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[shard_partitions.build_add_request(shards)] if shards else [],
            cursor=json.dumps({"observed": observed}),
        )

    return landing_sensor


automation_sensor = dg.AutomationConditionSensorDefinition(
    "qaq_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Scores newly ingested shards and re-curates when scores change.",
)

recurate_schedule = dg.ScheduleDefinition(
    name="recurate_nightly",
    job=curation_job,
    cron_schedule="0 3 * * *",
    description="Re-curate every night over all scored shards (a new curated_subset version).",
)
