"""Build a curated subset from the lake: every ingested row with a decision and a reason,
plus the lineage record that makes the version explainable and reproducible."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest.decontamination import MIN_SHARED, NGRAM_WORDS
from qaq_assets.lib.ingest.features import FEATURE_INPUTS, sample_features, signature_array
from qaq_assets.lib.selection.config import STABLE, SelectionConfig
from qaq_assets.lib.selection.dedup import near_duplicate_twins
from qaq_assets.lib.selection.reasons import NOT_CANDIDATES, ReasonCode, is_filtered
from qaq_assets.lib.selection.rules import DROP, KEEP, keep_count, select
from qaq_assets.lib.store.columns import FEW_VALUED_FEATURES, MODEL_IDENTITY, RULE_SCORES, SELECTION_FEATURES
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import (
    CURATED_STRATEGY_COLUMNS,
    CURATED_SUBSET,
    CURATION_RUNS,
    QAQ_SCORES,
    RAW_SAMPLES,
    SAMPLE_FEATURES,
)

log = logging.getLogger(__name__)


def candidates_of(curated: pl.DataFrame) -> pl.DataFrame:
    """The rows of a curated version that selection chose among (duplicates and leaks left out)."""
    return curated.filter(~pl.col("reason_code").is_in([reason.value for reason in NOT_CANDIDATES]))


class CurationError(QaqError, ValueError):
    """The lake's scores cannot be combined into one consistent curation."""


@dataclass
class Curation:
    curation_id: str
    frame: pl.DataFrame
    shards: list[str]
    pending_shards: list[str]
    input_versions: dict[str, int | None]
    models: list[dict]
    template_versions: list[str]
    strategy: str  # the rule that ran (``auto`` resolved)
    benchmarks: list[str]

    @cached_property
    def counts(self) -> dict[str, int]:
        return decision_counts(self.frame)

    def lineage_row(self, curated_version: int | None, run_id: str, config: SelectionConfig) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "curation_id": self.curation_id,
                    "curated_version": curated_version,
                    "created_at": datetime.now(UTC),
                    "dagster_run_id": run_id,
                    "input_versions": json.dumps(self.input_versions, sort_keys=True),
                    "shards": self.shards,
                    "models": json.dumps(self.models, sort_keys=True),
                    "template_version": ",".join(self.template_versions),
                    # The rule that ran, not ``auto``: what a reader needs to reproduce it.
                    "selection_config": replace(config, strategy=self.strategy).to_json(),
                    "selection_config_sha": replace(config, strategy=self.strategy).sha(),
                    "counts": json.dumps(self.counts, sort_keys=True),
                    "decontamination": json.dumps(
                        {"checked": self.benchmarks, "ngram_words": NGRAM_WORDS, "min_shared": MIN_SHARED}
                    ),
                }
            ],
            schema=CURATION_RUNS.schema,
        )


def decision_counts(curated: pl.DataFrame) -> dict[str, int]:
    """Rows per ``decision:reason_code``; they add up to the curated rows."""
    counts = with_reason_code(curated).group_by("decision", "reason_code").len().sort("decision", "reason_code")
    return {f"{decision}:{code}": n for decision, code, n in counts.iter_rows()}


def with_reason_code(curated: pl.DataFrame) -> pl.DataFrame:
    """``curated`` with its ``reason_code`` filled; versions written before the column existed
    (null there) get it from their reason's leading code."""
    if not curated["reason_code"].has_nulls():  # every version since: no reason need be parsed
        return curated
    derived = pl.col("reason").str.extract(r"^([a-z0-9_+]+?)(?:_of)?(?::|$)", 1)
    return curated.with_columns(reason_code=pl.coalesce("reason_code", derived))


IDENTITY_COLUMNS = ("model_key", *MODEL_IDENTITY)


