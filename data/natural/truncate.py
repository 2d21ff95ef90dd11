"""Step 3 (planted, second to the natural labels): truncations that still parse, cut from answers
that pass every test.

    .venv/bin/python data/natural/truncate.py data/eval/natural.jsonl

For each passing answer whose last function has two or more statements (its docstring aside), the function loses
its second half (Python: the later statements' lines; JavaScript: the later statements, the body
still closed), so the code still parses and looks finished. Writes
``data/eval/natural_truncated.jsonl`` (the passing answers, label ``none``, and their cut copies,
``truncated``; no tests: only the scores can tell) and ``..._with_tests.jsonl`` (the same,
carrying their tests: execution can).
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

from qaq_assets.lib.ingest.codecheck import tree_sitter_parser
from qaq_assets.lib.ingest.execution.run_tests import answer_code


def cut_python(code: str) -> str | None:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    function = next((node for node in reversed(tree.body) if isinstance(node, ast.FunctionDef)), None)
    if function is None:
        return None
    body = function.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring is no statement to keep or cut
    if len(body) < 2:
        return None
    keep = body[: len(body) // 2]
    lines = code.splitlines()
    dropped = range(keep[-1].end_lineno, function.body[-1].end_lineno)  # 0-based line numbers
    cut = "\n".join(line for number, line in enumerate(lines) if number not in dropped)
    cut += "\n" if code.endswith("\n") else ""
    try:
        ast.parse(cut)
    except SyntaxError:
        return None
    return cut


def cut_javascript(code: str) -> str | None:
    source = code.encode("utf-8")
    root = tree_sitter_parser("javascript").parse(source).root_node
    stack = [root]
    while stack:
        node = stack.pop(0)
        if node.type in ("function_declaration", "function_expression", "arrow_function", "method_definition"):
            body = node.child_by_field_name("body")
            if body is not None and body.type == "statement_block":
                statements = [child for child in body.named_children if child.type != "comment"]
                if len(statements) < 2:
                    return None
                last_kept = statements[len(statements) // 2 - 1]
                closing = body.end_byte - 1  # the body's "}"
                cut = source[: last_kept.end_byte] + b"\n" + source[closing:]
                cut_text = cut.decode("utf-8")
                parsed = tree_sitter_parser("javascript").parse(cut).root_node
                return None if parsed.has_error else cut_text
        stack.extend(node.children)
    return None


def without_examples(text: str) -> str:
    """``text`` without doctest examples: each ``>>>`` line and the expected output after it."""
    kept, in_example = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_example = True
            continue
        if in_example and stripped and not stripped.startswith(('"""', "'''")):
            continue  # the example's expected output
        in_example = False
        kept.append(line)
    return "\n".join(kept) + ("\n" if text.endswith("\n") else "")


def humaneval_records() -> list[dict]:
    """HumanEval's canonical solutions as answers carrying the problem's tests (``check``, called
    with the answer's function), each beside its cut copy where one still parses. A measurement of
    the execution signal on correct multi-statement functions only: curate it with
    ``--decontaminate none`` and never train on it (HumanEval is the downstream benchmark)."""
    from qaq_assets.lib.ingest.decontamination import humaneval_problems

    records = []
    for problem in humaneval_problems():
        code = problem["prompt"].strip("\n") + "\n" + problem["canonical_solution"].rstrip() + "\n"
        instruction = f"Write the Python function `{problem['entry_point']}`:\n\n{problem['prompt'].strip()}"
        base = {"instruction": instruction, "tests": problem["test"], "language": "python", "task": problem["task_id"]}
        records.append({**base, "id": problem["task_id"], "response": f"```python\n{code}```", "defect": "none"})
        cut = cut_python(code)
        if cut is not None and cut != code:
            records.append(
                {**base, "id": problem["task_id"] + "-cut", "response": f"```python\n{cut}```", "defect": "truncated"}
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labelled", nargs="?", help="a labelled natural corpus (label.py's output)")
    parser.add_argument(
        "--humaneval",
        metavar="OUT",
        help="instead: HumanEval's canonical solutions and their cut copies, carrying their tests, to OUT",
    )
    parser.add_argument("--out", default="data/eval/natural_truncated.jsonl")
    parser.add_argument("--out-with-tests", default="data/eval/natural_truncated_with_tests.jsonl")
    args = parser.parse_args()
    if args.humaneval:
        records = humaneval_records()
        with open(args.humaneval, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
        # The same without anything to run (no tests, the prompt's examples removed): only the
        # scores can judge; written beside, without "_with_tests" in its name.
        with open(args.humaneval.replace("_with_tests", "_untested"), "w", encoding="utf-8") as handle:
            for record in records:
                bare = {key: value for key, value in record.items() if key != "tests"}
                bare["instruction"] = without_examples(record["instruction"])
                bare["response"] = without_examples(record["response"])
                handle.write(json.dumps(bare) + "\n")
        cut = sum(record["defect"] == "truncated" for record in records)
        print(f"{len(records) - cut} HumanEval solutions, {cut} cut copies that still parse")
        return
    records = []
    for line in Path(args.labelled).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["defect"] != "none":
            continue
        code = answer_code(record["response"], record["language"])
        cut = (cut_python if record["language"] == "python" else cut_javascript)(code)
        records.append(record)
        if cut is not None and cut != code and code in record["response"]:
            records.append(
                {
                    **record,
                    "id": record["id"] + "-cut",
                    "response": record["response"].replace(code, cut, 1),
                    "defect": "truncated",
                    "pass_fraction": None,
                }
            )
    with open(args.out, "w", encoding="utf-8") as plain, open(args.out_with_tests, "w", encoding="utf-8") as tested:
        for record in records:
            plain.write(json.dumps(record) + "\n")
            tested.write(json.dumps({**record, "tests": record["hidden_tests"]}) + "\n")
    cut = sum(record["defect"] == "truncated" for record in records)
    print(f"{len(records) - cut} passing answers, {cut} cut copies that still parse")


if __name__ == "__main__":
    main()
