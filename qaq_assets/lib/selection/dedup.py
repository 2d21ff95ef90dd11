"""Near-duplicate detection with MinHash LSH: each sample that repeats an earlier kept one, by
estimated Jaccard similarity of word 5-shingles, points at that one (the earliest such).

:func:`near_duplicate_twins` works on the band keys and signatures stored at ingest
(:mod:`qaq_assets.lib.ingest.features`): candidates are samples sharing a band key, found with one
polars group-by over all shards, then confirmed by signature similarity, exactly as a
datasketch ``MinHashLSH`` index queried in order would decide. :func:`near_duplicates` is that
index over raw texts, kept as the reference the stored path is tested against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from qaq_assets.lib.ingest.features import BAND_THRESHOLD, BANDS, NUM_PERM, ROWS, band_keys, shingles

SHINGLE_WORDS = 5


def minhash(text: str) -> MinHash:
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    signature.update_batch([s.encode("utf-8") for s in shingles(text)])
    return signature


def near_duplicates(texts: list[str], threshold: float) -> dict[int, int]:
    """``{i: j}`` for each text ``i`` whose similarity to an earlier kept text ``j`` is at least
    ``threshold`` (``j`` the earliest such). Texts are compared in the given order."""
    if threshold >= 1.0:
        return {}
    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: dict[int, MinHash] = {}
    twins: dict[int, int] = {}
    for i, text in enumerate(texts):
        try:
            signature = minhash(text)
        except Exception:  # noqa: BLE001 - a text that cannot be signed is compared with nothing
            continue
        # LSH returns candidates; confirm with the estimated similarity to drop false positives.
        matches = [int(key) for key in index.query(signature) if kept[int(key)].jaccard(signature) >= threshold]
        if matches:
            twins[i] = min(matches)
        else:
            index.insert(str(i), signature)
            kept[i] = signature
    return twins


def lsh_bands(threshold: float) -> tuple[int, int]:
    """The (bands, rows) datasketch's MinHashLSH uses at ``threshold``."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, NUM_PERM, 0.5, 0.5)


# Candidate pairs compared at once, in numpy (their signatures in blocks of PAIRS_PER_BLOCK).
# Beyond it (a bucket of thousands of samples, whose pairs grow with its size squared) the
# samples are compared one by one in order, each stopping at its first match.
MAX_PAIRS = 4_000_000
PAIRS_PER_BLOCK = 65_536


