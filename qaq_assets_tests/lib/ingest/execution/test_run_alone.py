"""Answers without tests run alone (--run-untested): an error of the code's own making is
evidence (code_raises); what a snippet leaves to its context, or asks of its user, is not."""

import polars as pl
import pytest

from qaq_assets.lib.ingest.execution.run_tests import RAISED, RAN, run_alone
from qaq_assets.lib.ingest.execution.toolchains import toolchain
from qaq_assets.lib.ingest.features import sample_features
from qaq_assets.lib.reports.explain import explain_row, find, text_report
from qaq_assets.lib.store.tables import CURATED_SUBSET
from qaq_assets_tests.helpers import materialize_all, write_jsonl
from qaq_assets_tests.lib.ingest.execution.test_run_tests import needs_sandbox
from qaq_assets_tests.lib.selection.test_rules import table

needs_node = pytest.mark.skipif(toolchain("javascript") is None, reason="no node on this machine")


def python(code: str) -> str:
    return f"Here it is:\n\n```python\n{code}```\n\nIt works."


@needs_sandbox
@pytest.mark.parametrize(
    ("code", "error"),
    [
        # The example calls the function, whose body is wrong.
        ("def first(xs):\n    return xs[0] + xs\n\nprint(first([1, 2]))  # 1\n", "TypeError"),
        # The asked-for helper forgotten: its import, or the function itself.
        ("def words(s):\n    return re.findall(r'\\w+', s)\n\nprint(words('a b'))\n", "NameError"),
        # The example uses the parameter's name, which only the function binds.
        ("def count_neg(numbers):\n    return sum(n < 0 for n in numbers)\n\nprint(count_neg(numbers))\n", "NameError"),
        # The answer's own claim, stated as an assert.
        ("def double(x):\n    return x + 2\n\nassert double(3) == 6\n", "AssertionError"),
        ("def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([]))\n", "ZeroDivisionError"),
    ],
)
def test_an_answer_whose_own_example_raises_an_error_of_its_making_raised(code, error):
    result = run_alone(python(code), "python")
    assert result.status == RAISED, result
    assert error in result.detail


@needs_sandbox
@pytest.mark.parametrize(
    "code",
    [
        "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # 3\n",
        # Context the snippet leaves out: a module's names, an import in annotations or defaults.
        "def norm(v):\n    return np.linalg.norm(v)\n\nresult = CONSTANT * 2\n",
        "def f(xs: List[int]) -> Optional[int]:\n    return xs[0] if xs else None\n",
        "def scale(x, factor=DEFAULT_FACTOR):\n    return x * factor\n",
        "@lru_cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
        # What the program asks of its user: input, files, arguments, the environment.
        "n = int(input('n: '))\nprint(n * 2)\n",
        "with open('data.txt') as handle:\n    print(handle.read())\n",
        "import sys\nprint(sys.argv[1])\n",
        "import os\nprint(os.environ['API_KEY'])\n",
        # Errors raised on purpose: a demonstration of the function's own input checks.
        "def sqrt(x):\n    if x < 0:\n        raise TypeError('x must be >= 0')\n    return x ** 0.5\n\nsqrt(-1)\n",
        "def parse(s):\n    return int(s)\n\nparse('abc')\n",
        # A library the sandbox lacks, a program that runs forever (a server), one that exits.
        "import numpy_is_not_here\nprint(numpy_is_not_here.zeros(3))\n",
        "import sys\nsys.exit(0)\n",
    ],
)
def test_what_a_snippet_leaves_to_its_context_or_its_user_is_no_evidence(code):
    result = run_alone(python(code), "python")
    assert result.status == RAN, result


@needs_sandbox
def test_a_run_that_never_ends_or_kills_its_harness_is_no_evidence_and_touches_nothing(tmp_path):
    forever = run_alone(python("while True:\n    pass\n"), "python")
    assert forever.status == RAN and "did not finish" in forever.detail
    outside = tmp_path / "kept.txt"
    outside.write_text("safe")
    attack = f"import os\nos.system('rm -f {outside}')\nos.kill(os.getppid(), 9)\nos.kill(1, 9)\n"
    assert run_alone(python(attack), "python").status in (RAN, RAISED)
    assert outside.read_text() == "safe"


