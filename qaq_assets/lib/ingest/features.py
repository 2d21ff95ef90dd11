"""Per-sample features, computed once at ingest and stored per shard (``sample_features``).

Curation needs, per sample: content hashes (the score-cache key), the code-validity status,
and a near-duplicate signature. Computing them at every curation cost minutes per million
samples in one Python thread; stored, a curation reads them in one projected scan.

Near-duplicates are MinHash over word 5-shingles, with exactly the arithmetic of datasketch
2.x's default scheme (sha1-32 of each shingle, the MurmurHash3 32-bit finalizer, affine maps
``a * h + b`` mod 2^32 with seeded odd ``a``), so signatures equal
``datasketch.MinHash(num_perm=128, seed=1)``'s bit for bit; here they are computed for many
samples at once with numpy. LSH band keys (8 bands of 16 values, datasketch's choice at a 0.85
threshold) are stored as 64-bit integers: near-duplicate candidates are then a join on band
keys across shards, confirmed by signature similarity (:mod:`qaq_assets.lib.selection.dedup`).
"""

from __future__ import annotations

import hashlib
import operator
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from qaq_assets.lib.errors import one_line
from qaq_assets.lib.ingest.codecheck import VALID, CodeCheck, check_code, signature_status
from qaq_assets.lib.ingest.decontamination import Benchmark, overlaps
from qaq_assets.lib.ingest.execution.run_tests import (
    NO_TESTS,
    NOT_RUN,
    RUN_ALONE,
    Execution,
    has_examples,
    run_alone,
)
from qaq_assets.lib.ingest.execution.run_tests import execute as run_tests
from qaq_assets.lib.ingest.hashing import splitmix64
from qaq_assets.lib.ingest.record_fields import text_sha

try:  # CPython's own SHA-1: the same digests as OpenSSL's, with less overhead per 30-byte shingle
    from _sha1 import sha1 as _sha1
except ImportError:  # pragma: no cover - other interpreters
    _sha1 = hashlib.sha1
_DIGEST = operator.methodcaller("digest")
_DIGEST_BYTES = 20

NUM_PERM = 128
SHINGLE_WORDS = 5
MINHASH_SEED = 1
# datasketch's optimal (bands, rows) at threshold 0.85 with 128 permutations; the stored band
# keys serve this threshold, other thresholds recompute bands from the stored signatures.
BAND_THRESHOLD = 0.85
BANDS, ROWS = 8, 16
_U32 = np.uint32


@dataclass(frozen=True)
class Permutations:
    a: np.ndarray  # odd multipliers, uint32
    b: np.ndarray  # offsets, uint32


def permutations(num_perm: int = NUM_PERM, seed: int = MINHASH_SEED) -> Permutations:
    """The affine maps datasketch draws for ``seed`` (its ``affine32`` scheme)."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, num_perm, dtype=_U32) * _U32(2) + _U32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=_U32)
    return Permutations(a, b)


_PERMUTATIONS = permutations()


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (wrapping uint32 arithmetic)."""
    values = values ^ (values >> _U32(16))
    values = values * _U32(0x85EBCA6B)
    values = values ^ (values >> _U32(13))
    values = values * _U32(0xC2B2AE35)
    return values ^ (values >> _U32(16))


def shingles(text: str) -> set[str]:
    """The word 5-shingles of a text, normalised (NFC) and lower-cased (one empty shingle when it
    has none). The identity normalisation's line handling only moves whitespace, which ``split``
    drops: the words are the same without it."""
    words = _shingle_words(text)
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}


def _shingle_words(text: str) -> list[str]:
    if not text.isascii():  # NFC leaves ASCII as it is
        text = unicodedata.normalize("NFC", text)
    return text.lower().split()


