import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from qaq_assets.lib.lake import Lake
from qaq_assets.lib.models import load_model

TINY = "tiny=random:tiny-llama:0"

# torch.compile on CPU needs a C++ compiler (.ci/run installs g++). Without one the fused
# forward runs its element-wise steps eagerly, and says so.
HAS_CXX = bool(shutil.which(os.environ.get("CXX") or "g++") or shutil.which("clang++"))
FUSED_FORWARD = "fused, compiled element-wise steps" if HAS_CXX else "fused, eager element-wise steps"

CODE_PAIRS = [
    ("Write a function add(a, b) that returns the sum of a and b.", "def add(a, b):\n    return a + b"),
    ("Reverse the string s.", "def reverse(s):\n    return s[::-1]"),
    ("Return the largest element of a non-empty list.", "def largest(xs):\n    return max(xs)"),
    ("Count the words in a text.", "def count_words(text):\n    return len(text.split())"),
    ("Check whether n is even.", "def is_even(n):\n    return n % 2 == 0"),
    ("Square every number in a list.", "def squares(xs):\n    return [x * x for x in xs]"),
    ("Join a list of strings with commas.", "def join(items):\n    return ','.join(items)"),
    ("Return the factorial of n.", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)"),
    ("Flatten a list of lists.", "def flatten(xss):\n    return [x for xs in xss for x in xs]"),
    ("Remove duplicates, keeping order.", "def dedup(xs):\n    return list(dict.fromkeys(xs))"),
    ("Sum the digits of n.", "def digit_sum(n):\n    return sum(int(d) for d in str(n))"),
    ("Capitalise every word.", "def title(text):\n    return text.title()"),
]


def rows_of(scoring) -> pl.DataFrame:
    """A shard scoring's token_logprobs rows, collected in sample order."""
    return scoring.token_logprobs.collect().sort("sample_id")  # ShardRows.collect


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_shard(tmp_path):
    """Write a JSONL shard of (instruction, response) pairs; returns its path."""

    def make(name: str, pairs=CODE_PAIRS, extra_records=()) -> Path:
        records = [{"instruction": q, "response": a, "defect": "none"} for q, a in pairs]
        return write_jsonl(tmp_path / f"{name}.jsonl", records + list(extra_records))

    return make


@pytest.fixture(scope="session")
def tiny_model():
    return load_model(TINY, device="cpu", dtype="float32")


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")
