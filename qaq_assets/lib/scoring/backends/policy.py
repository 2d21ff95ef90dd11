"""Which backend scores a model, and the models a process keeps loaded.

The Dagster resource (``defs/resources.py``) only adapts this to its config: the choice of
where forward passes run (this process, every local GPU, or a Ray cluster), the identity that
keys a model's scores (known from its files, before any weight is loaded), and the per-process
model cache live here, as plain Python."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict

from qaq_assets.lib.model_specs import ModelSpec
from qaq_assets.lib.scoring.backends.device_pool import device_pool
from qaq_assets.lib.scoring.backends.local import (
    DeferredLocalBackend,
    LocalBackend,
    ScorerIdentity,
    ScorerOptions,
    ScoringBackend,
    local_devices,
)
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.scoring.engine.models import LoadedModel, canonical_device, identify, load_model
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.setting_fields import values_of

log = logging.getLogger(__name__)
_MODEL_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_MODEL_CACHE_SIZE = 2
_MODEL_LOCK = threading.Lock()


class UnknownBackend(ValueError):
    """A backend name that is neither local nor ray."""


def cached_model(spec: ModelSpec, device: str, dtype: str) -> LoadedModel:
    """Load a model at most once per process and device: a CLI curating many shards loads it once."""
    device = canonical_device(device)
    key = (spec.spec, device, dtype)
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            _MODEL_CACHE.move_to_end(key)
            loaded = _MODEL_CACHE[key]
        else:
            loaded = load_model(spec, device=device, dtype=dtype)
            _MODEL_CACHE[key] = loaded
            while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
    # The key names the partition; the cached weights may have been loaded under another key.
    return loaded if loaded.spec == spec else dataclasses.replace(loaded, spec=spec)


def scorer_options(config: ScoringConfig) -> ScorerOptions:
    return values_of(ScorerOptions, config)  # each option is the scoring setting of its name


def scorer_identity(config: ScoringConfig, spec: ModelSpec) -> ScorerIdentity | None:
    """What ``spec``'s scores are keyed by, from its files alone (no weights loaded); None for
    hub models, known only once downloaded."""
    identity = identify(spec, config.device, config.dtype)
    if identity is None:
        return None
    return ScorerIdentity(
        model_key=spec.key,
        model_id=identity.model_id,
        weights_sha256=identity.weights_sha256,
        dtype=identity.dtype_name,
        fingerprint=identity.fingerprint,
        template_version=build_layouts(config.template, identity.tokenizer).version,
        max_sequence_tokens=config.max_sequence_tokens,
    )


def backend_for(config: ScoringConfig, spec: ModelSpec) -> ScoringBackend:
    """Where ``spec``'s forward passes run: this process (every local GPU), or Ray replicas."""
    if config.backend == "local":
        return _local_backend(config, spec)
    if config.backend == "ray":
        from qaq_assets.lib.scoring.backends.ray import RayBackend

        return RayBackend(
            spec,
            device=config.device,
            dtype=config.dtype,
            options=scorer_options(config),
            address=config.ray_address or None,
            replicas=config.ray_replicas,
        )
    raise UnknownBackend(f"unknown scoring backend {config.backend!r}: use local or ray")


def _local_backend(config: ScoringConfig, spec: ModelSpec) -> ScoringBackend:
    options = scorer_options(config)
    devices = local_devices(config.device)

    def load_on(device: str) -> LocalBackend:
        loaded = cached_model(spec, device, config.dtype)
        return LocalBackend(loaded, options.scorer(loaded), options)

    expected = scorer_identity(config, spec)
    if expected is None:
        # Hub models are known only once downloaded, in this process: they score on one device.
        if len(devices) > 1:
            log.warning(
                "%s is a hub model: it scores on %s only; download it to a directory to use all %d",
                spec.key,
                devices[0],
                len(devices),
            )
        return load_on(devices[0])
    on_gpu = devices[0].startswith("cuda")
    if len(devices) == 1:
        return DeferredLocalBackend(expected, lambda: load_on(devices[0]), on_gpu)
    # A worker process per GPU, started for the first chunk that needs scoring.
    return DeferredLocalBackend(expected, lambda: device_pool(spec, devices, config.dtype, options, expected), on_gpu)
