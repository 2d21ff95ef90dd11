"""Dagster config and resource classes whose fields are the declared settings (the stage config classes):
each field's type, default and description come from its declaration, so the launchpad shows
the same settings, defaults and help as the command line and README."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import Field

from qaq_assets.lib.settings import BY_NAME, Setting, Settings, in_group

_ANNOTATIONS = {str: str, int: int, float: float, bool: bool, list: list[str], dict: dict[str, Any]}


def _field(setting: Setting, default: Any) -> tuple[Any, Any]:
    annotation = _ANNOTATIONS[setting.kind]
    help_text = setting.help + (f" (one of {', '.join(setting.choices)})" if setting.choices else "")
    if setting.kind in (list, dict):
        return annotation, Field(default_factory=lambda: type(default)(default), description=help_text)
    return annotation, Field(default=default, description=help_text)


def _checked(value: Any, info: pydantic.ValidationInfo) -> Any:
    # The declared check of each setting, so launchpad and resource config are held to the same
    # rules as the command line and the environment.
    problem = BY_NAME[info.field_name].problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def config_class(name: str, base: type, *groups: str, defaults: Settings | None = None) -> type:
    """A subclass of ``base`` (``dg.Config`` or ``dg.ConfigurableResource`` with its methods) with
    one field per setting of ``groups``; defaults from ``defaults`` (e.g. the environment's)."""
    defaults = defaults or Settings()
    fields = {s.name: _field(s, getattr(defaults, s.name)) for s in in_group(*groups) if not s.secret}
    validators = {"_checked": pydantic.field_validator(*fields)(_checked)} if fields else {}
    model = pydantic.create_model(name, __base__=base, __module__=base.__module__, __validators__=validators, **fields)
    model.__doc__ = base.__doc__
    return model