def _shingle_digests(text: str) -> bytes:
    """The SHA-1 digest of each of ``shingles(text)``, concatenated (20 bytes each). A shingle
    that repeats is hashed again: a minimum over a multiset is the minimum over its set. The
    shingles are built and hashed by C-level maps (one Python step per text, not per shingle):
    the UTF-8 bytes of words joined by spaces are those of the words' string joined by spaces."""
    words = list(map(str.encode, _shingle_words(text)))
    if len(words) < SHINGLE_WORDS:
        return _sha1(b" ".join(words)).digest()
    windows = zip(*(words[offset:] for offset in range(SHINGLE_WORDS)), strict=False)  # the shortest ends it
    return b"".join(map(_DIGEST, map(_sha1, map(b" ".join, windows))))


def signatures(texts: list[str], block_rows: int = 1 << 13) -> np.ndarray:
    """MinHash signatures, one row of ``NUM_PERM`` uint32 per text."""
    digests = [_shingle_digests(text) for text in texts]
    counts = np.fromiter((len(d) // _DIGEST_BYTES for d in digests), dtype=np.int64, count=len(texts))
    # datasketch's sha1_hash32: a digest's first 4 bytes, little endian (the first of its 5 words).
    first_words = np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, _DIGEST_BYTES // 4)[:, 0]
    mixed = _fmix32(first_words.astype(_U32))
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    result = np.empty((len(texts), NUM_PERM), dtype=_U32)
    a, b = _PERMUTATIONS.a, _PERMUTATIONS.b
    # Blocks of whole texts keep the (shingles x permutations) matrix in cache; one buffer, in place.
    buffer = np.empty((max(block_rows, int(counts.max(initial=1))), NUM_PERM), dtype=_U32)
    text = 0
    while text < len(texts):
        end = text + 1
        while end < len(texts) and starts[end] + counts[end] - starts[text] <= block_rows:
            end += 1
        lo, hi = starts[text], starts[end - 1] + counts[end - 1]
        block = buffer[: hi - lo]
        np.multiply(mixed[lo:hi, None], a, out=block)
        block += b
        result[text:end] = np.minimum.reduceat(block, starts[text:end] - lo, axis=0)
        text = end
    return result


def band_keys(signature_rows: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> np.ndarray:
    """One 64-bit key per band of ``rows`` signature values: equal bands give equal keys."""
    values = signature_rows[:, : bands * rows].astype(np.uint64).reshape(len(signature_rows), bands, rows)
    keys = np.zeros((len(signature_rows), bands), dtype=np.uint64)
    for column in range(rows):
        keys = splitmix64(keys ^ values[:, :, column])
    # The band's index is part of its key: equal values in different bands never meet.
    return splitmix64(keys ^ np.arange(bands, dtype=np.uint64))


def answer_ending(answer: str) -> str:
    """How an answer ends: ``fence`` (a closed code block), ``prose`` (a sentence) or ``code``.
    A model's probability of the end of the turn differs by kind (it expects words after bare
    code), so completeness compares answers of one kind."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith("```"):
        return "fence"
    return "prose" if last.endswith((".", "!", "?", ":")) and " " in last else "code"


# The columns of ingested samples that features are computed from.
FEATURE_INPUTS = ("shard", "row_index", "sample_id", "instruction", "response", "tests")
_OFF = Execution(NOT_RUN, "execution off (--no-execute)")


def _execution(instruction: str, response: str, tests: str | None, code: CodeCheck, may_run_alone: bool) -> Execution:
    """The answer run against its record's tests or its instruction's examples; where it has
    none and ``may_run_alone``, its code run on its own."""
    try:
        result = NO_TESTS
        if tests or has_examples(instruction):
            result = run_tests(instruction, response, tests, code.language or code.requested)
        if result == NO_TESTS and may_run_alone:
            result = run_alone(response, code.language)
        return result
    except Exception as error:  # noqa: BLE001 - one sample's failure to run is its status, never the ingest's
        return Execution(NOT_RUN, f"the run itself failed: {one_line(error)}")


def _executions(
    instructions: list[str],
    responses: list[str],
    tests: list,
    codes: list[CodeCheck],
    execute: bool,
    run_untested: bool = False,
) -> list[Execution]:
    """Every answer's run against its tests, and (``run_untested``) each valid Python or
    JavaScript answer without tests run alone; records that carry none cost two substring tests
    otherwise. The runs wait on sandboxed processes, not on this one: they overlap in threads,
    as many as the cores this process may use."""
    jobs = list(zip(instructions, responses, tests, codes, strict=True))
    tested = {index for index, (q, _, t, _) in enumerate(jobs) if t or has_examples(q)}
    results = [NO_TESTS] * len(jobs)
    if not execute:
        for index in tested:
            results[index] = _OFF
        return results
    # An instruction that merely says "assert" shows no examples: its answer may still run alone.
    alone = {i for i, code in enumerate(codes) if code.status == VALID and code.language in RUN_ALONE}
    alone = alone if run_untested else set()
    runnable = sorted(tested | alone)
    if not runnable:
        return results
    with ThreadPoolExecutor(max_workers=min(len(os.sched_getaffinity(0)), len(runnable))) as pool:
        runs = pool.map(lambda i: _execution(*jobs[i], may_run_alone=i in alone), runnable)
        for index, result in zip(runnable, runs, strict=True):
            results[index] = result
    return results


def sample_features(
    samples: pl.DataFrame, benchmark: Benchmark | None = None, execute: bool = True, run_untested: bool = False
) -> pl.DataFrame:
    """``sample_features`` rows of ingested samples (their ``FEATURE_INPUTS``), with the
    ``benchmark`` item each overlaps, where given, and each answer run against its tests
    (``execute``), or alone where it has none (``run_untested``)."""
    instructions, responses = samples["instruction"].to_list(), samples["response"].to_list()
    tests = samples["tests"].to_list() if "tests" in samples.columns else [None] * samples.height
    texts = [q + "\n" + a for q, a in zip(instructions, responses, strict=True)]
    signature_rows = signatures(texts)
    overlapped = overlaps(texts, benchmark) if benchmark is not None else [None] * len(texts)
    # Both checks of one answer together: they share its parse.
    checks = [(check_code(q, a), signature_status(q, a)) for q, a in zip(instructions, responses, strict=True)]
    runs = _executions(instructions, responses, tests, [code for code, _ in checks], execute, run_untested)
    return pl.DataFrame(
        {
            "shard": samples["shard"],
            "row_index": samples["row_index"],
            "sample_id": samples["sample_id"],
            "query_sha": [text_sha(text) for text in instructions],
            "answer_sha": [text_sha(text) for text in responses],
            "code_status": [code.status for code, _ in checks],
            "answer_language": [code.language for code, _ in checks],
            "requested_language": [code.requested for code, _ in checks],
            "signature_status": [signature for _, signature in checks],
            "answer_ending": [answer_ending(text) for text in responses],
            "minhash": [row.astype("<u4").tobytes() for row in signature_rows],
            "band_keys": pl.Series(band_keys(signature_rows).view(np.int64)).cast(pl.List(pl.Int64)),
            "benchmark_item": pl.Series(overlapped, dtype=pl.String),
            "benchmark_key": pl.repeat(benchmark.key if benchmark else None, len(texts), dtype=pl.String, eager=True),
            "exec_status": [run.status for run in runs],
            "exec_detail": pl.Series([run.detail for run in runs], dtype=pl.String),
            "exec_passed": pl.Series([run.passed for run in runs], dtype=pl.Int32),
            "exec_total": pl.Series([run.total for run in runs], dtype=pl.Int32),
        }
    )


def signature_array(stored: list[bytes]) -> np.ndarray:
    """Signatures as stored in ``sample_features.minhash`` back to rows of uint32."""
    return np.frombuffer(b"".join(stored), dtype="<u4").reshape(len(stored), NUM_PERM)
