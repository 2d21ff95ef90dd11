"""Every setting, declared once: name, type, default, help and environment variable.

The command line's flags, :meth:`Settings.from_env`, the Dagster resource and run config
(editable in the launchpad) and README's settings table are all derived from ``SETTINGS``
(see ``defs/config.py``, ``cli.py`` and ``python -m qaq_assets.lib.settings``). Imports nothing
heavy, so that ``qaq --help`` starts at once.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass, replace
from typing import Any

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.model_specs import DEFAULT_MODEL_SPEC, ModelSpec, parse_model_specs

TEMPLATES = ("auto", "chat", "plain")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# fused: our forward with compiled element-wise steps; fused-eager: the same, uncompiled;
# reference: the model's own Hugging Face forward. Unsupported models always use reference.
FORWARDS = ("fused", "fused-eager", "reference")
# packed: one token stream per pass, one attention call over it; padded: length groups, attention
# per group; auto: packed on CUDA where a packed kernel checks out, else padded.
ATTENTIONS = ("auto", "packed", "padded")
BACKENDS = ("local", "ray")
# The method as published, its baselines, and one named extension beyond the paper.
STRATEGIES = ("rmi-band", "diff", "ifd", "ppl", "random", "rmi-band+code", "rmi-band+checks")
STRATEGY_CHOICES = ("auto", *STRATEGIES)
# Where a setting applies: the lake and scoring resources, the building of the definitions (sensor
# directory, op tags), the CLI's runner, the curated_subset and raw_samples run config.
# The scorer needs room for the template and at least a few tokens of each side.
MIN_SEQUENCE_TOKENS = 64
LAKE, SCORING, DEFINITIONS, RUNNER, SELECTION, INGEST = (
    "lake",
    "scoring",
    "definitions",
    "runner",
    "selection",
    "ingest",
)


class SettingError(QaqError, ValueError):
    """A setting given a value it does not allow; the message names its flag and variable."""


@dataclass(frozen=True)
class Bounds:
    """The range a number setting must lie in; ``None`` leaves that side open. NaN and
    infinities are never in range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "must be a finite number"
        if self.low is not None and (value < self.low or self.low_open and value == self.low):
            return self.describe()
        if self.high is not None and (value > self.high or self.high_open and value == self.high):
            return self.describe()
        return None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (
                f"must be in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            )
        if self.low is not None:
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        return f"must be {'<' if self.high_open else '<='} {self.high:g}"


AT_LEAST_ZERO, AT_LEAST_ONE = Bounds(low=0), Bounds(low=1)
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # str, int, float, bool, list (of str) or dict
    default: Any
    help: str
    group: str
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # default: --name-with-dashes
    secret: bool = False  # never in Dagster config (which Dagster stores and shows)
    bounds: Bounds | None = None  # for int and float settings
    pattern: str | None = None  # a str setting (or each item of a list) must match it whole
    required: bool = False  # a str or list setting that may not be empty

    @property
    def env_var(self) -> str:
        return f"QAQ_{self.name.upper()}"

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """The value of ``text`` as this setting's type; :class:`QaqError` naming the variable otherwise."""
        try:
            if self.kind is list:
                value = [part.strip() for part in text.split(",") if part.strip()]
            elif self.kind is dict:
                value = json.loads(text or "{}")
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
            elif self.kind is bool:
                value = _BOOLEANS[text.strip().lower()]
            else:
                value = self.kind(text)
        except (ValueError, KeyError) as error:
            raise QaqError(f"{self.env_var}={text!r}: expected {self.kind.__name__} ({error})") from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """:class:`QaqError` naming this setting (flag and variable) where ``value`` is not allowed."""
        problem = self.problem(value)
        if problem is not None:
            raise SettingError(f"{self.cli_flag} ({self.env_var}) {problem}, not {value!r}")

    def problem(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"must be one of {list(self.choices)}"
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"must be a{'n integer' if self.kind is int else ' number'}"
            if self.kind is int and isinstance(value, float) and not value.is_integer():
                return "must be an integer"
            return self.bounds.problem(float(value)) if self.bounds is not None else None
        items = list(value) if self.kind is list else [value] if self.kind is str else []
        if self.required and not any(str(item).strip() for item in items):
            return "must not be empty"
        if self.pattern is not None and not all(re.fullmatch(self.pattern, str(item)) for item in items):
            return f"must match {self.pattern}"
        return None


SETTINGS: tuple[Setting, ...] = (
    Setting("lake", str, "lake", "lake directory or URI (s3://bucket/prefix, ...)", LAKE, required=True),
    Setting(
        "storage_options",
        dict,
        {},
        "object-store options and credentials: --storage-option KEY=VALUE (repeat it), or "
        "QAQ_STORAGE_OPTIONS as a JSON object; read from the environment when a run starts, never stored in Dagster",
        LAKE,
        flag="--storage-option",
        secret=True,
    ),
    Setting(
        "models",
        list,
        [DEFAULT_MODEL_SPEC],
        "model specs, strong first: KEY=SPEC or SPEC (smollm2-135m, "
        "gemma3-270m, a model directory, a .gguf file, random:ARCH[:SEED], hf:ORG/NAME)",
        SCORING,
        flag="--model",
        required=True,
    ),
    Setting(
        "template",
        str,
        "auto",
        "prompt template: chat, plain, or auto (chat when the tokenizer has one)",
        SCORING,
        TEMPLATES,
    ),
    Setting(
        "device",
        str,
        "auto",
        "auto (every visible CUDA GPU, one model replica each; else cpu), cpu, cuda (all GPUs) or cuda:N",
        SCORING,
        pattern=r"auto|cpu|cuda(:[0-9]+)?",
    ),
    Setting(
        "dtype",
        str,
        "auto",
        "auto (bf16 on CUDA and on CPUs with native bf16, else fp32), float32, bfloat16 or float16",
        SCORING,
        DTYPES,
    ),
    Setting(
        "forward",
        str,
        "fused",
        "scoring forward pass: fused (Llama/Qwen2: fused projections, compiled "
        "element-wise steps), fused-eager (the same, uncompiled) or reference (the model's own)",
        SCORING,
        FORWARDS,
    ),
    Setting(
        "attention",
        str,
        "auto",
        "pass layout: packed (sequences back to back, one variable-length attention call), "
        "padded (length groups, attention per group), or auto (packed on CUDA, padded on CPU)",
        SCORING,
        ATTENTIONS,
    ),
    Setting(
        "batch_tokens",
        int,
        0,
        "tokens per forward pass; 0 = auto (4,096 on CPU; on CUDA sized from the "
        "card's free memory and the model's width and vocabulary)",
        SCORING,
        bounds=AT_LEAST_ZERO,
    ),
    Setting("max_batch_size", int, 64, "sequences per attention group at most", SCORING, bounds=AT_LEAST_ONE),
    Setting(
        "max_sequence_tokens",
        int,
        2048,
        "longest sequence in tokens, template included; answers are cut first",
        SCORING,
        bounds=Bounds(low=MIN_SEQUENCE_TOKENS),
    ),
    Setting(
        "commit_every",
        int,
        0,
        "samples per score-cache commit (what a killed run can lose); 0 = auto: 256 on CPU, 2,048 on "
        "a GPU (several full passes per chunk)",
        SCORING,
        bounds=AT_LEAST_ZERO,
    ),
    Setting(
        "backend",
        str,
        "local",
        "where forward passes run: local (this process) or ray (a pool of replicas)",
        SCORING,
        BACKENDS,
    ),
    Setting("ray_address", str, "", "Ray cluster address; empty starts a local Ray", SCORING),
    Setting("ray_replicas", int, 0, "model replicas on Ray; 0 = one per GPU", SCORING, bounds=AT_LEAST_ZERO),
    Setting(
        "scoring_op_tags", dict, {}, "op tags of the scoring step as JSON (e.g. a GPU pod for dagster-k8s)", DEFINITIONS
    ),
    Setting("landing_dir", str, "data/incoming", "directory the landing sensor watches", DEFINITIONS, required=True),
    Setting(
        "pool_wait_seconds",
        float,
        600.0,
        "how long `qaq curate` waits for a gpu pool slot held by live runs",
        RUNNER,
        bounds=AT_LEAST_ZERO,
    ),
    Setting(
        "strategy",
        str,
        "auto",
        "selection rule; auto = rmi-band+checks with one model, diff with two",
        SELECTION,
        STRATEGY_CHOICES,
    ),
    Setting(
        "budget", float, 0.25, "share of the distinct samples kept, in (0, 1]", SELECTION, bounds=Bounds(0, 1, True)
    ),
    Setting(
        "band_low",
        float,
        0.5,
        "where the kept RMI band starts within each stratum, in [0, 1)",
        SELECTION,
        bounds=Bounds(0, 1, high_open=True),
    ),
    Setting("strata", int, 10, "NLL(Q) strata the RMI ranks are taken within", SELECTION, bounds=AT_LEAST_ONE),
    Setting(
        "diff_threshold",
        float,
        0.1,
        "diff: keep rank_strong - rank_weak above this, in (-1, 1)",
        SELECTION,
        bounds=Bounds(-1, 1, True, True),
    ),
    Setting(
        "min_stratum_size",
        int,
        10,
        "fewer strata on small inputs: at least this many samples each",
        SELECTION,
        bounds=AT_LEAST_ONE,
    ),
    Setting("seed", int, 0, "seed of the random baseline", SELECTION, bounds=AT_LEAST_ZERO),
    Setting(
        "near_duplicate_threshold",
        float,
        0.85,
        "MinHash Jaccard at which a sample repeats an earlier one, at least 0.5 (>= 1 disables)",
        SELECTION,
        bounds=Bounds(low=0.5),
    ),
    Setting(
        "allow_partial",
        bool,
        False,
        "publish a curation that leaves out ingested shards lacking a model's scores (otherwise refused)",
        SELECTION,
    ),
    Setting(
        "label_field",
        str,
        "defect",
        "planted-label field, carried into column label but never scored",
        INGEST,
        required=True,
    ),
    Setting(
        "max_record_bytes", int, 1_000_000, "records larger than this are quarantined", INGEST, bounds=AT_LEAST_ONE
    ),
    Setting(
        "fields",
        list,
        [],
        "ROLE=FIELD: the record field holding a role, where the usual names do not apply; roles: "
        "instruction, response, input, system, id, conversation (e.g. instruction=prompt,response=completion)",
        INGEST,
        pattern=r"(instruction|response|input|system|id|conversation)=[^=,\s]+",
    ),
    Setting(
        "allow_shrink",
        bool,
        False,
        "accept a registered shard's file that now yields fewer valid records than the lake holds from it "
        "(otherwise refused as a cut or emptied copy; an accepted shrink is recorded in shard_sources)",
        INGEST,
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def in_group(*groups: str) -> list[Setting]:
    return [setting for setting in SETTINGS if setting.group in groups]


def _default(setting: Setting):
    return (
        field(default_factory=lambda: type(setting.default)(setting.default))
        if setting.kind in (list, dict)
        else field(default=setting.default)
    )


class _SettingsMethods:
    def __post_init__(self) -> None:
        # Every way of making settings (defaults, environment, flags, launchpad) is checked here,
        # before anything is read or written.
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name))
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

    @property
    def model_specs(self) -> list[ModelSpec]:
        return parse_model_specs(self.models)

    def identify_models(self) -> list:
        """Each configured model's identity, from its files alone (no weights loaded): a model that
        cannot be found or loaded, or a device that does not exist, fails here with one line,
        before any work. Hub models (``hf:``) are known only once downloaded."""
        from qaq_assets.lib.scoring.engine.models import identify

        return [identify(spec, self.device, self.dtype) for spec in self.model_specs]


Settings = make_dataclass(
    "Settings",
    [(s.name, s.kind, _default(s)) for s in SETTINGS],
    bases=(_SettingsMethods,),
    frozen=True,
    namespace={"__module__": __name__},
)
Settings.__doc__ = "Every setting's value (see ``SETTINGS``): defaults, the environment, then the command line."


def markdown_table() -> str:
    """README's settings table."""
    rows = ["| setting | environment | flag | default | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = json.dumps(s.default) if s.kind in (list, dict) else repr(s.default)
        rows.append(f"| `{s.name}` | `{s.env_var}` | `{s.cli_flag}` | `{default}` | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
