"""Answers to one request that behave alike (``--run-untested``): execution agreement.

Synthetic code data often holds several answers to one request (sampled at temperature, or the
same request reworded). A wrong answer can be wrong in many ways; right answers return the same
thing. So, within a shard, the answers that ask for the same function (`` `name(args)` `` in the
instruction, the answer's language, the number of parameters) and ran alone without evidence of a
bug are each called, in the sandbox, on the inputs their group's own examples pass to that
function (``print(name(3))``: literals only). The answers of the group's largest set that return
the same (at least two, their returns not all errors or all None) are ``agreed``; selection keeps
them first. Nothing is compared across shards: a shard is read once, at ingest.
"""

from __future__ import annotations

import ast
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from qaq_assets.lib.ingest import codecheck
from qaq_assets.lib.ingest.execution.run_tests import AGREED, RAN, RUN_ALONE, answer_code, behaviour
from qaq_assets.lib.ingest.feature_pool import available_cores

# Inputs per group: the first distinct argument lists its answers' examples pass.
MAX_INPUTS = 8
# What no answer's correctness shows: every call raised, or returned nothing.
_NOTHING = frozenset({"None", "null", "undefined"})
_JS_LITERALS = frozenset({"number", "string", "true", "false", "null"})


def request_key(instruction: str) -> tuple[str, int] | None:
    """The function an instruction asks for by a backticked call, `` `name(a, b)` ``, and how many
    parameters it takes."""
    asked = codecheck.asked_call(instruction)
    if asked is None:
        return None
    name, arguments = asked
    return name, codecheck.count_parameters(arguments)


def example_arguments(code: str, language: str, name: str, arity: int) -> list[str]:
    """The argument lists (as text in ``language``) of the calls to ``name`` in ``code`` that pass
    ``arity`` literal arguments."""
    if language == "python":
        return _python_arguments(code, name, arity)
    if language == "javascript":
        return _javascript_arguments(code, name, arity)
    return []


def _python_arguments(code: str, name: str, arity: int) -> list[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name):
            continue
        if node.keywords or len(node.args) != arity:
            continue
        try:
            found.append(", ".join(repr(ast.literal_eval(argument)) for argument in node.args))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return found


def _javascript_arguments(code: str, name: str, arity: int) -> list[str]:
    parser = codecheck.tree_sitter_parser("javascript")
    if parser is None or name not in code:
        return []
    found = []
    for node in codecheck.walk(parser.parse(code.encode("utf-8")).root_node):
        function = node.child_by_field_name("function") if node.type == "call_expression" else None
        if function is None or function.type != "identifier" or function.text != name.encode():
            continue
        arguments = [child for child in node.child_by_field_name("arguments").named_children if child.type != "comment"]
        if len(arguments) == arity and all(_js_literal(argument) for argument in arguments):
            found.append(", ".join(argument.text.decode("utf-8") for argument in arguments))
    return found


def _js_literal(node) -> bool:
    if node.type in _JS_LITERALS:
        return True
    if node.type == "unary_expression":
        operand = node.child_by_field_name("argument")
        return node.child_by_field_name("operator").type == "-" and operand.type == "number"
    if node.type == "array":
        return all(_js_literal(child) for child in node.named_children if child.type != "comment")
    if node.type == "object":
        pairs = [child for child in node.named_children if child.type != "comment"]
        return all(
            pair.type == "pair"
            and pair.child_by_field_name("key").type in ("property_identifier", "string", "number")
            and _js_literal(pair.child_by_field_name("value"))
            for pair in pairs
        )
    return False


def _says_something(returned: tuple[str, ...] | None) -> bool:
    """Whether returns show anything: not a code that did not run, all errors or all None."""
    return returned is not None and not all(value.startswith("error: ") or value in _NOTHING for value in returned)


def with_agreement(samples: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """``features`` with ``exec_status`` ``agreed`` (and why, in ``exec_detail``) for each answer
    that ran alone and returns what the most answers to the same request in its shard return.
    ``samples`` are the rows the features describe (``shard``, ``row_index``, their texts)."""
    texts = samples.select("shard", "row_index", "instruction", "response")
    frame = features.join(texts, on=["shard", "row_index"], how="left", maintain_order="left")
    ran = (pl.col("exec_status") == RAN) & pl.col("answer_language").is_in(RUN_ALONE)
    groups: dict[tuple, list[int]] = {}
    for index, shard, instruction, language in (
        frame.with_row_index("_row").filter(ran).select("_row", "shard", "instruction", "answer_language").iter_rows()
    ):
        key = request_key(instruction)
        if key is not None:
            groups.setdefault((shard, language, *key), []).append(index)
    jobs, groups_run = [], []
    responses = frame["response"]
    for (_, language, name, arity), rows in groups.items():
        if len(rows) < 2:
            continue
        inputs: list[str] = []
        for row in rows:
            for arguments in example_arguments(answer_code(responses[row], language), language, name, arity):
                if arguments not in inputs and len(inputs) < MAX_INPUTS:
                    inputs.append(arguments)
        if inputs:
            calls = [f"{name}({arguments})" for arguments in inputs]
            jobs.extend((row, language, calls) for row in rows)
            groups_run.append((rows, calls))
    if not jobs:
        return features
    with ThreadPoolExecutor(max_workers=available_cores()) as pool:
        runs = pool.map(lambda job: behaviour(responses[job[0]], job[1], job[2]), jobs)
        returned = dict(zip((job[0] for job in jobs), runs, strict=True))
    status, detail = frame["exec_status"].to_list(), frame["exec_detail"].to_list()
    for rows, calls in groups_run:
        # Wrong answers can agree too (the same slip): only the group's largest set of alike
        # answers counts, as in CodeT's and AlphaCode's clustering.
        alike = Counter(returned[row] for row in rows if _says_something(returned[row]))
        largest = max(alike.values(), default=0)
        if largest < 2:
            continue
        inputs = "1 example input" if len(calls) == 1 else f"{len(calls)} example inputs"
        why = (
            f"one of the {largest} of {len(rows)} answers to the same request in its shard that return the same "
            f"on {inputs} (the largest such set)"
        )
        for row in rows:
            if _says_something(returned[row]) and alike[returned[row]] == largest:
                status[row], detail[row] = AGREED, why
    return features.with_columns(
        exec_status=pl.Series(status, dtype=features.schema["exec_status"]),
        exec_detail=pl.Series(detail, dtype=pl.String),
    )
