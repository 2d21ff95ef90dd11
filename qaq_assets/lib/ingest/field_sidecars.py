"""Field mappings kept beside the data: one file's, or one folder's.

Landed files come from different producers, and one ``--fields`` (``QAQ_FIELDS``) for every file
cannot name each one's columns. A mapping beside a file applies to it: ``prompts.csv.fields``
next to ``prompts.csv``, or ``.fields`` in its folder for every file there (the file's own wins).
It holds what ``--fields`` takes, ``ROLE=FIELD`` separated by commas or lines
(``instruction=Prompt`` and ``response=Answer``); its roles override the global mapping's."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from qaq_assets.lib.ingest.config import FIELD_ITEM, FIELD_ROLES
from qaq_assets.lib.ingest.file_formats import ShardReadError

FOLDER_SIDECAR = ".fields"
_ITEM = re.compile(FIELD_ITEM)


def sidecar_of(path: Path) -> Path | None:
    """The mapping file that applies to ``path``, if any."""
    for candidate in (path.with_name(path.name + ".fields"), path.parent / FOLDER_SIDECAR):
        if candidate.is_file():
            return candidate
    return None


def fields_for(path: Path, fields: list[str]) -> list[str]:
    """``fields`` (``ROLE=FIELD`` items) with the roles the file's sidecar names replaced by its own;
    :class:`ShardReadError` naming the sidecar where an item is malformed."""
    sidecar = sidecar_of(path)
    if sidecar is None:
        return list(fields)
    items = [item.strip() for item in re.split(r"[,\n]", sidecar.read_text(encoding="utf-8")) if item.strip()]
    bad = [item for item in items if not _ITEM.fullmatch(item)]
    if bad:
        raise ShardReadError(f"{sidecar}: {bad[0]!r} is not ROLE=FIELD (roles: {', '.join(FIELD_ROLES)})")
    own = {item.split("=", 1)[0] for item in items}
    return [item for item in fields if item.split("=", 1)[0] not in own] + items


def keyed(options_key: str, path: Path) -> str:
    """``options_key`` with the file's sidecar content: a changed mapping reads the file again."""
    sidecar = sidecar_of(path)
    if sidecar is None:
        return options_key
    digest = hashlib.sha256(sidecar.read_bytes()).hexdigest()[:12]
    return f"{options_key}+fields:{digest}"
