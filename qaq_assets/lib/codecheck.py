"""A cheap code-validity signal: does the answer contain Python that parses?

Answers are either bare code or prose with fenced blocks. A fenced block labelled with
another language counts as that language, not as broken Python."""

from __future__ import annotations

import ast
import re
import warnings

FENCE = re.compile(r"```([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
PYTHON_LABELS = {"", "python", "py", "python3"}
VALID, SYNTAX_ERROR, OTHER_LANGUAGE, NO_CODE = "valid", "syntax_error", "other_language", "no_code"


def _parses(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in user code
            tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    # A lone string or name is prose that happens to parse, not code.
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.Name))) for node in tree.body
    )


def python_status(answer: str) -> str:
    """``valid``, ``syntax_error``, ``other_language`` or ``no_code``."""
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
