"""Step 3 (planted, second to the natural labels): truncations that still parse, cut from answers
that pass every test.

    .venv/bin/python data/natural/truncate.py data/eval/natural.jsonl

For each passing answer whose first function has two or more statements, the function loses
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
    function = next((node for node in tree.body if isinstance(node, ast.FunctionDef)), None)
    if function is None or len(function.body) < 2:
        return None
    keep = function.body[: len(function.body) // 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labelled")
    parser.add_argument("--out", default="data/eval/natural_truncated.jsonl")
    parser.add_argument("--out-with-tests", default="data/eval/natural_truncated_with_tests.jsonl")
    args = parser.parse_args()
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
