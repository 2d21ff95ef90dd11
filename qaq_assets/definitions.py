"""Assembles the code location: assets, checks, jobs, sensors, schedules and resources."""

import dagster as dg

from qaq_assets.defs.automation.jobs import curation_job, ingest_job, scoring_job
from qaq_assets.defs.automation.sensors import automation_sensor, build_landing_sensor, recurate_schedule
from qaq_assets.defs.ingest.assets import raw_samples
from qaq_assets.defs.resources import LakeResource, ProgressResource, ScoringModelsResource
from qaq_assets.defs.scoring.assets import build_scoring_assets
from qaq_assets.defs.selection.assets import curated_subset
from qaq_assets.settings import Settings


def build_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """raw_samples -> token_logprobs -> qaq_scores -> curated_subset, for the configured models."""
    model_keys = [spec.key for spec in settings.model_specs]
    return [raw_samples, *build_scoring_assets(model_keys, settings.scoring_op_tags), curated_subset]


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        # Storage options travel in the environment (QAQ_STORAGE_OPTIONS), never in resource config.
        "lake": LakeResource(root=settings.lake),
        "models": ScoringModelsResource(
            models=list(settings.models),
            template=settings.template,
            device=settings.device,
            dtype=settings.dtype,
            forward=settings.forward,
            batch_tokens=settings.batch_tokens,
            commit_every=settings.commit_every,
            backend=settings.backend,
            ray_address=settings.ray_address,
            ray_replicas=settings.ray_replicas,
        ),
        "progress": ProgressResource(terminal_bar=settings.progress_bar),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[ingest_job, scoring_job, curation_job],
        sensors=[build_landing_sensor(settings.landing_dir), automation_sensor],
        schedules=[recurate_schedule],
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
