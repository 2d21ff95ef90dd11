"""Does an answer's SQL parse? ``sqlglot`` in the dialects answers are written in, plus the cuts
a parser accepts: a query that stops after a keyword that needs more (``GROUP BY``, ``AND``,
``ON``), or a bare ``SELECT``.

tree-sitter's SQL grammar rejected every PostgreSQL file sampled from this machine, so SQL was
``unchecked`` (a query cut at ``… WHERE`` could be kept). sqlglot reads PostgreSQL, MySQL,
SQLite and T-SQL; what it does not support (``CREATE OPERATOR CLASS``, stored procedures) it
reads as an opaque command, which is no verdict either way.
"""

from __future__ import annotations

import functools
import logging
import re

# The dialect-neutral reading first, then the dialects whose own syntax answers use (T-SQL's
# TOP, PostgreSQL's $$ bodies, MySQL's backticks).
DIALECTS = (None, "postgres", "mysql", "sqlite", "tsql")
# Client commands, not SQL: psql's backslash commands, MySQL's DELIMITER.
_CLIENT_COMMAND = re.compile(r"^\s*(\\\w.*|delimiter\s+\S+\s*)$", re.IGNORECASE | re.MULTILINE)
_DELIMITER = re.compile(r"^\s*delimiter\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
# A statement that stops here is cut: each of these needs something after it.
_NEEDS_MORE = re.compile(
    r"(?:\b(?:select|from|where|and|or|not|by|on|join|set|values|as|in|having|limit|offset|into|case|when|then|"
    r"else|union|intersect|except|distinct|between|like|is|with|table|update|insert|delete)|[,(=<>+\-/|])\s*;?\s*$",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1)
def _sqlglot():
    import sqlglot

    # sqlglot logs a warning for each statement it reads as an opaque command.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    return sqlglot


def _without_client_commands(code: str) -> str:
    delimiter = _DELIMITER.search(code)
    if delimiter is not None and delimiter.group(1) != ";":
        code = code.replace(delimiter.group(1), ";")
    return _CLIENT_COMMAND.sub("", code)


def sql_parses(code: str) -> bool | None:
    """Whether ``code`` is whole SQL: True where a dialect reads every statement, False where
    none does or it stops after a keyword that needs more, None where every statement is one the
    parser does not support (no verdict)."""
    sqlglot = _sqlglot()
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    text = _without_client_commands(code)
    if _NEEDS_MORE.search(_COMMENTS.sub("", text).rstrip()):
        return False
    for dialect in DIALECTS:
        try:
            statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
        except (ParseError, TokenError):
            continue
        except (RecursionError, ValueError, KeyError, IndexError, AttributeError):
            return None  # the parser's own failure on odd input: no verdict
        if not statements:
            return None
        if all(isinstance(statement, exp.Command) for statement in statements):
            return None
        return not any(_empty_clause(statement) for statement in statements)
    return False


def _empty_clause(statement) -> bool:
    """A ``SELECT`` with nothing selected or a ``GROUP BY`` with nothing grouped (the parser takes
    both)."""
    from sqlglot import exp

    for node in statement.walk():
        if isinstance(node, exp.Select) and not node.expressions:
            return True
        if isinstance(node, exp.Group) and not (node.expressions or node.args.get("rollup") or node.args.get("cube")):
            return True
    return False
