"""How a setting is declared: a dataclass field of a stage's config class, whose metadata says
what the command line, the environment, Dagster and README show of it.

The bottom of the tree, torch- and polars-free: each stage's ``config.py`` declares its fields
with :func:`setting`; ``lib/settings.py`` assembles them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from qaq_assets.lib.errors import QaqError

# Which part of the product a setting configures: the lake and scoring resources, the building of
# the definitions (sensor directory, op tags), the CLI's runner, the curated_subset and
# raw_samples run config.
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
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"must be in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"must be {'>' if self.low_open else '>='} {low}"
        return f"must be {'<' if self.high_open else '<='} {high}"


def _number(value: float | None) -> str:
    # Whole bounds in full (16777216, not 1.67772e+07): the user types them back.
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


AT_LEAST_ZERO, AT_LEAST_ONE = Bounds(low=0), Bounds(low=1)
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
C = TypeVar("C")
_KINDS = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class Declaration:
    """What a field's metadata holds besides its type and default."""

    help: str
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # default: --name-with-dashes
    secret: bool = False  # never in Dagster config (which Dagster stores and shows)
    bounds: Bounds | None = None  # for int and float settings
    pattern: str | None = None  # a str setting (or each item of a list) must match it whole
    required: bool = False  # a str or list setting that may not be empty


def setting(default: Any, help: str, **declaration: Any) -> Any:
    """A config class's field: its default, and its :class:`Declaration` (help, choices, flag,
    secret, bounds, pattern, required)."""
    metadata = {"setting": Declaration(help, **declaration)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Setting:
    """One declared setting as the command line, environment, Dagster and README see it."""

    name: str
    kind: type  # str, int, float, bool, list (of str) or dict
    default: Any
    group: str
    help: str
    choices: tuple[str, ...] | None
    flag: str | None
    secret: bool
    bounds: Bounds | None
    pattern: str | None
    required: bool

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
        except RecursionError:
            raise QaqError(f"{self.env_var}: JSON nested too deeply to be settings") from None
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


def declared(config_class: type) -> list[Setting]:
    """The settings a config class declares, in order (its ``GROUP`` names their group)."""
    found = []
    for field in dataclasses.fields(config_class):
        declaration = field.metadata.get("setting")
        if declaration is None:
            continue
        kind = _KINDS[str(field.type).split("[")[0]]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        described = {part.name: getattr(declaration, part.name) for part in dataclasses.fields(declaration)}
        found.append(Setting(field.name, kind, default, config_class.GROUP, **described))
    return found


def values_of(config_class: type[C], source: Any) -> C:
    """A ``config_class`` with each field's value read by name from ``source`` (``Settings``, a
    Dagster run config or resource built from the same declarations), checked."""
    return config_class(**{field.name: getattr(source, field.name) for field in dataclasses.fields(config_class)})


def check_fields(config: Any) -> None:
    """:class:`SettingError` for the first declared field of ``config`` whose value is not allowed."""
    for declared_setting in declared(type(config)):
        declared_setting.check(getattr(config, declared_setting.name))
