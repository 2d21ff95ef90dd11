"""Execution as a signal: the forms of tests users' records carry, each language whose toolchain
is here, and a failing answer dropped as tests_failed through the whole graph."""

import polars as pl
import pytest

from qaq_assets.lib.ingest.execution import sandbox
from qaq_assets.lib.ingest.execution.run_tests import execute
from qaq_assets.lib.ingest.execution.toolchains import toolchain
from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.ingest.record_fields import extract_sample
from qaq_assets.lib.reports.explain import explain_row, find, text_report
from qaq_assets.lib.store.tables import CURATED_SUBSET, SAMPLE_FEATURES
from qaq_assets_tests.helpers import materialize_all, write_jsonl

needs_sandbox = pytest.mark.skipif(sandbox.unavailable() is not None, reason=str(sandbox.unavailable()))

ADD = "```python\ndef add(a, b):\n    return a + b\n```"
SUB = "```python\ndef add(a, b):\n    return a - b\n```"


def test_records_carry_tests_in_the_fields_public_sets_use():
    kodcode = {"instruction": "Write `add(a, b)`.", "response": ADD, "test": "from solution import add\n"}
    assert extract_sample(kodcode).tests == "from solution import add\n"
    opencode = {"instruction": "q", "response": "a", "unit_tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    assert extract_sample(opencode).tests == "assert add(1, 2) == 3\nassert add(0, 0) == 0"
    mbpp = {"prompt": "q", "completion": "a", "test_list": ["assert add(1, 1) == 2"]}
    assert extract_sample(mbpp).tests == "assert add(1, 1) == 2"
    assert extract_sample({"instruction": "q", "response": "a"}).tests is None


def test_a_record_without_tests_is_not_run_at_no_cost():
    assert execute("Write a function that adds.", ADD, None, "python").status == "not_run"
    assert execute("Write a Go function.", "func Add(a, b int) int { return a + b }", "x", "go").detail == (
        "no toolchain for go"
    )


@needs_sandbox
@pytest.mark.parametrize(
    "tests, answer, status, passed, total",
    [
        ("assert add(1, 2) == 3\nassert add(2, 2) == 4", ADD, "passed", 2, 2),  # OpenCodeInstruct / MBPP asserts
        ("assert add(1, 2) == 3\nassert add(2, 2) == 4", SUB, "failed", 0, 2),
        (  # KodCode: a pytest file importing the solution
            "from solution import add\n\ndef test_small():\n    assert add(1, 2) == 3\n\n"
            "def test_zero():\n    assert add(0, 0) == 0\n",
            SUB,
            "failed",
            1,
            2,
        ),
        (  # HumanEval's form: check(candidate), called with the answer's function
            "def check(candidate):\n    assert candidate(1, 2) == 3\n",
            ADD,
            "passed",
            1,
            1,
        ),
        (
            "assert add(1, 2) == 3",
            "Sure! Here it is:\n\n```python\ndef add(a, b)\n    return a + b\n```",
            "error",
            0,
            1,
        ),
    ],
)
def test_python_tests_of_every_form(tests, answer, status, passed, total):
    result = execute("Write `add(a, b)`.", answer, tests, "python")
    assert (result.status, result.passed, result.total) == (status, passed, total), result


@needs_sandbox
def test_an_instructions_own_examples_are_run():
    doctest = "Write `add(a, b)`:\n\n>>> add(1, 2)\n3\n>>> add(-1, 1)\n0\n"
    assert execute(doctest, ADD, None, "python").status == "passed"
    failed = execute(doctest, SUB, None, "python")
    assert failed.status == "failed" and failed.detail.startswith("add(1, 2)") and "expected 3, got -1" in failed.detail
    asserts = "Write `add(a, b)`. Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(2, 3) == 5\n"
    assert execute(asserts, ADD, None, "python").status == "passed"
    assert execute(asserts, SUB, None, "python").status == "failed"


LANGUAGES = {
    "javascript": (
        "```javascript\nfunction add(a, b) { return a + b; }\n```",
        "```js\nexport const add = (a, b) => a * b;\n```",
        "assert.strictEqual(add(1, 2), 3);\nassert.strictEqual(add(2, 2), 4);",
    ),
    "rust": (
        '```rust\nfn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n\nfn main() {\n    println!("{}", add(1, 2));\n}\n```',
        "```rust\nfn add(a: i64, b: i64) -> i64 { a * b }\n```",
        "assert_eq!(add(2, 2), 4);\nassert_eq!(add(1, 2), 3);",
    ),
    "java": (
        "```java\npublic class Solution {\n    public static int add(int a, int b) { return a + b; }\n}\n```",
        "```java\npublic static int add(int a, int b) {\n    return a * b;\n}\n```",
        "assert Solution.add(2, 2) == 4;\nassert Solution.add(1, 2) == 3;",
    ),
}


@needs_sandbox
@pytest.mark.slow  # compilers and JVMs
@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_other_languages_run_where_their_toolchain_is_here(language):
    if toolchain(language) is None:
        assert execute("q", "code", "tests", language).detail == f"no toolchain for {language}"
        pytest.skip(f"no {language} toolchain on this machine")
    right, wrong, tests = LANGUAGES[language]
    assert execute("q", right, tests, language).status == "passed"
    failed = execute("q", wrong, tests, language)
    assert failed.status == "failed" and failed.passed == 1 and failed.total == 2, failed
    broken = execute("q", right.replace("+", "+ +;"), tests, language)
    assert broken.status == "error", broken


@needs_sandbox
def test_features_record_the_verdict_and_turning_execution_off_records_why():
    samples = pl.DataFrame(
        {
            "shard": ["s"] * 3,
            "row_index": [0, 1, 2],
            "sample_id": ["a", "b", "c"],
            "instruction": ["Write `add(a, b)`."] * 3,
            "response": [ADD, SUB, ADD],
            "tests": ["assert add(1, 2) == 3", "assert add(1, 2) == 3", None],
        }
    )
    features = sample_features(samples)
    assert features["exec_status"].to_list() == ["passed", "failed", "not_run"]
    assert features["exec_passed"].to_list() == [1, 0, None] and features["exec_detail"][2] == "no tests"
    off = sample_features(samples, execute=False)
    assert off["exec_status"].to_list() == ["not_run"] * 3 and off["exec_detail"][0].startswith("execution off")


@needs_sandbox
def test_an_answer_failing_its_tests_is_dropped_as_tests_failed_and_explained(tmp_path, lake, tiny_model):
    records = []
    for index in range(24):
        wrong = index % 3 == 0
        records.append(
            {
                "id": f"r{index}",
                "instruction": f"Write `add_{index}(a, b)` returning the sum of a and b.",
                "response": f"```python\ndef add_{index}(a, b):\n    return a {'-' if wrong else '+'} b\n```",
                "tests": [f"assert add_{index}(1, 2) == 3", f"assert add_{index}(0, 5) == 5"],
            }
        )
    shard = write_jsonl(tmp_path / "with_tests.jsonl", records)
    materialize_all(lake, [shard], budget=0.5)
    features = lake.scan(SAMPLE_FEATURES).select("row_index", "exec_status").collect().sort("row_index")
    assert features["exec_status"].to_list() == ["failed" if i % 3 == 0 else "passed" for i in range(24)]
    curated = lake.scan(CURATED_SUBSET).collect()
    failing = curated.filter((pl.col("row_index") - 1) % 3 == 0)  # rows count from 1
    assert set(failing["reason_code"]) == {"tests_failed"} and set(failing["decision"]) == {"drop"}
    assert failing["reason"][0].startswith("tests_failed: assert add_") and "(got -1)" in failing["reason"][0]
    kept = curated.filter(pl.col("decision") == "keep")
    assert kept.height > 0 and set(kept["exec_status"]) == {"passed"}
    report = text_report(explain_row(lake, *find(lake, "r0"), tiny_model.tokenizer))
    assert "tests: failed, 0 of 2 passed: assert add_0(1, 2) == 3: AssertionError (got -1)" in report


@needs_sandbox
def test_a_library_the_sandbox_lacks_is_no_evidence_either_way():
    at_import = "import no_such_library_xyz\n\ndef f():\n    return 1\n"
    for code in (at_import, "def f():\n    import no_such_library_xyz\n"):
        result = execute("Write `f()`.", code, "assert f() == 1", "python")
        assert result.status == "not_run" and result.detail.startswith("needs no_such_library_xyz"), result
    if toolchain("javascript") is not None:
        js = execute("q", "const _ = require('no-such-package');\nfunction f() { return 1; }", "f();", "javascript")
        assert js.status == "not_run" and "no-such-package" in js.detail


@needs_sandbox
def test_humaneval_form_checks_the_function_asked_for_not_a_helper():
    answer = (
        "```python\ndef helper(x):\n    return x * 2\n\n\ndef double_all(xs):\n    return [helper(x) for x in xs]\n```"
    )

    tests = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n"
    assert execute("Write `double_all(xs)`.", answer, tests, "python").status == "passed"
    assert execute("Double every element.", answer, tests, "python").status == "passed"  # the last function


@needs_sandbox
@pytest.mark.slow  # spawns the feature workers
def test_runs_through_the_worker_pool_equal_runs_in_one_process():
    from qaq_assets.lib.ingest import feature_pool

    rows = 40
    samples = pl.DataFrame(
        {
            "shard": ["s"] * rows,
            "row_index": list(range(rows)),
            "sample_id": [f"id{i}" for i in range(rows)],
            "instruction": [f"Write `add_{i}(a, b)`." for i in range(rows)],
            "response": [f"def add_{i}(a, b):\n    return a {'+-'[i % 2]} b\n" for i in range(rows)],
            "tests": [f"assert add_{i}(1, 2) == 3" if i % 4 else None for i in range(rows)],
        }
    )
    alone = sample_features(samples)
    spread = feature_pool.start_features(samples, workers=2, min_rows_per_worker=10)()
    assert spread.equals(alone)
    assert set(alone["exec_status"]) == {"passed", "failed", "not_run"}
