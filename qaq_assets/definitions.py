"""Assembles the code location: assets, checks, jobs, sensors, schedules and resources.

Nothing is built at import: Dagster calls :func:`defs` when it loads the code location, so a
bad environment (a stale ``QAQ_MODELS``) fails there with one clear error, never an import of
the command line."""

import os

import dagster as dg

from qaq_assets.defs.automation.jobs import curation_job, ingest_job, scoring_job
from qaq_assets.defs.automation.maintenance import compaction_job, compaction_schedule
from qaq_assets.defs.automation.sensors import automation_sensor, build_landing_sensor, recurate_schedule
from qaq_assets.defs.ingest.assets import build_raw_samples
from qaq_assets.defs.instance_binding import bind_to_lake
from qaq_assets.defs.resources import LakeResource, ProgressResource, ScoringModelsResource
from qaq_assets.defs.run_liveness import pid_recording_executor, reap_dead_runs_sensor
from qaq_assets.defs.scoring.assets import build_scoring_assets
from qaq_assets.defs.selection.assets import build_curated_subset
from qaq_assets.lib.settings import SCORING, Settings
from qaq_assets.lib.store.lake import Lake


def build_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """raw_samples -> token_logprobs -> qaq_scores -> curated_subset, for the configured models."""
    model_keys = [spec.key for spec in settings.model_specs]
    return [
        build_raw_samples(settings),
        *build_scoring_assets(model_keys, settings.scoring_op_tags),
        build_curated_subset(settings),
    ]


def build_resources(settings: Settings, progress_bar: bool = False) -> dict[str, dg.ConfigurableResource]:
    return {
        # Storage options travel in the environment (QAQ_STORAGE_OPTIONS), never in resource config.
        "lake": LakeResource(root=settings.lake),
        "models": ScoringModelsResource(**settings.group(SCORING)),
        "progress": ProgressResource(terminal=progress_bar),
    }


def build_definitions(settings: Settings, progress_bar: bool = False) -> dg.Definitions:
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[ingest_job, scoring_job, curation_job, compaction_job],
        sensors=[build_landing_sensor(settings.landing_dir), automation_sensor, reap_dead_runs_sensor],
        schedules=[recurate_schedule, compaction_schedule],
        resources=build_resources(settings, progress_bar),
        # Runs the UI, sensors and schedules launch record their worker's process at once.
        executor=pid_recording_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location the UI and daemon load, configured from the environment (QAQ_*). It
    refuses to load on an instance that belongs to another lake."""
    settings = Settings.from_env()
    if os.environ.get("DAGSTER_HOME"):
        bind_to_lake(dg.DagsterInstance.get(), Lake(settings.lake).root)
    return build_definitions(settings)
