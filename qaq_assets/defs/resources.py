"""Resources: the Delta lake and the scoring models (loaded once per process, reused by runs)."""

import dagster as dg
from pydantic import Field, PrivateAttr

from qaq_assets.defs.config import DeclaredChecks, declared
from qaq_assets.defs.instance_binding import bind_to_lake
from qaq_assets.lib.model_specs import ModelSpec
from qaq_assets.lib.progress import TerminalProgress
from qaq_assets.lib.scoring.backends.local import ScorerIdentity, ScoringBackend
from qaq_assets.lib.scoring.backends.policy import UnknownBackend, backend_for, cached_model, scorer_identity
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.scoring.engine.models import LoadedModel, tokenizer_of
from qaq_assets.lib.scoring.shard_scoring import ScoringProgress
from qaq_assets.lib.setting_fields import values_of
from qaq_assets.lib.settings import BY_NAME
from qaq_assets.lib.store.lake import STORAGE_OPTIONS_ENV, Lake, storage_options_from_env


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


class ScoringModelsResource(dg.ConfigurableResource, DeclaredChecks):
    """The language models that score samples: strong first, optional weak second. Its fields
    are the fields of ScoringConfig (lib/scoring/config.py), read through :attr:`config`."""

    models: list[str] = declared("models")
    template: str = declared("template")
    device: str = declared("device")
    dtype: str = declared("dtype")
    forward: str = declared("forward")
    attention: str = declared("attention")
    head: str = declared("head")
    batch_tokens: int = declared("batch_tokens")
    max_batch_size: int = declared("max_batch_size")
    max_sequence_tokens: int = declared("max_sequence_tokens")
    commit_every: int = declared("commit_every")
    keep_token_logprobs: bool = declared("keep_token_logprobs")
    backend: str = declared("backend")
    ray_address: str = declared("ray_address")
    ray_replicas: int = declared("ray_replicas")

    @property
    def config(self) -> ScoringConfig:
        """This resource's settings as the stage's typed config class."""
        return values_of(ScoringConfig, self)

    def specs(self) -> dict[str, ModelSpec]:
        return {spec.key: spec for spec in self.config.model_specs}

    def model_keys(self) -> list[str]:
        return list(self.specs())

    def spec(self, key: str) -> ModelSpec:
        try:
            return self.specs()[key]
        except KeyError:
            raise dg.Failure(f"model {key!r} is not configured; configured: {self.model_keys()}") from None

    def load(self, key: str, device: str | None = None) -> LoadedModel:
        """``key``'s model on ``device`` (default: the configured one), loaded once per process."""
        return cached_model(self.spec(key), device or self.config.device, self.config.dtype)

    def tokenizer(self, key: str):
        """``key``'s tokenizer, without loading its weights (None for hub models)."""
        return tokenizer_of(self.spec(key), self.config.device, self.config.dtype)

    def identity(self, key: str) -> ScorerIdentity | None:
        """What ``key``'s scores would be keyed by (see :func:`scorer_identity`)."""
        return scorer_identity(self.config, self.spec(key))

    def scoring_backend(self, key: str) -> ScoringBackend:
        """Where ``key``'s forward passes run (see :func:`backend_for`)."""
        try:
            return backend_for(self.config, self.spec(key))
        except UnknownBackend as error:
            raise dg.Failure(str(error)) from None


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
