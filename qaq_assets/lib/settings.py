"""Every setting, declared once, in the config class of the stage it configures:

- ``lib/store/config.py``: :class:`LakeConfig` (where the tables live),
- ``lib/ingest/config.py``: :class:`IngestConfig`,
- ``lib/scoring/config.py``: :class:`ScoringConfig`,
- ``lib/selection/config.py``: :class:`SelectionConfig`,
- here: :class:`DefinitionsConfig` (how the Dagster definitions are built) and
  :class:`RunnerConfig` (the CLI's own runs).

Each field carries its default, help, choices and bounds (``lib/setting_fields.py``). The
command line's flags, :meth:`Settings.from_env`, the Dagster resources and run config (editable
in the launchpad, ``defs/config.py``) and README's settings table (``python -m
qaq_assets.lib.settings``) are all derived from these classes. Imports nothing heavy, so that
``qaq --help`` starts at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.setting_fields import (
    AT_LEAST_ZERO,
    DEFINITIONS,
    INGEST,
    LAKE,
    RUNNER,
    SCORING,
    SELECTION,
    Setting,
    SettingError,
    declared,
    setting,
)
from qaq_assets.lib.store.config import LakeConfig

__all__ = [  # the groups and the Setting view are re-exported: callers need only this module
    "BY_NAME",
    "DEFINITIONS",
    "INGEST",
    "LAKE",
    "RUNNER",
    "SCORING",
    "SELECTION",
    "SETTINGS",
    "STAGES",
    "DefinitionsConfig",
    "RunnerConfig",
    "Setting",
    "SettingError",
    "Settings",
    "in_group",
    "markdown_table",
]


@dataclass(frozen=True)
class DefinitionsConfig:
    GROUP: ClassVar[str] = DEFINITIONS

    scoring_op_tags: dict = setting({}, "op tags of the scoring step as JSON (e.g. a GPU pod for dagster-k8s)")
    landing_dir: str = setting("data/incoming", "directory the landing sensor watches", required=True)


@dataclass(frozen=True)
class RunnerConfig:
    GROUP: ClassVar[str] = RUNNER

    pool_wait_seconds: float = setting(
        600.0, "how long `qaq curate` waits for a gpu pool slot held by live runs", bounds=AT_LEAST_ZERO
    )


# README's table lists them in this order.
STAGES = (LakeConfig, ScoringConfig, DefinitionsConfig, RunnerConfig, SelectionConfig, IngestConfig)
SETTINGS: tuple[Setting, ...] = tuple(declared_setting for stage in STAGES for declared_setting in declared(stage))
BY_NAME = {declared_setting.name: declared_setting for declared_setting in SETTINGS}


def in_group(*groups: str) -> list[Setting]:
    return [setting for setting in SETTINGS if setting.group in groups]


@dataclass(frozen=True)
class Settings(LakeConfig, ScoringConfig, DefinitionsConfig, RunnerConfig, SelectionConfig, IngestConfig):
    """Every setting's value: defaults, the environment, then the command line. One flat object
    with every stage's fields (each stage's own checks run here too)."""

    def __post_init__(self) -> None:
        # Every way of making settings (defaults, environment, flags, launchpad) is checked here,
        # before anything is read or written.
        for declared_setting in SETTINGS:
            declared_setting.check(getattr(self, declared_setting.name))
        specs = self.model_specs
        if self.strategy == "diff" and len(specs) < 2:
            raise SettingError(f"--strategy diff needs two models (strong first, weak second); got {len(specs)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by each ``QAQ_<NAME>`` variable that is set."""
        environ = os.environ if environ is None else environ
        return cls(**{s.name: s.parse(environ[s.env_var]) for s in SETTINGS if environ.get(s.env_var, "") != ""})

    def updated(self, **values: Any) -> Settings:
        """A copy with ``values`` (None leaves a setting as it is), each checked."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})

    def group(self, *groups: str) -> dict[str, Any]:
        """The values of the settings of ``groups``, by name."""
        return {setting.name: getattr(self, setting.name) for setting in in_group(*groups)}

    def check_before_work(self) -> None:
        """What the settings need that can fail before any work, failing here with one line:
        each model found and its tokenizer loaded from its files (no weights), a hub model
        (``hf:``) in the local cache or reachable, the sequence limit leaving each model's
        template room for a query and an answer, each benchmark file readable."""
        from qaq_assets.lib.ingest.shard_ingest import benchmark
        from qaq_assets.lib.scoring.engine.models import check_hub_model, identify
        from qaq_assets.lib.scoring.engine.scorer import MIN_ANSWER_TOKENS
        from qaq_assets.lib.scoring.engine.templates import build_layouts

        for spec in self.model_specs:
            identity = identify(spec, self.device, self.dtype)
            if identity is None:
                check_hub_model(spec)
                continue
            overhead = build_layouts(self.template, identity.tokenizer).overhead
            # The query keeps at least as much room as the answer's promised minimum.
            needed = overhead + 2 * MIN_ANSWER_TOKENS
            if self.max_sequence_tokens < needed:
                raise SettingError(
                    f"--max-sequence-tokens {self.max_sequence_tokens} leaves {spec.key}'s template ({overhead} "
                    f"tokens) too little room for a query and a {MIN_ANSWER_TOKENS}-token answer: give at least "
                    f"{needed}"
                )
        benchmark(self)


def markdown_table() -> str:
    """README's settings table."""
    rows = ["| setting | environment | flag | default | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = json.dumps(s.default) if s.kind in (list, dict) else repr(s.default)
        rows.append(f"| `{s.name}` | `{s.env_var}` | `{s.cli_flag}` | `{default}` | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
