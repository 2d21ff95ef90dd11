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


def near_duplicate_twins(
    keys: pl.DataFrame, signatures_of: Callable[[list[int]], np.ndarray], threshold: float
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
    # One band at a time: a million samples make a million rows per step, not eight million.
    # Most keys are unique: the rows sharing one are found first (a count per key), and only
    # those few are grouped.
    buckets = []
    for band in range(keys["band_keys"].list.len().max() or 0):
        buckets += (
            keys.select("position", key=pl.col("band_keys").list.get(band))
            .filter(pl.len().over("key") > 1)
            .group_by("key")
            .agg(pl.col("position").sort())
            .filter(pl.col("position").list.len() > 1)["position"]
            .to_list()
        )
    if not buckets:
        return {}
    later_members: dict[int, list[list[int]]] = defaultdict(list)
    for members in buckets:
        for member in members[1:]:
            later_members[member].append(members)
    involved = sorted({p for members in buckets for p in members})
    rows_of = dict(zip(involved, signatures_of(involved), strict=True))
    twins: dict[int, int] = {}
    for i in sorted(later_members):
        signature, best = rows_of[i], None
        # Earliest first in each bucket: the first confirmed kept match is that bucket's best.
        for members in later_members[i]:
            for j in members:
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