def _model_identities(identities: pl.DataFrame, model_keys: list[str]) -> list[dict]:
    models = []
    for key in model_keys:
        rows = identities.filter(pl.col("model_key") == key)
        if rows.height == 0:
            raise CurationError(f"no qaq_scores for model {key!r}; score the shards with it first")
        if rows.height > 1:
            raise CurationError(
                f"qaq_scores for model {key!r} mix weights or templates {rows.to_dicts()}; "
                "re-materialize its shards with one configuration"
            )
        models.append(rows.row(0, named=True))
    return models


# A row's key as reasons name it: "shard:row".
ROW_KEY = pl.col("shard") + ":" + pl.col("row_index").cast(pl.String)


def _split_exact_duplicates(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first occurrence (by shard, row) of each sample, in (shard, row) order, and every
    later occurrence dropped with a pointer to it. Keys ("shard:row") are built for the
    duplicates only: a string per row of the corpus would cost more than the rest of its row."""
    ordered = raw.sort("shard", "row_index")
    positions = ordered.select(position=pl.int_range(pl.len(), dtype=pl.UInt32), sample_id="sample_id")
    positions = positions.with_columns(first=pl.col("position").first().over("sample_id")).drop("sample_id")
    later = positions.filter(pl.col("position") != pl.col("first"))
    of = ordered.select("shard", "row_index")[later["first"]]
    exact = ordered[later["position"]].with_columns(
        decision=pl.lit(DROP),
        reason_code=pl.lit(ReasonCode.EXACT_DUPLICATE.value),
        reason=pl.lit("exact_duplicate_of:") + of.select(ROW_KEY).to_series(),
    )
    return ordered.filter(positions["position"] == positions["first"]), exact


def _split_near_duplicates(
    canonical: pl.DataFrame, signatures_of, threshold: float
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows to select among, and near-duplicate rows dropped with a pointer to their kept twin
    (``canonical`` in (shard, row) order, compared in that order on the band keys and
    signatures stored at ingest)."""
    positions = canonical.select("band_keys").with_row_index("position")
    twins = near_duplicate_twins(positions, signatures_of(canonical), threshold)
    canonical = canonical.drop("band_keys")
    if not twins:
        return canonical, canonical.clear()
    # Positions, not a Python object per row: the twins' keys are built for the dropped rows only.
    near_at, twin_at = (pl.Series(np.fromiter(side, np.int64, len(twins))) for side in (twins.keys(), twins.values()))
    twin = canonical.select("shard", "row_index")[twin_at]
    near = canonical[near_at].with_columns(
        decision=pl.lit(DROP),
        reason_code=pl.lit(ReasonCode.NEAR_DUPLICATE.value),
        reason=pl.lit("near_duplicate_of:") + twin.select(ROW_KEY).to_series(),
    )
    dropped = np.zeros(canonical.height, dtype=bool)
    dropped[near_at.to_numpy()] = True
    return canonical.filter(~pl.Series(dropped)), near


def _row_keys(frame: pl.DataFrame, shards: pl.Series) -> pl.Series:
    """(shard, row_index) as one integer (the shard's place in ``shards``, then the row): a join
    on it hashes 8 bytes a row, where one on a string and an integer encodes both first."""
    shard_at = pl.col("shard").replace_strict(shards, pl.int_range(shards.len(), dtype=pl.UInt64), default=None)
    return frame.select(shard_at * 2**32 + pl.col("row_index").cast(pl.UInt64)).to_series().alias("_key")


def _matching_rows(frame: pl.DataFrame, other: pl.DataFrame) -> pl.Series:
    """For each row of ``frame``, the position of ``other``'s row of the same (shard, row_index)
    (null where none). Only the keys are joined, as one integer: the caller gathers the columns
    it needs once, where a join of whole frames copies each several times at 10^7 rows."""
    if frame.height and frame["row_index"].max() >= 2**32:
        raise CurationError("a shard holds more than 2^32 rows; split it")
    shards = other["shard"].unique()
    return (
        _row_keys(frame, shards)
        .to_frame()
        .join(_row_keys(other, shards).to_frame().with_row_index("_at"), on="_key", how="left", maintain_order="left")
        .get_column("_at")
    )


def _with_features(canonical: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """``canonical`` with its rows' features (null where a row has none), in its order: a left
    join on (shard, row_index)."""
    at = _matching_rows(canonical, features)
    return canonical.hstack(features.drop("shard", "row_index").select(pl.all().gather(at)))


def _model_scores(canonical: pl.DataFrame, scores: pl.DataFrame, key: str) -> pl.DataFrame:
    columns = ["shard", "sample_id", *RULE_SCORES]
    # The rules read the features as text.
    features = [pl.col(name).cast(dtype) for name, dtype in SELECTION_FEATURES.items()]
    return canonical.select("shard", "sample_id", *features).join(
        scores.filter(pl.col("model_key") == key).select(columns),
        on=["shard", "sample_id"],
        how="inner",
        maintain_order="left",
    )


@dataclass
class Candidates:
    """Everything selection needs: deduplicated rows, per-model scores, and the dropped twins."""

    canonical: pl.DataFrame  # one row per distinct sample, to select among
    dropped: pl.DataFrame  # exact and near duplicates, each pointing at its kept twin
    strong: pl.DataFrame | None  # None once curate() has handed it to selection
    weak: pl.DataFrame | None
    shards: list[str]
    pending_shards: list[str]
    input_versions: dict[str, int | None]
    models: list[dict]
    benchmarks: list[str]  # what decontamination checked (benchmarks, content hash, n, minimum shared)


def _select_or_null(scan: pl.LazyFrame, names: tuple[str, ...], schema: pl.Schema) -> pl.LazyFrame:
    """``names`` of ``scan``; those a table written by an older release lacks read as null (unknown)."""
    present = set(scan.collect_schema().names())
    return scan.select(pl.col(name) if name in present else pl.lit(None, schema[name]).alias(name) for name in names)


_as_categories = pl.col(FEW_VALUED_FEATURES).cast(pl.Categorical)


# Shards one read of signatures asks for, at least (a file's, where a file holds more).
SIGNATURE_READ_SHARDS = 16


def shards_by_file(shards: pl.Series, ranges: pl.DataFrame, at_least: int) -> list[pl.Series]:
    """``shards`` in groups that each whole files hold (``ranges``: see :meth:`Lake.shard_ranges`),
    files taken together until a group has ``at_least`` shards; shards no file's statistics
    place, in groups of ``at_least``."""
    left, groups, group = shards.unique().sort(), [], shards.clear()
    for first, last in ranges.select("first_shard", "last_shard").drop_nulls().sort("first_shard").iter_rows():
        inside = left.is_between(first, last)
        if inside.any():
            group, left = pl.concat([group, left.filter(inside)]), left.filter(~inside)
        if group.len() >= at_least:
            groups.append(group)
            group = shards.clear()
    if group.len():
        groups.append(group)
    return groups + [left.slice(offset, at_least) for offset in range(0, left.len(), at_least)]


class _Features:
    """``sample_features`` of the curated shards as of one version: code status and band keys for
    every row, signatures on demand. Shards ingested before features were stored (an older
    release) get theirs computed from the text, in memory, once per curation."""

    def __init__(self, lake: Lake, version: int | None, raw_version: int | None, shards: list[str]):
        self.lake, self.version = lake, version
        wanted = ("shard", "row_index", *SELECTION_FEATURES, "band_keys", "benchmark_item", "benchmark_key")
        scan = lake.scan(SAMPLE_FEATURES, version).filter(pl.col("shard").is_in(shards))
        stored = _select_or_null(scan, wanted, SAMPLE_FEATURES.schema).with_columns(_as_categories).collect()
        missing = sorted(set(shards) - set(stored["shard"].unique()))
        self.computed = pl.DataFrame()
        if missing:
            log.warning(
                "%d shards have no stored features (ingested by an older release): computing them", len(missing)
            )
            raw = lake.scan(RAW_SAMPLES, raw_version).filter(pl.col("shard").is_in(missing))
            self.computed = sample_features(
                _select_or_null(raw, FEATURE_INPUTS, RAW_SAMPLES.schema).collect()
            ).with_columns(_as_categories)
            stored = pl.concat([stored, self.computed.select(stored.columns)])
        # What decontamination checked is a few names: a column of them per row is not carried on.
        self.benchmarks = sorted(stored["benchmark_key"].drop_nulls().unique().to_list())
        self.rows: pl.DataFrame | None = stored.drop("benchmark_key")

    def release_rows(self) -> pl.DataFrame:
        """The rows, no longer held here: what the caller's join keeps is all curation needs."""
        rows, self.rows = self.rows, None
        return rows

    def signatures_of(self, ordered: pl.DataFrame):
        """``signatures_of(positions)`` over ``ordered`` (rows at ``position``), read from the lake."""

        def read(positions: list[int]) -> np.ndarray:
            if not positions:
                return signature_array([])
            wanted = ordered.select("shard", "row_index").with_row_index("order")[positions]
            scan = self.lake.scan(SAMPLE_FEATURES, self.version).select("shard", "row_index", "minhash")
            if self.computed.height:
                scan = pl.concat([scan, self.computed.lazy().select("shard", "row_index", "minhash")])
            ranges = self.lake.shard_ranges(SAMPLE_FEATURES, self.version)
            orders, signatures = [], []
            # The wanted rows are spread over every file: a few whole files at a time are read, for
            # their wanted rows, which are copied out at once: a row read keeps its file's decoded
            # column alive (a view into it), so holding the rows would hold every file's.
            for shards in shards_by_file(wanted["shard"].unique(), ranges, SIGNATURE_READ_SHARDS):
                # Shards named as a list: the scan then skips the files whose statistics exclude them.
                in_group = pl.col("shard").is_in(shards.to_list())
                part = scan.filter(in_group).join(wanted.filter(in_group).lazy(), on=["shard", "row_index"])
                part = part.select("order", "minhash").collect(engine="streaming")
                orders.append(part["order"].to_numpy())
                signatures.append(signature_array(part["minhash"].to_list()))
            found = np.concatenate(signatures)[np.argsort(np.concatenate(orders), kind="stable")]
            if len(found) != len(positions):
                raise CurationError(f"{len(positions) - len(found)} samples have no stored signature")
            return found

        return read


class PartialCorpusError(CurationError):
    """Some ingested shards lack scores from a configured model: curating now would publish a
    subset of the corpus as the latest version."""

    def __init__(self, unscored: dict[str, list[str]]):
        self.unscored = unscored
        shards = sorted(unscored)
        named = ", ".join(f"{shard} ({', '.join(unscored[shard])})" for shard in shards[:10])
        more = f" and {len(shards) - 10} more" if len(shards) > 10 else ""
        super().__init__(
            f"{len(shards)} shard(s) lack scores from a configured model: {named}{more}; nothing was published. "
            "Score them first (`qaq curate` scores what is missing), or pass --allow-partial to curate without them"
        )


# Shards whose samples one step of the unscored check compares: its hash table holds their keys only.
UNSCORED_CHECK_SHARDS = 64


def _unscored(raw: pl.DataFrame, scores: pl.DataFrame, model_keys: list[str]) -> dict[str, list[str]]:
    """Shards with a sample that a model has not scored (a new model, a shard re-ingested since
    it was scored), and which models, in ``model_keys``' order."""
    shards = raw["shard"].unique().sort()
    # Each row's step, found once: a step's rows are then an integer comparison away, where
    # asking for its shards by name compares every row's shard once per step.
    step_of = pl.col("shard").replace_strict(
        shards, pl.int_range(shards.len(), dtype=pl.UInt32) // UNSCORED_CHECK_SHARDS, default=None
    )
    raw = raw.select("shard", "sample_id", _step=step_of)
    scores = scores.filter(pl.col("model_key").is_in(model_keys)).select(
        "model_key", "shard", "sample_id", _step=step_of
    )
    missing: dict[str, list[str]] = {}
    for step in range(-(-shards.len() // UNSCORED_CHECK_SHARDS)):
        # A repeated sample needs no unique(): only shards are asked.
        samples = raw.filter(pl.col("_step") == step).select("shard", "sample_id")
        for key in model_keys:
            scored = scores.filter((pl.col("_step") == step) & (pl.col("model_key") == key)).select(
                "shard", "sample_id"
            )
            for shard in samples.join(scored, on=["shard", "sample_id"], how="anti")["shard"].unique().sort():
                missing.setdefault(shard, []).append(key)
    return {shard: missing[shard] for shard in sorted(missing)}


# What a score row's numbers depend on, besides its text (see ScorerIdentity).
SCORE_KEY_COLUMNS = ("model_fingerprint", "template_version", "max_sequence_tokens")


def unscored_shards(lake: Lake, expected: dict[str, dict | None]) -> dict[str, list[str]]:
    """Ingested shards that a model must score before a curation, and which models: a sample
    without its score, or scores keyed otherwise than ``expected[model_key]`` (the
    :data:`SCORE_KEY_COLUMNS` the configured model has; None where unknown before loading)."""
    model_keys = list(expected)
    raw = lake.scan(RAW_SAMPLES).select("shard", "sample_id").collect()
    scores = lake.scan(QAQ_SCORES).filter(pl.col("model_key").is_in(model_keys))
    current = pl.lit(True)
    for key, identity in expected.items():
        if identity is not None:
            matches = pl.all_horizontal([pl.col(column) == identity[column] for column in SCORE_KEY_COLUMNS])
            current = pl.when(pl.col("model_key") == key).then(matches.fill_null(False)).otherwise(current)
    scores = scores.filter(current).select("model_key", "shard", "sample_id").collect()
    return _unscored(raw, scores, model_keys)


def prepare(lake: Lake, model_keys: list[str], config: SelectionConfig, shards: list[str] | None = None) -> Candidates:
    """Read one consistent snapshot of the lake and deduplicate, for every shard (of ``shards``,
    where given) scored by all ``model_keys`` (strong first). Reads no text: ids, labels, stored
    features and scores."""
    if not model_keys:
        raise CurationError("no models configured")
    versions = {table.name: lake.version(table) for table in (RAW_SAMPLES, SAMPLE_FEATURES, QAQ_SCORES)}
    raw = lake.scan(RAW_SAMPLES, versions["raw_samples"]).select("shard", "row_index", "sample_id", "label")
    if shards is not None:
        raw = raw.filter(pl.col("shard").is_in(shards))
    raw = raw.collect()
    scores_scan = lake.scan(QAQ_SCORES, versions["qaq_scores"]).filter(pl.col("model_key").is_in(model_keys))
    scores = scores_scan.select("model_key", "shard", "sample_id", *RULE_SCORES).collect()
    unscored = _unscored(raw, scores, model_keys)
    if unscored and not config.allow_partial:
        raise PartialCorpusError(unscored)
    # Streamed: the identity columns of every score row are long strings, and only a few differ.
    models = _model_identities(scores_scan.select(*IDENTITY_COLUMNS).unique().collect(engine="streaming"), model_keys)
    complete = sorted(set(raw["shard"].unique()) - set(unscored))
    pending = sorted(unscored)
    canonical, exact = _split_exact_duplicates(raw.filter(pl.col("shard").is_in(complete)))
    del raw

    features = _Features(lake, versions["sample_features"], versions["raw_samples"], complete)
    # In (shard, row) order still: near duplicates are compared in that order.
    canonical = _with_features(canonical, features.release_rows())
    is_leaked = pl.col("benchmark_item").is_not_null()
    leaked = canonical.filter(is_leaked).with_columns(
        decision=pl.lit(DROP),
        reason_code=pl.lit(ReasonCode.BENCHMARK_OVERLAP.value),
        reason=pl.format(
            "benchmark_overlap: shares {}+ word {}-grams with {}",
            pl.lit(MIN_SHARED),
            pl.lit(NGRAM_WORDS),
            pl.col("benchmark_item"),
        ),
    )
    # A filter copies every row: only when some leaked.
    canonical = (canonical.filter(~is_leaked) if leaked.height else canonical).drop("benchmark_item")
    canonical, near = _split_near_duplicates(canonical, features.signatures_of, config.near_duplicate_threshold)
    by_model = [_model_scores(canonical, scores, key) for key in model_keys]
    del scores
    if by_model[0].height != canonical.height:
        missing = canonical.height - by_model[0].height
        raise CurationError(f"{missing} ingested samples have no score; re-materialize token_logprobs for their shards")
    # The features travel with the scores (and the decisions made from them), not twice.
    canonical = canonical.select("shard", "row_index", "sample_id", "label")
    return Candidates(
        canonical=canonical,
        dropped=pl.concat([leaked, near, exact], how="diagonal_relaxed"),
        strong=by_model[0],
        weak=by_model[1] if len(by_model) > 1 else None,
        shards=complete,
        pending_shards=pending,
        input_versions=versions,
        models=models,
        benchmarks=features.benchmarks,
    )


def curate(lake: Lake, model_keys: list[str], config: SelectionConfig, curation_id: str) -> Curation:
    """Every ingested row of the scored shards with its decision and reason: the candidates in
    (shard, row) order, then the duplicates and benchmark overlaps dropped before selection."""
    strategy = config.resolved_strategy(len(model_keys))
    candidates = prepare(lake, model_keys, config)
    # Each frame is let go as soon as the next holds what it needs: at 10^7 rows a frame is GiBs.
    scores, candidates.strong, candidates.weak = (candidates.strong, candidates.weak), None, None
    selected = select(strategy, *scores, config).drop("shard")
    del scores
    # Selection keeps its input's order, which is the candidates' (see _model_scores).
    if not selected["sample_id"].equals(candidates.canonical["sample_id"]):
        raise CurationError(f"strategy {strategy!r} returned its rows out of the candidates' order")
    decided = candidates.canonical.select("shard", "row_index", "label").hstack(selected)
    del selected
    # The curated columns only (the dropped twins carry every feature they were read with, and
    # no scores: null); those every row shares are added last.
    run = {"model_key": pl.lit(model_keys[0]), "strategy": pl.lit(strategy), "curation_id": pl.lit(curation_id)}
    frame = pl.concat(
        [
            CURATED_SUBSET.conform(decided, optional=CURATED_STRATEGY_COLUMNS, leave_out=tuple(run)),
            CURATED_SUBSET.conform(candidates.dropped, optional=tuple(CURATED_SUBSET.schema), leave_out=tuple(run)),
        ]
    )
    del decided
    # Not sorted: a sorted copy of 10^7 rows costs GiBs, and readers of the table order it
    # themselves (a Delta table's scan order is its files').
    frame = CURATED_SUBSET.conform(frame.with_columns(**run))
    if config.decisions == STABLE:
        frame = CURATED_SUBSET.conform(_keep_earlier_decisions(lake, frame))
    return Curation(
        curation_id=curation_id,
        frame=frame,
        shards=candidates.shards,
        pending_shards=candidates.pending_shards,
        input_versions=candidates.input_versions,
        models=candidates.models,
        template_versions=sorted({m["template_version"] for m in candidates.models}),
        strategy=strategy,
        benchmarks=candidates.benchmarks,
    )


def _earlier_decisions(lake: Lake) -> pl.DataFrame | None:
    """The latest curated version's decisions per (shard, row, sample), where there is one."""
    version = lake.version(CURATED_SUBSET)
    if not version:
        return None
    return (
        lake.scan(CURATED_SUBSET, version)
        .select("shard", "row_index", "sample_id", "decision", "reason", "reason_code")
        .collect()
    )


def _keep_earlier_decisions(lake: Lake, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each sample the latest version holds (the same shard, row and text) keeping
    the decision and reason it had there: under ``--decisions stable`` only new samples are decided."""
    earlier = _earlier_decisions(lake)
    if earlier is None or earlier.height == 0:
        return frame
    kept = ("decision", "reason", "reason_code")
    matched = earlier.select(pl.all().gather(_matching_rows(frame, earlier)))
    same = (matched["sample_id"] == frame["sample_id"]).fill_null(False)
    return frame.with_columns(pl.coalesce(pl.when(same).then(matched[name]), pl.col(name)).alias(name) for name in kept)


# A check that removes more than this share of the candidates says so on every run.
ODD_FILTERED_SHARE = 0.5


def curation_warnings(curated: pl.DataFrame, budget: float) -> list[str]:
    """What is odd about a curated version, one line each, with the flag that changes it: the
    checks removed most of the input, or fewer samples were kept than the budget asks."""
    candidates = candidates_of(curated)
    if candidates.height == 0:
        return []
    filtered = candidates.filter(is_filtered(pl.col("reason_code")))
    kept = candidates.filter(pl.col("decision") == KEEP).height
    wanted = keep_count(candidates.height, budget)
    by_code = ", ".join(
        f"{code} {n}" for code, n in filtered.group_by("reason_code").len().sort("len", descending=True).iter_rows()
    )
    warnings = []
    if filtered.height > ODD_FILTERED_SHARE * candidates.height:
        warnings.append(
            f"the checks removed {filtered.height} of {candidates.height} samples ({by_code}); "
            "if the data is right, curate with --strategy rmi-band (the band alone)"
        )
    if kept < wanted:
        warnings.append(
            f"kept {kept} samples, fewer than the budget's {wanted}: the checks left only "
            f"{candidates.height - filtered.height} eligible ({by_code}); --strategy rmi-band keeps the budget"
        )
    return warnings


# Curations that see a newer one commit while they run start again from the new inputs.
PUBLISH_ATTEMPTS = 5


def publish(
    lake: Lake, model_keys: list[str], config: SelectionConfig, run_id: str, logger: logging.Logger = log
) -> tuple[int, Curation]:
    """Curate and commit a new curated_subset version; returns it and its curation.

    The lineage row is written first (keyed by curation id, which every curated row carries),
    so a reader never finds a version without its lineage. A curation that sees another one
    commit after it read its inputs starts again from the new inputs, so a slow curation never
    publishes a stale snapshot over a newer one."""
    _skip_lost_versions(lake, logger)
    for attempt in range(PUBLISH_ATTEMPTS):
        base = lake.version(CURATED_SUBSET)
        curation = curate(lake, model_keys, config, curation_id=run_id if attempt == 0 else f"{run_id}.{attempt}")
        if lake.version(CURATED_SUBSET) != base:
            logger.warning("a newer curation committed while this one read its inputs; curating again")
            continue
        lake.append(CURATION_RUNS, curation.lineage_row(None, run_id, config))
        version = lake.overwrite(CURATED_SUBSET, curation.frame)
        lake.upsert(CURATION_RUNS, curation.lineage_row(version, run_id, config), keys=["curation_id"])
        if base is None or version == base + 1:
            return version, curation
        logger.warning(
            f"another curation committed between this one's read and its commit (v{version}); curating again"
        )
    raise CurationError(f"curated_subset kept changing under {PUBLISH_ATTEMPTS} curation attempts")


def _skip_lost_versions(lake: Lake, logger: logging.Logger) -> None:
    """Commit nothing under the numbers of recorded versions the table's log lost (a deleted
    commit), so that a version number, once published, never names other rows: the lost ones
    then hold their predecessor's rows and readers refuse them as damaged."""
    recorded = lake.scan(CURATION_RUNS).select(pl.col("curated_version").max()).collect().item()
    current = lake.version(CURATED_SUBSET) or 0
    if recorded is None or recorded <= current:
        return
    logger.warning(
        f"curated_subset's log lost version(s) {current + 1}-{recorded} recorded in curation_runs: "
        "their numbers are skipped, never reused"
    )
    while current < recorded:
        current = lake.append(CURATED_SUBSET, pl.DataFrame(schema=CURATED_SUBSET.schema))
