"""Records as JSON without losing what JSON cannot hold, and back.

Table formats carry values JSON has no type for: bytes are ``{"$base64": "..."}``, timestamps
and dates ISO-8601 strings, decimals strings; NaN and infinities become null (JSON has none).
A stored record refers to the text columns it shares a value with (``{"$column": "response"}``)
rather than holding that text twice. A dict of the record's own that looks like one of these
markers is wrapped (``{"$literal": ...}``) so it reads back as itself."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from collections.abc import Mapping
from typing import Any

MARKERS = ("$base64", "$column", "$literal")


def encoded(value: Any, columns: Mapping[str, str] | None = None) -> Any:
    """``value`` as plain JSON values; a string equal to a value of ``columns`` (name -> text)
    becomes a reference to that column."""
    if isinstance(value, str):
        for name, text in (columns or {}).items():
            if text and value == text:
                return {"$column": name}
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, Mapping):
        items = {str(key): encoded(item, columns) for key, item in value.items()}
        return {"$literal": items} if len(items) == 1 and next(iter(items)) in MARKERS else items
    if isinstance(value, list | tuple | set | frozenset):
        return [encoded(item, columns) for item in value]
    if hasattr(value, "item"):  # a numpy scalar
        return encoded(value.item(), columns)
    return str(value)


def dumps(value: Any, columns: Mapping[str, str] | None = None) -> str:
    return json.dumps(encoded(value, columns), ensure_ascii=False)


def decoded(value: Any, columns: Mapping[str, str] | None = None) -> Any:
    """What :func:`encoded` gave, with column references filled from ``columns`` and bytes as
    their base64 text (JSON output keeps them so)."""
    if isinstance(value, list):
        return [decoded(item, columns) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == "$column":
            return (columns or {}).get(item)
        if key == "$literal":
            return {k: decoded(v, columns) for k, v in item.items()}
    return {key: decoded(item, columns) for key, item in value.items()}