def near_duplicate_twins(
    keys: pl.DataFrame,
    signatures_of: Callable[[list[int]], np.ndarray],
    threshold: float,
    max_pairs: int = MAX_PAIRS,
) -> dict[int, int]:
    """``{i: j}`` over samples at ``position`` 0..n-1 (the comparison order) with their stored
    ``band_keys``; ``signatures_of(positions)`` returns those samples' signature rows, and is
    asked only for samples that share a band with another. With a threshold other than the
    one the stored bands serve, bands are recomputed from every signature."""
    if threshold >= 1.0 or keys.height == 0:
        return {}
    if lsh_bands(threshold) != (BANDS, ROWS) or threshold != BAND_THRESHOLD:
        bands, rows = lsh_bands(threshold)
        recomputed = band_keys(signatures_of(keys["position"].to_list()), bands, rows).view(np.int64)
        keys = pl.DataFrame({"position": keys["position"], "band_keys": recomputed.tolist()})
    members = _bucket_members(keys)
    if members.height == 0:
        return {}
    involved = members["position"].unique().sort()
    signatures = signatures_of(involved.to_list())
    sizes = members.group_by("bucket").len()["len"].cast(pl.Int64)
    if (sizes * (sizes - 1) // 2).sum() <= max_pairs:
        return _twins_of_pairs(members, involved.to_numpy(), signatures, threshold)
    return _twins_in_order(members, involved.to_list(), signatures, threshold)


def _bucket_members(keys: pl.DataFrame) -> pl.DataFrame:
    """(bucket, position): the samples that share a band key, one bucket per (band, key)."""
    # One band at a time: a million samples make a million rows per step, not eight million.
    # Most keys are unique: the few repeated ones are found in the sorted keys (a sort of 10^7
    # integers is several times faster than hashing them), and only their rows are grouped.
    buckets = []
    for band in range(keys["band_keys"].list.len().max() or 0):
        key = keys.select(pl.col("band_keys").list.get(band)).to_series()
        repeated = _repeated_values(key)
        if repeated.len():
            shared = keys.select("position", key=key).filter(pl.col("key").is_in(repeated.implode()))
            buckets.append(shared.group_by("key").agg(pl.col("position").sort()).select("position"))
    if not buckets:
        return pl.DataFrame(schema={"bucket": pl.UInt32, "position": keys["position"].dtype})
    return pl.concat(buckets).with_row_index("bucket").explode("position")


def _repeated_values(values: pl.Series) -> pl.Series:
    """The values that occur more than once (a missing key is no key)."""
    ordered = values.drop_nulls().sort().to_numpy()
    return pl.Series(np.unique(ordered[1:][ordered[1:] == ordered[:-1]]), dtype=values.dtype)


def _similar(signatures: np.ndarray, first: np.ndarray, second: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each pair of signature rows agrees in at least ``threshold`` of its positions."""
    equal = np.empty(len(first), dtype=np.int64)
    for start in range(0, len(first), PAIRS_PER_BLOCK):
        block = slice(start, start + PAIRS_PER_BLOCK)
        equal[block] = np.count_nonzero(signatures[first[block]] == signatures[second[block]], axis=1)
    return equal / NUM_PERM >= threshold


def _twins_of_pairs(
    members: pl.DataFrame, involved: np.ndarray, signatures: np.ndarray, threshold: float
) -> dict[int, int]:
    """Every pair of an earlier and a later member of a bucket compared at once; then, in order,
    each sample's twin is its earliest similar candidate that is not itself a twin (what
    querying an LSH index in order decides)."""
    pairs = (
        members.join(members, on="bucket", suffix="_earlier")
        .filter(pl.col("position_earlier") < pl.col("position"))
        .select(later="position", earlier="position_earlier")
        .unique()
    )
    later, earlier = pairs["later"].to_numpy(), pairs["earlier"].to_numpy()
    similar = _similar(signatures, np.searchsorted(involved, later), np.searchsorted(involved, earlier), threshold)
    order = np.lexsort((earlier[similar], later[similar]))
    twins: dict[int, int] = {}
    # Every candidate of a sample is earlier than it, so its twin status is final when it is read.
    for i, j in zip(later[similar][order].tolist(), earlier[similar][order].tolist(), strict=True):
        if i not in twins and j not in twins:
            twins[i] = j
    return twins


def _twins_in_order(members: pl.DataFrame, involved: list[int], signatures: np.ndarray, threshold: float):
    """As :func:`_twins_of_pairs`, each sample compared with its bucket's earlier members in
    order and stopping at the first similar one that is not a twin: linear in a bucket of
    near-identical samples, where all pairs are quadratic."""
    buckets = members.group_by("bucket", maintain_order=True).agg("position")["position"].to_list()
    later_members: dict[int, list[list[int]]] = defaultdict(list)
    for bucket in buckets:
        for member in bucket[1:]:
            later_members[member].append(bucket)
    rows_of = dict(zip(involved, signatures, strict=True))
    twins: dict[int, int] = {}
    for i in sorted(later_members):
        signature, best = rows_of[i], None
        # Earliest first in each bucket: the first confirmed kept match is that bucket's best.
        for bucket in later_members[i]:
            for j in bucket:
                if j >= i or (best is not None and j >= best):
                    break
                if j in twins:
                    continue
                if np.count_nonzero(rows_of[j] == signature) / NUM_PERM >= threshold:
                    best = j
                    break
        if best is not None:
            twins[i] = best
    return twins
