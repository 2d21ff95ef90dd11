"""Execution agreement (--run-untested): answers to one request in a shard that return the same
thing on their group's example inputs are ``agreed`` and kept before the band."""

import polars as pl
import pytest

from qaq_assets.lib.ingest.execution.agreement import example_arguments, request_key, with_agreement
from qaq_assets.lib.ingest.execution.run_tests import AGREED, RAN, behaviour
from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.reports.explain import explain_row, find, text_report
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.rules import select
from qaq_assets.lib.store.tables import CURATED_SUBSET
from qaq_assets_tests.helpers import materialize_all, write_jsonl
from qaq_assets_tests.lib.ingest.execution.test_run_alone import needs_node, python
from qaq_assets_tests.lib.ingest.execution.test_run_tests import needs_sandbox
from qaq_assets_tests.lib.selection.test_rules import table


def javascript(code: str) -> str:
    return f"```javascript\n{code}```"


@pytest.mark.parametrize(
    ("instruction", "key"),
    [
        ("Write a Python function `total(numbers)` that sums them.", ("total", 1)),
        ("Implement `clamp(x, low=0, high=(1, 2))`.", ("clamp", 3)),
        ("In JavaScript, implement `now()`: the time.", ("now", 0)),
        ("Sum a list of numbers.", None),  # no asked-for call: nothing to group by
    ],
)
def test_a_request_is_the_function_its_instruction_asks_for_and_its_parameter_count(instruction, key):
    assert request_key(instruction) == key


def test_inputs_are_the_literal_arguments_the_answers_own_examples_pass():
    code = "def total(xs):\n    return sum(xs)\n\nprint(total([1, 2]))\nprint(total(data))\nprint(total([3], 4))\n"
    assert example_arguments(code, "python", "total", 1) == ["[1, 2]"]  # a variable, another arity: left
    js = "function total(xs) { return 0; }\nconsole.log(total([1, -2, {a: 'b'}]));\nconsole.log(total(f(1)));\n"
    assert example_arguments(js, "javascript", "total", 1) == ["[1, -2, {a: 'b'}]"]
    assert example_arguments("total([1])", "rust", "total", 1) == []


@needs_sandbox
def test_behaviour_is_what_the_answers_function_returns_for_each_call():
    code = python("def half(x):\n    return x / 2 if x else 1 // x\n")
    assert behaviour(code, "python", ["half(4)", "half(0)"]) == (
        "2.0",
        "error: ZeroDivisionError: integer division or modulo by zero",
    )
    assert behaviour(python("def half(x):\n    return x +\n"), "python", ["half(4)"]) is None  # does not run


def frame(shards: list[str], instructions: list[str], responses: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "shard": shards,
            "row_index": list(range(len(shards))),
            "sample_id": [f"s{i}" for i in range(len(shards))],
            "instruction": instructions,
            "response": responses,
        }
    )


ASK = "Write `total(numbers)`: the sum of the list `numbers`."
RIGHT_LOOP = (
    "def total(numbers):\n    s = 0\n    for n in numbers:\n        s += n\n    return s\n\nprint(total([1, 2, 3]))\n"
)
RIGHT_BUILTIN = "def total(numbers):\n    return sum(numbers)\n\nprint(total([4, 5]))\n"
WRONG = "def total(numbers):\n    return max(numbers)\n\nprint(total([1, 2, 3]))\n"
PRINTS = "def total(numbers):\n    print(sum(numbers))\n\ntotal([1, 2, 3])\n"  # returns None


@needs_sandbox
def test_answers_that_return_the_same_on_their_groups_inputs_agree_and_no_others():
    samples = frame(
        ["a"] * 6 + ["b"],
        [ASK] * 5 + ["Write `mean(numbers)`."] + [ASK],
        [python(code) for code in (RIGHT_LOOP, RIGHT_BUILTIN, WRONG, PRINTS, PRINTS)]
        + [python("def mean(numbers):\n    return sum(numbers) / len(numbers)\n\nprint(mean([2]))\n")]
        + [python(RIGHT_BUILTIN)],  # the same answer in another shard: not compared
    )
    features = sample_features(samples, execute=True, run_untested=True)
    assert features["exec_status"].to_list() == [RAN] * 7
    agreed = with_agreement(samples, features)
    # Both right answers return 6 and 9 for the group's inputs [1, 2, 3] and [4, 5]; the wrong one
    # returns 3 and 5; the two answers that print and return None agree on nothing worth keeping.
    assert agreed["exec_status"].to_list() == [AGREED, AGREED, RAN, RAN, RAN, RAN, RAN]
    assert agreed["exec_detail"][0] == (
        "one of the 2 of 5 answers to the same request in its shard that return the same on 2 example inputs "
        "(the largest such set)"
    )
    assert agreed.drop("exec_status", "exec_detail").equals(features.drop("exec_status", "exec_detail"))


