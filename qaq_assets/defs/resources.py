"""Resources: the Delta lake and the scoring models (loaded once per process, reused by runs)."""

import dataclasses
import logging
import threading
from collections import OrderedDict

import dagster as dg
from pydantic import Field, PrivateAttr

from qaq_assets.defs.config import config_class
from qaq_assets.defs.instance_binding import bind_to_lake
from qaq_assets.lib.model_specs import ModelSpec
from qaq_assets.lib.progress import TerminalProgress
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
from qaq_assets.lib.scoring.engine.models import (
    LoadedModel,
    canonical_device,
    identify,
    load_model,
    tokenizer_of,
)
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import ScoringProgress
from qaq_assets.lib.setting_fields import values_of
from qaq_assets.lib.settings import BY_NAME, SCORING
from qaq_assets.lib.store.lake import STORAGE_OPTIONS_ENV, Lake, storage_options_from_env

log = logging.getLogger(__name__)
_MODEL_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_MODEL_CACHE_SIZE = 2
_MODEL_LOCK = threading.Lock()


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


class LakeResource(dg.ConfigurableResource):
    """Where every Delta table lives: a local directory or an object-store URI."""

    root: str = Field(description=BY_NAME["lake"].help)
    storage_options_env: str = Field(
        default=STORAGE_OPTIONS_ENV,
        description="Environment variable with the deltalake storage options as JSON, read when a run starts "
        "(credentials never enter Dagster's config, run storage or UI)",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run and sensor tick on this lake checks that its instance is this lake's.
        bind_to_lake(context.instance, Lake(self.root).root)

    def lake(self) -> Lake:
        return Lake(self.root, storage_options_from_env(self.storage_options_env))


class _ScoringModels(dg.ConfigurableResource):
    """The language models that score samples: strong first, optional weak second. Its fields
    are the fields of ScoringConfig (lib/scoring/config.py), read through :attr:`config`."""

    @property
    def config(self) -> ScoringConfig:
        """This resource's settings as the stage's typed config class."""
        return values_of(ScoringConfig, self)

    def specs(self) -> dict[str, ModelSpec]:
        return {spec.key: spec for spec in self.config.model_specs}

    def model_keys(self) -> list[str]:
        return list(self.specs())

    def load(self, key: str, device: str | None = None) -> LoadedModel:
        """``key``'s model on ``device`` (default: the configured one), loaded once per process."""
        try:
            spec = self.specs()[key]
        except KeyError:
            raise dg.Failure(f"model {key!r} is not configured; configured: {self.model_keys()}") from None
        return cached_model(spec, device or self.config.device, self.config.dtype)

    def tokenizer(self, key: str):
        """``key``'s tokenizer, without loading its weights (None for hub models)."""
        return tokenizer_of(self.specs()[key], self.config.device, self.config.dtype)

    def _local_backend(self, key: str) -> ScoringBackend:
        options = self.options()
        devices = local_devices(self.config.device)

        def load_on(device: str) -> LocalBackend:
            loaded = self.load(key, device)
            return LocalBackend(loaded, options.scorer(loaded), options)

        expected = self.identity(key) if key in self.specs() else None
        if expected is None:
            # Hub models are known only once downloaded, in this process: they score on one device.
            if len(devices) > 1:
                log.warning(
                    "%s is a hub model: it scores on %s only; download it to a directory to use all %d",
                    key,
                    devices[0],
                    len(devices),
                )
            return load_on(devices[0])
        on_gpu = devices[0].startswith("cuda")
        if len(devices) == 1:
            return DeferredLocalBackend(expected, lambda: load_on(devices[0]), on_gpu)
        # A worker process per GPU, started for the first chunk that needs scoring.
        return DeferredLocalBackend(
            expected, lambda: device_pool(self.specs()[key], devices, self.config.dtype, options, expected), on_gpu
        )

    def identity(self, key: str) -> ScorerIdentity | None:
        """What ``key``'s scores would be keyed by, from its files alone (no weights loaded);
        None for hub models, known only once downloaded."""
        config = self.config
        identity = identify(self.specs()[key], config.device, config.dtype)
        if identity is None:
            return None
        return ScorerIdentity(
            model_key=key,
            model_id=identity.model_id,
            weights_sha256=identity.weights_sha256,
            dtype=identity.dtype_name,
            fingerprint=identity.fingerprint,
            template_version=build_layouts(config.template, identity.tokenizer).version,
            max_sequence_tokens=config.max_sequence_tokens,
        )

    def options(self) -> ScorerOptions:
        return values_of(ScorerOptions, self.config)  # each option is the scoring setting of its name

    def scoring_backend(self, key: str) -> ScoringBackend:
        """Where ``key``'s forward passes run: this process, or replicas on a Ray cluster."""
        config = self.config
        if config.backend == "local":
            return self._local_backend(key)
        if config.backend == "ray":
            from qaq_assets.lib.scoring.backends.ray import RayBackend

            return RayBackend(
                self.specs()[key],
                device=config.device,
                dtype=config.dtype,
                options=self.options(),
                address=config.ray_address or None,
                replicas=config.ray_replicas,
            )
        raise dg.Failure(f"unknown scoring backend {config.backend!r}: use local or ray")


ScoringModelsResource = config_class("ScoringModelsResource", _ScoringModels, SCORING)


class ProgressResource(dg.ConfigurableResource):
    """Where scoring progress goes besides the run log: the terminal, when the CLI runs the graph
    (a live line on a TTY, a plain line at least every 10 s through a pipe)."""

    terminal: bool = Field(default=False, description="Show scoring progress on the terminal (stderr)")
    _progress: TerminalProgress | None = PrivateAttr(default=None)
    _finished: set = PrivateAttr(default_factory=set)

    def report(self, label: str, progress: ScoringProgress) -> None:
        stage = f"scoring {label}"
        if not self.terminal or progress.samples_total == 0 or stage in self._finished:
            return
        if self._progress is None:
            self._progress = TerminalProgress()  # the real stderr: Dagster captures the step's
        # Before the first pass ends, the model is loading (and its forward compiling).
        note = (
            f"{progress.tokens_per_second:,.0f} tokens/s" if progress.tokens_done else "loading the model, first pass"
        )
        if stage not in self._progress.stages:
            cached = f"{progress.samples_cached:,} already scored" if progress.samples_cached else ""
            self._progress.start(stage, progress.samples_total, "samples", cached)
        if progress.samples_done >= progress.samples_total:
            self._progress.finish(stage, note=note)
            self._finished.add(stage)
        else:
            self._progress.update(stage, progress.samples_done, note)
