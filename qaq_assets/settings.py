"""Deployment settings read from the environment (the UI's code location) or set by the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from qaq_assets.lib.lake import storage_options_from_env
from qaq_assets.lib.models import DEFAULT_MODEL_SPEC, ModelSpec


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """``QAQ_LAKE``: lake directory or URI; ``QAQ_MODELS``: comma-separated model specs
    (strong first); ``QAQ_LANDING_DIR``: directory the sensor watches; ``QAQ_TEMPLATE``,
    ``QAQ_DEVICE``, ``QAQ_DTYPE``, ``QAQ_FORWARD`` (fused, fused-eager or reference), ``QAQ_BACKEND``
    (local or ray), ``QAQ_RAY_ADDRESS``: scoring settings;
    ``QAQ_STORAGE_OPTIONS``: deltalake storage options as JSON (object stores);
    ``QAQ_SCORING_OP_TAGS``: op tags of the scoring step as JSON (GPU placement)."""

    lake: str = "lake"
    models: tuple[str, ...] = (DEFAULT_MODEL_SPEC,)
    landing_dir: str = "data/incoming"
    template: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    forward: str = "fused"
    batch_tokens: int = 4096
    commit_every: int = 256
    progress_bar: bool = False
    # How long `qaq curate` waits for a slot of the gpu pool held by other live runs.
    pool_wait_seconds: float = 600.0
    backend: str = "local"
    ray_address: str = ""
    ray_replicas: int = 0
    storage_options: dict[str, str] = field(default_factory=dict)
    # Op tags of the scoring step, e.g. {"dagster-k8s/config": {...}} to request a GPU pod.
    scoring_op_tags: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            lake=env.get("QAQ_LAKE", cls.lake),
            models=_split(env.get("QAQ_MODELS", "")) or cls.models,
            landing_dir=env.get("QAQ_LANDING_DIR", cls.landing_dir),
            template=env.get("QAQ_TEMPLATE", cls.template),
            device=env.get("QAQ_DEVICE", cls.device),
            dtype=env.get("QAQ_DTYPE", cls.dtype),
            forward=env.get("QAQ_FORWARD", cls.forward),
            backend=env.get("QAQ_BACKEND", cls.backend),
            ray_address=env.get("QAQ_RAY_ADDRESS", cls.ray_address),
            storage_options=storage_options_from_env(),
            scoring_op_tags=json.loads(env.get("QAQ_SCORING_OP_TAGS", "{}")),
        )

    @property
    def model_specs(self) -> list[ModelSpec]:
        specs = [ModelSpec.parse(text) for text in self.models]
        keys = [spec.key for spec in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"model keys must be distinct, got {keys}; name them with KEY=SPEC")
        return specs
