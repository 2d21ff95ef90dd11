"""Every setting, declared once: name, type, default, help and environment variable.

The command line's flags, :meth:`Settings.from_env`, the Dagster resource and run config
(editable in the launchpad) and README's settings table are all derived from ``SETTINGS``
(see ``defs/config.py``, ``cli.py`` and ``python -m qaq_assets.lib.settings``). Imports nothing
heavy, so that ``qaq --help`` starts at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any

from qaq_assets.lib.errors import QaqError

DEFAULT_MODEL_SPEC = "smollm2-135m"
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
LAKE, SCORING, DEFINITIONS, RUNNER, SELECTION, INGEST = (
    "lake",
    "scoring",
    "definitions",
    "runner",
    "selection",
    "ingest",
)


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # str, int, float, list (of str) or dict
    default: Any
    help: str
    group: str
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # default: --name-with-dashes
    secret: bool = False  # never in Dagster config (which Dagster stores and shows)

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
            else:
                value = self.kind(text)
        except ValueError as error:
            raise QaqError(f"{self.env_var}={text!r}: expected {self.kind.__name__} ({error})") from None
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise QaqError(f"{self.name} must be one of {list(self.choices)}, not {value!r}")


SETTINGS: tuple[Setting, ...] = (
    Setting("lake", str, "lake", "lake directory or URI (s3://bucket/prefix, ...)", LAKE),
    Setting(
        "storage_options",
        dict,
        {},
        "deltalake storage options as a JSON object (object-store credentials); read "
        "from the environment when a run starts, never stored in Dagster",
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
    ),
    Setting("max_batch_size", int, 64, "sequences per attention group at most", SCORING),
    Setting("max_sequence_tokens", int, 2048, "longest sequence; answers are cut first", SCORING),
    Setting(
        "commit_every",
        int,
        0,
        "samples per score-cache commit (what a killed run can lose); 0 = auto: 256 on CPU, 2,048 on "
        "a GPU (several full passes per chunk)",
        SCORING,
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
    Setting("ray_replicas", int, 0, "model replicas on Ray; 0 = one per GPU", SCORING),
    Setting(
        "scoring_op_tags", dict, {}, "op tags of the scoring step as JSON (e.g. a GPU pod for dagster-k8s)", DEFINITIONS
    ),
    Setting("landing_dir", str, "data/incoming", "directory the landing sensor watches", DEFINITIONS),
    Setting(
        "pool_wait_seconds", float, 600.0, "how long `qaq curate` waits for a gpu pool slot held by live runs", RUNNER
    ),
    Setting(
        "strategy",
        str,
        "auto",
        "selection rule; auto = rmi-band+checks with one model, diff with two",
        SELECTION,
        STRATEGY_CHOICES,
    ),
    Setting("budget", float, 0.25, "share of the distinct samples kept, in (0, 1]", SELECTION),
    Setting("band_low", float, 0.5, "where the kept RMI band starts within each stratum, in [0, 1)", SELECTION),
    Setting("strata", int, 10, "NLL(Q) strata the RMI ranks are taken within", SELECTION),
    Setting("diff_threshold", float, 0.1, "diff: keep rank_strong - rank_weak above this", SELECTION),
    Setting("min_stratum_size", int, 10, "fewer strata on small inputs: at least this many samples each", SELECTION),
    Setting("seed", int, 0, "seed of the random baseline", SELECTION),
    Setting(
        "near_duplicate_threshold",
        float,
        0.85,
        "MinHash Jaccard at which a sample repeats an earlier one (>= 1 disables)",
        SELECTION,
    ),
    Setting("label_field", str, "defect", "planted-label field, carried into column label but never scored", INGEST),
    Setting("max_record_bytes", int, 1_000_000, "records larger than this are quarantined", INGEST),
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
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by each ``QAQ_<NAME>`` variable that is set."""
        environ = os.environ if environ is None else environ
        return cls(**{s.name: s.parse(environ[s.env_var]) for s in SETTINGS if environ.get(s.env_var, "") != ""})

    def updated(self, **values: Any) -> Settings:
        """A copy with ``values`` (None leaves a setting as it is), each checked."""
        given = {name: value for name, value in values.items() if value is not None}
        for name, value in given.items():
            BY_NAME[name].check(value)
        return replace(self, **given)

    def group(self, *groups: str) -> dict[str, Any]:
        """The values of the settings of ``groups``, by name."""
        return {setting.name: getattr(self, setting.name) for setting in in_group(*groups)}

    @property
    def model_specs(self) -> list:
        from qaq_assets.lib.scoring.engine.models import ModelSpec

        specs = [ModelSpec.parse(text) for text in self.models]
        keys = [spec.key for spec in specs]
        if len(set(keys)) != len(keys):
            raise QaqError(f"model keys must be distinct, got {keys}; name them with KEY=SPEC")
        return specs


Settings = make_dataclass(
    "Settings",
    [(s.name, s.kind, _default(s)) for s in SETTINGS],
    bases=(_SettingsMethods,),
    frozen=True,
    namespace={"__module__": __name__},
)
Settings.__doc__ = "Every setting's value (see ``SETTINGS``): defaults, the environment, then the command line."
SETTING_NAMES = [f.name for f in fields(Settings)]


def markdown_table() -> str:
    """README's settings table."""
    rows = ["| setting | environment | flag | default | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = json.dumps(s.default) if s.kind in (list, dict) else repr(s.default)
        rows.append(f"| `{s.name}` | `{s.env_var}` | `{s.cli_flag}` | `{default}` | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
