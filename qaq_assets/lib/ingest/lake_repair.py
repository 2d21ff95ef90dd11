"""``qaq repair``: what of a lake is damaged, what can be restored, and restoring it.

A data file deleted from under a table (a disk error, a hand's ``rm``, a vacuum run with the wrong
retention) makes every read of that table fail, at every version that holds it. Each table's
log is checked against its files (delta-rs' FSCK: ``repair``): files its latest version lists
that are gone. Those are dropped from the latest version (one commit per table), and their
shards restored: the ingest tables (raw_samples, quarantine, sample_features) from the
shard's registered source file, where it is still the file that was registered; the scores are
computed again by the next ``qaq curate`` (a shard without scores is scored; the score cache
keeps what it holds; where the cache lost the only copy of a shard's per-token lists, that
shard's token_logprobs and qaq_scores rows are dropped, so it is scored again); a curated
version that lost a file is refused as damaged and the next ``qaq curate`` publishes a whole one.
What cannot be restored is said, with why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

import polars as pl

from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.registry import source_paths
from qaq_assets.lib.ingest.shard_ingest import ingest_shards
from qaq_assets.lib.scoring.token_lists import CACHE_ROW_KEY
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import (
    ALL_TABLES,
    CURATED_SUBSET,
    QAQ_SCORES,
    QUARANTINE,
    RAW_SAMPLES,
    SAMPLE_FEATURES,
    SCORE_CACHE,
    SHARD_SOURCES,
    TOKEN_LOGPROBS,
    TableSpec,
)

INGEST_TABLES = (RAW_SAMPLES.name, QUARANTINE.name, SAMPLE_FEATURES.name)
SCORE_TABLES = (TOKEN_LOGPROBS.name, QAQ_SCORES.name, SCORE_CACHE.name)


@dataclass
class Damage:
    """A table's files that its latest version lists and that are gone, and the shards whose rows
    they held: a partition's value, or (a file of several shards) every registered shard within
    the file's min/max statistics of ``shard``."""

    table: str
    missing_files: list[str]
    shards: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    damage: list[Damage] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # shards re-ingested from their sources
    lost: dict[str, str] = field(default_factory=dict)  # shard -> why it cannot be restored
    rescore: list[str] = field(default_factory=list)  # shards the next curate scores again
    recurate: bool = False  # a curated version lost a file: the next curate publishes a whole one

    def lines(self, applied: bool) -> list[str]:
        if not self.damage:
            return ["no damage found: every table's latest version has all its files"]
        out = [f"{d.table}: {len(d.missing_files)} file(s) missing ({', '.join(d.missing_files[:3])}"
               f"{', ...' if len(d.missing_files) > 3 else ''})" for d in self.damage]  # fmt: skip
        verb = "" if applied else "would be "
        out += [f"shard {shard}: {verb}re-ingested from its registered file" for shard in self.restored]
        out += [f"shard {shard}: cannot be restored: {why}" for shard, why in self.lost.items()]
        if self.rescore:
            out.append(f"scores of {', '.join(self.rescore)}: computed again by the next `qaq curate`")
        if self.recurate:
            out.append(
                "curated versions from before the repair read the lost file and are refused; the next `qaq curate` "
                "(the same files: nothing is read or scored again) publishes a whole one"
            )
        if not applied:
            out.append("nothing changed (--dry-run)")
        return out


def find_damage(lake: Lake) -> list[Damage]:
    """Each table whose latest version lists files that are gone."""
    damage, registered = [], None
    for table in ALL_TABLES:
        delta = lake.delta_table(table)
        if delta is None:
            continue
        missing = sorted(delta.repair(dry_run=True).get("files_removed", []))
        if not missing:
            continue
        if registered is None:
            registered = lake.scan(SHARD_SOURCES).select("shard").unique().collect()["shard"]
        damage.append(Damage(table.name, missing, _shards_of(lake, table, missing, registered)))
    return damage


