"""Near-duplicate detection with MinHash LSH (datasketch): each sample that repeats an
earlier one, by estimated Jaccard similarity of word 5-shingles, points at that one."""

from __future__ import annotations

from datasketch import MinHash, MinHashLSH

from qaq_assets.lib.records import normalise_text

NUM_PERM = 128
SHINGLE_WORDS = 5


def minhash(text: str) -> MinHash:
    words = normalise_text(text).lower().split()
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    signature.update_batch([s.encode("utf-8") for s in shingles])
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
