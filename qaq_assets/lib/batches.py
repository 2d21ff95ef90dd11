"""Which partitions run together: thousands of small shards in a few runs.

A run materializes a *range* of dynamic partitions (Dagster's single-run backfills), and a range
holds every key between its ends in the order the keys were added. So a batch is a stretch of
consecutive keys, all wanted, cut where it would hold too many shards or too much data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# A batch's bounds: how many shards one run takes at most, and how much data (bytes of files to
# ingest, samples to score), so a killed run loses little and a run's rows fit in memory.
MAX_BATCH_SHARDS = 2000
MAX_BATCH_BYTES = 256 << 20
MAX_BATCH_SAMPLES = 20_000


def batches(
    order: Sequence[str], wanted: Sequence[str], weight: Mapping[str, int], max_shards: int, max_weight: int
) -> list[list[str]]:
    """``wanted`` keys as batches of consecutive keys of ``order``, each of at most ``max_shards``
    keys and ``max_weight`` in weight (a heavier key runs alone), in ``order``'s order."""
    position = {key: index for index, key in enumerate(order)}
    missing = [key for key in wanted if key not in position]
    if missing:
        raise ValueError(f"keys not among the partitions: {missing[:3]}")
    result: list[list[str]] = []
    current: list[str] = []
    current_weight = 0
    for key in sorted(set(wanted), key=position.__getitem__):
        contiguous = current and position[key] == position[current[-1]] + 1
        fits = len(current) < max_shards and current_weight + weight.get(key, 0) <= max_weight
        if current and not (contiguous and fits):
            result.append(current)
            current, current_weight = [], 0
        current.append(key)
        current_weight += weight.get(key, 0)
    if current:
        result.append(current)
    return result
