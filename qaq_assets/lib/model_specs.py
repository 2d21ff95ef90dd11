"""Model specs as the settings name them (``KEY=SPEC`` or ``SPEC``), parsed without torch.

The bottom of the tree: settings, Dagster resources, the command line and the scoring engine
all take their model specs from :func:`parse_model_specs`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qaq_assets.lib.errors import QaqError

BUNDLED_ALIASES = ("smollm2-135m", "bundled", "default")
DEFAULT_MODEL_SPEC = "smollm2-135m"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelSpecError(QaqError, ValueError):
    """A model spec whose key is malformed, or two specs under one key."""


@dataclass(frozen=True)
class ModelSpec:
    key: str  # the model's partition key
    spec: str  # what to load (see lib/scoring/engine/models.py)

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        key, sep, spec = text.partition("=")
        if not sep:
            key, spec = default_key(text), text
        key, spec = key.strip(), spec.strip()
        if not _KEY.fullmatch(key):
            raise ModelSpecError(f"model key {key!r} must be 1-64 of [A-Za-z0-9._-]")
        if not spec:
            raise ModelSpecError(f"model {key!r} names no model: give KEY=SPEC")
        return cls(key=key, spec=spec)


def default_key(spec: str) -> str:
    """The partition key of a spec given without ``KEY=``: the bundled alias, or its file's stem."""
    if spec in BUNDLED_ALIASES:
        return DEFAULT_MODEL_SPEC
    stem = Path(spec.removeprefix("hf:")).name or spec
    stem = re.sub(r"\.gguf$", "", stem)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64] or "model"


def parse_model_specs(texts) -> list[ModelSpec]:
    """Every spec of ``texts`` (strong first), their keys distinct."""
    specs = [ModelSpec.parse(text) for text in texts]
    keys = [spec.key for spec in specs]
    if len(set(keys)) != len(keys):
        raise ModelSpecError(f"model keys must be distinct, got {keys}; name them with KEY=SPEC")
    return specs
