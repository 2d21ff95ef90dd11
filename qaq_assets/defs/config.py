"""Dagster config and resource classes whose fields are the declared settings (lib/settings.py):
each field's type, default and description come from its declaration, so the launchpad shows
the same settings, defaults and help as the command line and README."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import Field

from qaq_assets.lib.settings import Setting, Settings, in_group

_ANNOTATIONS = {str: str, int: int, float: float, list: list[str], dict: dict[str, Any]}


def _field(setting: Setting, default: Any) -> tuple[Any, Any]:
    annotation = _ANNOTATIONS[setting.kind]
    help_text = setting.help + (f" (one of {', '.join(setting.choices)})" if setting.choices else "")
    if setting.kind in (list, dict):
        return annotation, Field(default_factory=lambda: type(default)(default), description=help_text)
    return annotation, Field(default=default, description=help_text)


def config_class(name: str, base: type, *groups: str, defaults: Settings | None = None) -> type:
    """A subclass of ``base`` (``dg.Config`` or ``dg.ConfigurableResource`` with its methods) with
    one field per setting of ``groups``; defaults from ``defaults`` (e.g. the environment's)."""
    defaults = defaults or Settings()
    fields = {s.name: _field(s, getattr(defaults, s.name)) for s in in_group(*groups) if not s.secret}
    model = pydantic.create_model(name, __base__=base, __module__=base.__module__, **fields)
    model.__doc__ = base.__doc__
    return model
