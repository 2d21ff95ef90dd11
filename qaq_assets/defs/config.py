"""How the Dagster config and resource classes take their fields from the declared settings.

Each class writes its fields out (``budget: float = declared("budget")``), so the launchpad's
``budget`` can be followed to the rule that reads it; the default and help come from the
setting's declaration in its stage's config class, and :class:`DeclaredChecks` holds every
value to the same rules as the command line and the environment. A test keeps each class's
fields equal to its stage's settings, as README's table is kept.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
from pydantic import Field

from qaq_assets.lib.settings import BY_NAME, Settings


def _described(name: str) -> str:
    setting = BY_NAME[name]
    return setting.help + (f" (one of {', '.join(setting.choices)})" if setting.choices else "")


_DECLARED = object()


def declared(name: str, default: Any = _DECLARED) -> Any:
    """The field of setting ``name``: its declared default (or ``default``) and its help."""
    setting = BY_NAME[name]
    value = setting.default if default is _DECLARED else default
    if setting.kind in (list, dict):
        return Field(default_factory=lambda: copy.deepcopy(value), description=_described(name))
    return Field(default=value, description=_described(name))


class DeclaredChecks(pydantic.BaseModel):
    """Each field that is a declared setting is checked as the setting is (launchpad and resource
    config are held to the rules of the command line and the environment)."""

    @pydantic.field_validator("*")
    @classmethod
    def check_declared(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        setting = BY_NAME.get(info.field_name)
        problem = setting.problem(value) if setting is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value


def with_defaults(config_class: type, defaults: Settings | None) -> type:
    """``config_class``, its defaults those of ``defaults`` (e.g. the environment's) where they
    differ from the declared ones: the launchpad shows what a run would use."""
    if defaults is None:
        return config_class
    changed = {
        name: (field.annotation, declared(name, getattr(defaults, name)))
        for name, field in config_class.model_fields.items()
        if name in BY_NAME and getattr(defaults, name) != BY_NAME[name].default
    }
    if not changed:
        return config_class
    subclass = pydantic.create_model(
        config_class.__name__, __base__=config_class, __module__=config_class.__module__, **changed
    )
    subclass.__doc__ = config_class.__doc__
    return subclass
