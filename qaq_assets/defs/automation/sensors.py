"""Sensors and schedules: land a file, and the graph scores and re-curates by itself."""

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from qaq_assets.defs.automation.jobs import curation_job, ingest_job
from qaq_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, SHARDS, shard_partitions
from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.batches import MAX_BATCH_BYTES, MAX_BATCH_SHARDS, batches
from qaq_assets.lib.ingest.dataset_folders import shortfalls
from qaq_assets.lib.ingest.landing import settled_files
from qaq_assets.lib.ingest.registry import named_files, register, registered_sources


def build_landing_sensor(landing_dir: str, settle_seconds: float = 10.0) -> dg.SensorDefinition:
    @dg.sensor(
        job=ingest_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Registers settled files under {landing_dir} as shards (key: the path relative to it, "
            "folders joined by __) and ingests them. A file whose key belongs to another source is skipped."
        ),
    )
    def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        state = json.loads(context.cursor) if context.cursor else {}
        root = Path(landing_dir)
        ready, observed = settled_files(root, state.get("observed", {}), time.time_ns(), settle_seconds)
        store = lake.lake()
        known = {
            row["path"]: (row["size_bytes"], row["mtime_ns"])
            for row in registered_sources(store).select("path", "size_bytes", "mtime_ns").iter_rows(named=True)
        }
        # ``observed`` holds each file's (size, mtime) from this look: no second stat.
        new = [path for path in ready if known.get(str(path.resolve())) != tuple(observed[str(path)])]
        files, unnamed = named_files(new, root)  # a file whose name yields no key fails alone
        registration = register(store, list(files))
        registration.failures |= unnamed | shortfalls([file.path for file in files])
        for cause in registration.failures.values():
            context.log.warning(f"skipped: {cause}")
        signatures = {
            file.shard: observed[str(path)] for file, path in files.items() if file.shard in registration.shards
        }
        known = context.instance.get_dynamic_partitions(SHARDS)
        order = known + [shard for shard in registration.shards if shard not in set(known)]
        # One run for every batch of consecutive shards (thousands of landed files, a few runs).
        requests = [
            batch_request(batch, signatures)
            for batch in batches(order, registration.shards, {}, MAX_BATCH_SHARDS, MAX_BATCH_BYTES)
        ]
        skipped = "; ".join(registration.failures.values())
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=(
                [shard_partitions.build_add_request(registration.shards)] if registration.shards else []
            ),
            cursor=json.dumps({"observed": observed}),
            # Shown on the sensor's tick in the UI (a skip reason goes only with no run request).
            skip_reason=f"skipped {len(registration.failures)} file(s): {skipped}"
            if skipped and not requests
            else None,
        )

    return landing_sensor


def batch_request(shards: list[str], signatures: dict[str, list[int]]) -> dg.RunRequest:
    """A run ingesting ``shards`` (consecutive partitions), keyed by their files' sizes and
    mtimes: the same files never run twice, a re-landed changed file runs again."""
    seen = "|".join(f"{shard}:{size}:{mtime}" for shard in shards for size, mtime in [signatures[shard]])
    run_key = seen if len(shards) == 1 else hashlib.sha256(seen.encode()).hexdigest()
    if len(shards) == 1:
        return dg.RunRequest(partition_key=shards[0], run_key=run_key)
    return dg.RunRequest(run_key=run_key, tags={RANGE_START_TAG: shards[0], RANGE_END_TAG: shards[-1]})


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
