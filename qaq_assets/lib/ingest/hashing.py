"""64-bit integer mixing shared by the stored LSH band keys and the decontamination's n-gram
hashes: SplitMix64 (Steele, Lea and Flood), wrapping uint64 arithmetic over numpy arrays."""

from __future__ import annotations

import numpy as np

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's step: add the golden gamma, then its finaliser (uint64 in, uint64 out)."""
    with np.errstate(over="ignore"):
        values = values + GOLDEN_GAMMA
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))