@needs_sandbox
@needs_node
def test_javascript_answers_are_run_alone_too():
    example = "\n}\nconsole.log(upper(['a']));\n```"
    wrong = "```javascript\nfunction upper(words) {\n  return words.toUpperCase();" + example
    assert run_alone(wrong, "javascript").status == RAISED
    right = "```javascript\nfunction upper(words) {\n  return words.map((w) => w.toUpperCase());" + example
    assert run_alone(right, "javascript").status == RAN
    # Two versions of one function in two blocks (a first and a better one): no bug.
    twice = "```javascript\nconst f = (x) => x;\n```\nBetter:\n```javascript\nconst f = (x) => x * 1;\n```"
    assert run_alone(twice, "javascript").status == RAN
    on_purpose = "```javascript\nfunction f(x) {\n  throw new TypeError('x must be a number');\n}\nf('a');\n```"
    assert run_alone(on_purpose, "javascript").status == RAN


def test_languages_without_a_harness_that_reports_where_code_raised_are_not_run():
    assert run_alone("```rust\nfn main() { let v: Vec<i32> = vec![]; v[0]; }\n```", "rust").status == "not_run"


@needs_sandbox
def test_only_untested_valid_answers_are_run_alone_and_only_when_asked():
    samples = pl.DataFrame(
        {
            "shard": ["s"] * 4,
            "row_index": [1, 2, 3, 4],
            "sample_id": ["a", "b", "c", "d"],
            "instruction": ["Write `first(xs)`."] * 3 + ["Write `first(xs)`; assert that xs is not empty."],
            "response": [
                python("def first(xs):\n    return xs[0] + xs\n\nprint(first([1, 2]))\n"),
                python("def first(xs):\n    return xs[0\n"),  # a syntax error: the code check's
                python("def first(xs):\n    return xs[0] + xs\n"),
                # The instruction says "assert" but shows no example: the answer runs alone.
                python("def first(xs):\n    return xs[0] + xs\n\nprint(first([1, 2]))\n"),
            ],
            "tests": [None, None, "assert first([1]) == 1", None],
        }
    )
    off = sample_features(samples, execute=True)
    assert off["exec_status"].to_list() == ["not_run", "not_run", "failed", "not_run"]
    on = sample_features(samples, execute=True, run_untested=True)
    assert on["exec_status"].to_list() == [RAISED, "not_run", "failed", RAISED]
    assert sample_features(samples, execute=False, run_untested=True)["exec_status"][0] == "not_run"


@needs_sandbox
def test_through_the_graph_an_answer_whose_example_raises_is_dropped_as_code_raises(tmp_path, lake, tiny_model):
    records = []
    for index in range(24):
        body = "xs[0] + xs" if index % 3 == 0 else "xs[0]"
        code = f"def first_{index}(xs):\n    return {body}\n\nprint(first_{index}([{index}, 2]))\n"
        records.append({"id": f"r{index}", "instruction": f"Write `first_{index}(xs)`.", "response": python(code)})
    shard = write_jsonl(tmp_path / "untested.jsonl", records)
    materialize_all(lake, [shard], budget=0.5, run_untested=True)
    curated = lake.scan(CURATED_SUBSET).collect()
    raised = curated.filter((pl.col("row_index") - 1) % 3 == 0)  # rows count from 1
    assert set(raised["reason_code"]) == {"code_raises"} and set(raised["decision"]) == {"drop"}
    assert "TypeError" in raised["reason"][0]
    assert set(curated.filter((pl.col("row_index") - 1) % 3 != 0)["exec_status"]) == {RAN}
    report = text_report(explain_row(lake, *find(lake, "r0"), tiny_model.tokenizer))
    assert "run alone: raised: the answer's code raised TypeError" in report


def test_the_checks_drop_an_answer_whose_code_raised_naming_the_error():
    from qaq_assets.lib.selection.config import SelectionConfig
    from qaq_assets.lib.selection.rules import select

    n = 40
    scores = table(
        rmi=[float(i) for i in range(n)],
        nll_query=[float(i) for i in range(n)],
        exec_status=[RAISED if i == 20 else RAN for i in range(n)],
        exec_detail=["the answer's code raised TypeError: can only concatenate"] * n,
        nll_answer_end=[1.0] * n,
        answer_ending=["code_block"] * n,
        signature_status=["match"] * n,
    )
    decided = select("rmi-band+checks", scores, None, SelectionConfig(budget=0.5)).sort("sample_id")
    raised = decided.filter(decided["exec_status"] == RAISED).row(0, named=True)
    assert raised["decision"] == "drop" and raised["reason_code"] == "code_raises"
    assert raised["reason"] == "code_raises: run alone, the answer's code raised TypeError: can only concatenate"
    assert decided.filter(decided["exec_status"] == RAN)["reason_code"].is_in(["code_raises"]).sum() == 0