@needs_sandbox
@needs_node
def test_javascript_answers_agree_on_what_they_return():
    ask = "In JavaScript, implement `double(xs)`: each number of `xs` doubled."
    samples = frame(
        ["a"] * 3,
        [ask] * 3,
        [
            javascript("function double(xs) {\n  return xs.map((x) => x * 2);\n}\nconsole.log(double([1, 2]));\n"),
            javascript(
                "const double = (xs) => {\n  const out = [];\n"
                "  for (const x of xs) out.push(x + x);\n  return out;\n};\n"
            ),
            javascript("function double(xs) {\n  return xs.map((x) => x + 2);\n}\nconsole.log(double([3]));\n"),
        ],
    )
    agreed = with_agreement(samples, sample_features(samples, execute=True, run_untested=True))
    assert agreed["exec_status"].to_list() == [AGREED, AGREED, RAN]


def test_agreed_answers_are_kept_first_in_their_stratum_and_leave_the_band_its_edges():
    n = 40
    scores = table(
        rmi=[float(i) for i in range(n)],
        nll_query=[1.0] * n,
        # Two agreed answers far below the band's centre and one above the guard (an echo).
        exec_status=[AGREED if i in (1, 2, 39) else RAN for i in range(n)],
        exec_detail=["one of the 2 of 3 answers"] * n,
        nll_answer_end=[1.0] * n,
        answer_ending=["code_block"] * n,
        signature_status=["match"] * n,
    )
    config = SelectionConfig(budget=0.25, strata=1)
    plain = select("rmi-band+checks", scores.with_columns(exec_status=pl.lit(RAN)), None, config)
    decided = select("rmi-band+checks", scores, None, config)
    kept = set(decided.filter(pl.col("decision") == "keep")["sample_id"])
    plain_kept = set(plain.filter(pl.col("decision") == "keep")["sample_id"])
    assert len(kept) == len(plain_kept) == 10
    assert {"s1", "s2"} <= kept and "s39" not in kept  # the guard still holds
    assert kept - {"s1", "s2"} < plain_kept  # the band gives up its farthest rows for them
    reasons = dict(zip(decided["sample_id"], decided["reason"], strict=True))
    assert reasons["s1"].startswith("agreed_kept: one of the 2 of 3 answers; kept before the band")
    in_band = decided.filter(pl.col("reason_code") == "rmi_in_band")["reason"]
    assert all(reason.endswith("in the kept band 0.538-0.718") for reason in in_band), in_band.to_list()


def sampled_answer(index: int) -> str:
    """One of four answers to ASK, its names and example its own (exact and near duplicates are
    dropped before selection)."""
    call = f"print(total([{index}, {index + 1}, 2]))\n"
    bodies = [
        f"    acc_{index} = 0\n    for item_{index} in numbers:\n"
        f"        acc_{index} += item_{index}\n    return acc_{index}\n",
        f"    result_{index} = sum(numbers)\n    return result_{index}\n",
        f"    biggest_{index} = max(numbers)\n    return biggest_{index}\n",
        f"    shown_{index} = sum(numbers)\n    print(shown_{index})\n",
    ]
    return python(f"def total(numbers):\n{bodies[index % 4]}\n{call}")


@needs_sandbox
def test_through_the_graph_agreed_answers_are_kept_and_explained(tmp_path, lake, tiny_model):
    records = [{"id": f"r{index}", "instruction": ASK, "response": sampled_answer(index)} for index in range(24)]
    shard = write_jsonl(tmp_path / "sampled.jsonl", records)
    materialize_all(lake, [shard], budget=0.25, run_untested=True)
    curated = lake.scan(CURATED_SUBSET).collect()
    assert set(curated["reason_code"]).isdisjoint({"exact_duplicate", "near_duplicate"})
    agreed = curated.filter(pl.col("exec_status") == AGREED)
    assert sorted(agreed["row_index"] - 1) == [i for i in range(24) if i % 4 in (0, 1)]  # rows count from 1
    kept = curated.filter(pl.col("decision") == "keep")
    assert kept.height == 6 and (kept["exec_status"] == AGREED).sum() >= 1
    assert set(kept.filter(pl.col("exec_status") == AGREED)["reason_code"]) == {"agreed_kept"}
    report = text_report(explain_row(lake, *find(lake, "r0"), tiny_model.tokenizer))
    assert "run alone: agreed: one of the 12 of 24 answers to the same request in its shard" in report


@needs_sandbox
def test_a_hostile_answer_called_on_its_groups_inputs_touches_nothing_and_agrees_with_nothing(tmp_path):
    outside = tmp_path / "kept.txt"
    outside.write_text("safe")
    hostile = (
        "def total(numbers):\n    import os, shutil\n"
        f"    shutil.rmtree({str(tmp_path)!r}, ignore_errors=True)\n"
        f"    open({str(outside)!r}, 'w').write('x')\n"
        "    os.kill(os.getppid(), 9)\n    while True:\n        pass\n"
    )
    samples = frame(["a"] * 3, [ASK] * 3, [python(RIGHT_LOOP), python(hostile), python(RIGHT_BUILTIN)])
    features = sample_features(samples, execute=True, run_untested=True)
    assert features["exec_status"].to_list() == [RAN] * 3  # its own code only defines the function
    agreed = with_agreement(samples, features)
    assert agreed["exec_status"].to_list() == [AGREED, RAN, AGREED]
    assert outside.read_text() == "safe"
