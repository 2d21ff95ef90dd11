"""The lake's settings: where the tables live and how to reach them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qaq_assets.lib.setting_fields import LAKE, check_fields, setting


@dataclass(frozen=True)
class LakeConfig:
    GROUP: ClassVar[str] = LAKE

    lake: str = setting("lake", "lake directory or URI (s3://bucket/prefix, ...)", required=True)
    storage_options: dict = setting(
        {},
        "object-store options and credentials: --storage-option KEY=VALUE (repeat it), or "
        "QAQ_STORAGE_OPTIONS as a JSON object; read from the environment when a run starts, never stored in Dagster",
        flag="--storage-option",
        secret=True,
    )

    def __post_init__(self) -> None:
        check_fields(self)
