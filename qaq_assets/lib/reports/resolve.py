"""One way to name a curated version and a sample, for every command.

A version: ``latest`` (or nothing), a number (``3``) or ``v3``, or a time (``2026-12-06``,
``2026-12-06T05:00``: the latest version curated by then). A sample: its sample id or a prefix of
6 or more of its hex characters, its record id (the input's ``id``), or ``SHARD:ROW`` with rows
numbered from 1 (a JSON Lines file's line, an array's element, a table's row).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import polars as pl

from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS, RAW_SAMPLES

VERSION_FORMS = "latest, N, vN or a time such as 2026-12-06T05:00"
SAMPLE_FORMS = "a sample id (or 6+ of its first hex characters), a record id, or SHARD:ROW (rows from 1)"
MIN_PREFIX = 6


def recorded_versions(lake: Lake) -> list[int]:
    """curated_subset versions whose lineage is recorded (each a whole curation)."""
    versions = lake.scan(CURATION_RUNS).select("curated_version").drop_nulls().collect()["curated_version"]
    return sorted(versions.to_list())


def previous_version(lake: Lake, version: int) -> int | None:
    """The intact recorded curated version before ``version``, if any."""
    earlier = [recorded for recorded in recorded_versions(lake) if recorded < version]
    return next((recorded for recorded in reversed(earlier) if intact(lake, recorded)), None)


def spans(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``1-3, 5``."""
    ranges: list[list[int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges) or "none"


def resolve_version(lake: Lake, name: str | int | None = None) -> int:
    """The curated_subset version ``name`` names (see the module's forms); :class:`LakeError`
    with one line naming the recorded versions otherwise. A version named by number is opened as
    itself, so a broken newer commit does not hide it."""
    text = "latest" if name is None else str(name).strip()
    if text.lower() == "latest":
        latest = lake.version(CURATED_SUBSET)
        if latest is None:
            raise LakeError(f"no curated_subset in {lake.root}: is --lake right? (`qaq curate` creates it)")
        return latest
    number = re.fullmatch(r"[vV]?(\d+)", text)
    if number:
        version = int(number.group(1))
        if version == 0 and _opens(lake, 0):
            raise _not_recorded(lake, "version 0 is the empty table a lake starts with, no curation")
        if version > 0 and _opens(lake, version):
            return version  # whether its lineage is complete, lineage_record says
        raise _not_recorded(lake, f"no curated version {version}")
    moment = _moment(text)
    made = lake.scan(CURATION_RUNS).filter(pl.col("curated_version").is_not_null()).collect()
    before = made.filter(pl.col("created_at") <= moment).sort("created_at")
    if before.height == 0:
        raise _not_recorded(lake, f"no curated version existed at {moment.isoformat(timespec='seconds')}")
    return int(before["curated_version"][-1])


def _opens(lake: Lake, version: int) -> bool:
    try:
        return lake.delta_table(CURATED_SUBSET, version) is not None
    except LakeError:
        return False


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise LakeError(f"--version takes {VERSION_FORMS}, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _not_recorded(lake: Lake, what: str) -> LakeError:
    if lake.version(CURATED_SUBSET) is None:
        return LakeError(f"no curated_subset in {lake.root}: is --lake right? (`qaq curate` creates it)")
    versions = recorded_versions(lake)
    latest = f" (latest {versions[-1]})" if versions else ""
    return LakeError(f"{what}; recorded versions: {spans(versions)}{latest}; name one as {VERSION_FORMS}")


def recorded_curation(lake: Lake, version: int) -> dict | None:
    """The curation_runs row of the curation whose rows ``version`` holds (None: none recorded)."""
    ids = lake.scan(CURATED_SUBSET, version).select("curation_id").unique().collect()["curation_id"].drop_nulls()
    runs = lake.scan(CURATION_RUNS)
    if ids.len():
        rows = runs.filter(pl.col("curation_id") == ids[0]).collect()
    else:  # an empty subset carries no id; its lineage row names its version
        rows = runs.filter(pl.col("curated_version") == version).collect()
    return rows.row(0, named=True) if rows.height else None


def version_damage(lake: Lake, version: int, record: dict) -> str | None:
    """What differs between ``version``'s rows and what its curation recorded when it wrote them."""
    recorded_as = record["curated_version"]
    if recorded_as is not None and recorded_as != version:
        return f"it holds the rows of version {recorded_as}'s curation"
    if record["counts"] is None:
        return None  # written by a release that recorded no counts
    expected = sum(json.loads(record["counts"]).values())
    held = lake.scan(CURATED_SUBSET, version).select(pl.len()).collect().item()
    return None if held == expected else f"{held} rows where its curation wrote {expected}"


def intact(lake: Lake, version: int) -> bool:
    """Whether ``version`` holds what its curation recorded writing."""
    try:
        record = recorded_curation(lake, version)
    except LakeError:
        return False
    return record is not None and version_damage(lake, version, record) is None


def resolve_sample(lake: Lake, key: str, version: int, raw_version: int | None) -> pl.DataFrame:
    """The curated row(s) of curated_subset ``version`` that ``key`` names (see the module's
    forms; ``raw_version`` is the raw_samples version the curation read, for record ids)."""
    curated = lake.scan(CURATED_SUBSET, version)
    key = key.strip()
    shard, colon, row = key.rpartition(":")
    if colon and shard and row.lstrip("-").isdigit():
        number = int(row)
        if number < 1:
            raise LakeError(f"rows are numbered from 1 (a JSON Lines file's line, an array's element); no row {number}")
        rows = curated.filter((pl.col("shard") == shard) & (pl.col("row_index") == number)).collect()
        if rows.height:
            return rows
        held = curated.filter(pl.col("shard") == shard).select(
            pl.col("row_index").min().alias("low"), pl.col("row_index").max().alias("high")
        )
        low, high = held.collect().row(0)
        where = f"shard {shard!r} has rows {low}-{high}" if low is not None else f"no shard {shard!r}"
        raise LakeError(f"no row {number} in shard {shard!r} of curated version {version}: {where}")
    rows = curated.filter(pl.col("sample_id") == key).collect()
    if rows.height == 0 and re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},31}}", key):
        rows = curated.filter(pl.col("sample_id").str.starts_with(key)).collect()
        matched = rows["sample_id"].n_unique()
        if matched > 1:
            raise LakeError(f"sample id prefix {key!r} matches {matched} samples in version {version}; give more of it")
    if rows.height == 0:
        by_id = lake.scan(RAW_SAMPLES, raw_version).filter(pl.col("id") == key).select("shard", "row_index")
        rows = curated.join(by_id, on=["shard", "row_index"]).collect()
    if rows.height == 0:
        raise LakeError(f"no sample {key!r} in curated version {version}; name it as {SAMPLE_FORMS}")
    return rows
