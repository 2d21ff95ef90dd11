"""Step 2 of the natural-defect corpus: run each generated answer against its task's tests in the
sandbox and write the labelled corpora.

    .venv/bin/python data/natural/label.py data/natural/generated.jsonl

Writes ``data/eval/natural.jsonl`` (the answers without their tests: execution cannot decide,
only the scores and checks can) and ``data/eval/natural_with_tests.jsonl`` (the same records
carrying their tests, as KodCode/OpenCodeInstruct-style data does). Each record's label:
``pass_fraction`` (tests passed / tests), ``defect`` = ``none`` where every test passes, else
``tests_failed``, and the hidden tests themselves (``hidden_tests``) for relabelling. An answer
that cannot be judged (it needs a library the sandbox lacks) is left out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typed import camel, java_tests, rust_tests, typed_task  # noqa: E402

from qaq_assets.lib.ingest.execution.run_tests import execute  # noqa: E402


def tests_for(task: tuple, language: str) -> list[str]:
    """One assert per test case, in the answer's language."""
    name, _, _, cases = task
    if language == "rust":
        return rust_tests(task, typed_task(task))
    if language == "java":
        return java_tests(task, typed_task(task))
    if language == "python":
        return [f"assert {name}({', '.join(map(repr, args))}) == {expected!r}" for args, expected in cases]
    function = camel(name)
    return [
        f"assert.deepStrictEqual({function}({', '.join(json.dumps(arg) for arg in args)}), {json.dumps(expected)});"
        for args, expected in cases
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generated")
    parser.add_argument("--out", default="data/eval/natural.jsonl")
    parser.add_argument("--out-with-tests", default="data/eval/natural_with_tests.jsonl")
    parser.add_argument(
        "--tasks", default="tasks", help="the task set: tasks (the first) or tasks_heldout (written after the rules)"
    )
    args = parser.parse_args()
    task_set = importlib.import_module(args.tasks).TASKS  # a module beside this file
    by_name = {task[0]: task for task in task_set}
    records, statuses = [], Counter()
    for index, line in enumerate(Path(args.generated).read_text(encoding="utf-8").splitlines()):
        answer = json.loads(line)
        tests = tests_for(by_name[answer["task"]], answer["language"])
        result = execute(answer["instruction"], answer["response"], "\n".join(tests), answer["language"])
        statuses[result.status] += 1
        if result.status == "not_run":  # a library the sandbox lacks: no label either way
            continue
        fraction = (result.passed or 0) / len(tests)
        records.append(
            {
                "id": f"{answer['language']}-{answer['task']}-{answer['sample']}",
                "instruction": answer["instruction"],
                "response": answer["response"],
                "defect": "none" if result.status == "passed" else "tests_failed",
                "pass_fraction": round(fraction, 4),
                "exec_detail": result.detail,
                "language": answer["language"],
                "task": answer["task"],
                "model": answer["model"],
                "hidden_tests": tests,
            }
        )
        if index % 100 == 0:
            print(f"{index} labelled: {dict(statuses)}", flush=True)
    with open(args.out, "w", encoding="utf-8") as plain, open(args.out_with_tests, "w", encoding="utf-8") as tested:
        for record in records:
            plain.write(json.dumps(record) + "\n")
            tested.write(json.dumps({**record, "tests": record["hidden_tests"]}) + "\n")
    passed = sum(r["defect"] == "none" for r in records)
    mean = sum(r["pass_fraction"] for r in records) / len(records)
    print(f"{len(records)} answers: {passed} pass every test, mean fraction passed {mean:.3f}; {dict(statuses)}")


if __name__ == "__main__":
    main()
