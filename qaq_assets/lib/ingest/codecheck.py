"""A cheap code-validity signal: does the answer contain Python that parses?

Answers are either bare code or prose with fenced blocks. A fenced block labelled with
another language counts as that language, not as broken Python."""

from __future__ import annotations

import ast
import functools
import re
import warnings

FENCE = re.compile(r"```([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
PYTHON_LABELS = {"", "python", "py", "python3"}
VALID, SYNTAX_ERROR, OTHER_LANGUAGE, NO_CODE = "valid", "syntax_error", "other_language", "no_code"
# Prefix of the status of an answer the check itself could not judge ("check_failed:MemoryError").
CHECK_FAILED = "check_failed"


@functools.lru_cache(maxsize=8)
def _tree(code: str) -> ast.Module:
    """``ast.parse(code)``, remembered for the few most recent texts: the code check and the
    signature check of one answer parse it once (the parser is ingest's costliest step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in user code
        return ast.parse(code)


def _parses(code: str) -> bool:
    try:
        tree = _tree(code)
    except (SyntaxError, ValueError):
        return False
    # A lone string or name is prose that happens to parse, not code.
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.Name))) for node in tree.body
    )


def python_status(answer: str) -> str:
    """``valid``, ``syntax_error``, ``other_language``, ``no_code``, or ``check_failed:<error>``
    when the check itself fails on this answer (CPython's parser raises MemoryError on a
    few KB of ``"the " * 2000``, RecursionError on deep nesting): one sample never stops a curation."""
    try:
        return _status(answer)
    except Exception as error:  # noqa: BLE001 - any failure is this sample's, recorded as its status
        return f"{CHECK_FAILED}:{type(error).__name__}"


def _status(answer: str) -> str:
    blocks = FENCE.findall(answer)
    if blocks:
        python = [code for label, code in blocks if label.lower() in PYTHON_LABELS]
        if not python:
            return OTHER_LANGUAGE
        return VALID if all(_parses(code) for code in python) else SYNTAX_ERROR
    if _parses(answer):
        return VALID
    # Unfenced text: code has structure (def/class/return/indentation); prose does not.
    looks_like_code = re.search(r"^\s*(def |class |return |import |from \S+ import )", answer, re.M)
    return SYNTAX_ERROR if looks_like_code else NO_CODE


SIGNATURE_MATCH, SIGNATURE_MISMATCH, SIGNATURE_UNKNOWN = "match", "mismatch", "unknown"
_ASKED = re.compile(r"`([A-Za-z_]\w*)\(([^`]*)\)`")


def _parameters(function: ast.FunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    names += [f"*{arguments.vararg.arg}"] if arguments.vararg else []
    names += [a.arg for a in arguments.kwonlyargs]
    names += [f"**{arguments.kwarg.arg}"] if arguments.kwarg else []
    return names


def signature_status(instruction: str, answer: str) -> str:
    """Whether the answer's function takes the parameters the instruction asks for in a
    backticked signature (`` `name(a, b=None)` ``): ``match``, ``mismatch`` (valid code for
    another task under the asked-for name), or ``unknown`` (no signature asked, or no such
    function found)."""
    try:
        asked = _ASKED.search(instruction)
        if asked is None:
            return SIGNATURE_UNKNOWN
        name = asked.group(1)
        wanted = _parameters(_tree(f"def {name}({asked.group(2)}): pass").body[0])
        blocks = [code for label, code in FENCE.findall(answer) if label.lower() in PYTHON_LABELS]
        tree = _tree(blocks[0] if blocks else answer)
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name]
        if not functions:
            return SIGNATURE_UNKNOWN
        return SIGNATURE_MATCH if _parameters(functions[0]) == wanted else SIGNATURE_MISMATCH
    except Exception:  # noqa: BLE001 - unparsable either side: no evidence either way
        return SIGNATURE_UNKNOWN