def _shards_of(lake: Lake, table: TableSpec, missing: list[str], registered: pl.Series) -> list[str]:
    ranges = lake.shard_ranges(table)
    lost = ranges.filter(pl.col("path").map_elements(unquote, pl.String).is_in([unquote(p) for p in missing]))
    shards: set[str] = set()
    for first, last in lost.select("first_shard", "last_shard").drop_nulls().iter_rows():
        # A file of one shard names it (registered or not: the report then says it cannot be restored).
        shards.update([first] if first == last else registered.filter(registered.is_between(first, last)).to_list())
    return sorted(shards)


def repair_lake(lake: Lake, config: IngestConfig = IngestConfig(), dry_run: bool = False) -> RepairReport:
    """Find the damage and, unless ``dry_run``, drop the lost files and restore their shards."""
    report = RepairReport(damage=find_damage(lake))
    by_table = {damage.table: damage for damage in report.damage}
    to_ingest = sorted({shard for name in INGEST_TABLES if name in by_table for shard in by_table[name].shards})
    report.rescore = sorted({shard for name in SCORE_TABLES if name in by_table for shard in by_table[name].shards})
    lists_lost = _lists_lost(lake, by_table) if SCORE_CACHE.name in by_table else {}
    report.rescore = sorted(set(report.rescore).union(*lists_lost.values()))
    # A curated version reads raw_samples as of its curation: one that lost a file stays unreadable.
    report.recurate = CURATED_SUBSET.name in by_table or any(name in by_table for name in INGEST_TABLES)
    if not dry_run:
        for damage in report.damage:
            lake.delta_table(damage.table).repair(dry_run=False)
        for model_key, shards in lists_lost.items():
            for table in (TOKEN_LOGPROBS, QAQ_SCORES):
                lake.replace_partition(table, table.empty(), {"model_key": model_key, "shard": shards})
    paths, refused = source_paths(lake, to_ingest)
    report.lost |= {shard: str(cause) for shard, cause in refused.items()}
    if dry_run:
        report.restored = sorted(paths)
        return report
    ingested = ingest_shards(lake, sorted(paths.items()), config)
    report.lost |= {shard: str(cause) for shard, cause in ingested.failures.items()}
    report.restored = sorted(ingested.reads)
    return report


def _readable(lake: Lake, table: TableSpec, missing: Iterable[str]) -> pl.LazyFrame:
    """``table``'s latest version without its ``missing`` files (a scan of the table would fail on them)."""
    delta = lake.delta_table(table)
    if delta is None:
        return table.empty().lazy()
    gone = {path.rsplit("/", 1)[-1] for path in missing}
    files = [uri for uri in delta.file_uris() if unquote(uri.rsplit("/", 1)[-1]) not in gone]
    if not files:
        return table.empty().lazy()
    partitions = {column: table.schema[column] for column in lake.partition_columns(table)}
    return pl.scan_parquet(
        files, hive_partitioning=True, hive_schema=partitions, storage_options=lake.storage_options
    ).select([pl.col(column).cast(dtype) for column, dtype in table.schema.items()])


def _lists_lost(lake: Lake, by_table: dict[str, Damage]) -> dict[str, list[str]]:
    """Model key -> shards with token_logprobs rows whose per-token lists only the score cache's lost
    files held (the lists are stored once, in the cache)."""

    def readable(table: TableSpec) -> pl.LazyFrame:
        damage = by_table.get(table.name)
        return _readable(lake, table, damage.missing_files if damage else ())

    rows = readable(TOKEN_LOGPROBS).select("model_key", "shard", *CACHE_ROW_KEY)
    lost = (
        rows.join(readable(SCORE_CACHE).select(CACHE_ROW_KEY).unique(), on=CACHE_ROW_KEY, how="anti", nulls_equal=True)
        .select("model_key", "shard")
        .unique()
        .collect()
    )
    return {key: sorted(group["shard"].to_list()) for (key,), group in lost.group_by("model_key")}
