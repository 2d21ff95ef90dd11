"""Runs inside the sandbox (never imported by the product): an answer's Python code, then its
test units one by one, each with its own alarm, reporting each unit's outcome as it ends.

Files: ``solution.py`` (the answer's code), ``units.json`` (a list of ``{"kind", "source"}``:
``statement`` (module code: asserts, imports, helpers), ``function`` (a test function to call),
``doctest`` (one example: ``source`` and ``want``) or ``call`` (an expression whose value's
``repr`` is the report's detail: what the answer's function returns for an input)). Output: one line per unit,
``<marker> {"unit": i, "ok": bool, "detail": str}``, after a line for the answer's own run
(unit -1: where its code raised, also the error's type, the line that raised and whether that
line is in a function). A third argument ``alone`` runs the code with no units, its annotations
left unevaluated (a snippet's ``List`` without its import is no bug of its logic).
The marker is given on the command line so an answer's prints are not read as results (an
answer that means to can still forge them: the sandbox keeps the host safe, not the verdict).
"""

import __future__

import contextlib
import doctest
import io
import json
import signal
import sys
import traceback
import types
from hashlib import sha256


class UnitTimeout(BaseException):
    """Raised by the alarm: a BaseException so the answer's ``except Exception`` cannot swallow it."""


def alarm(signum, frame):
    raise UnitTimeout()


def report(unit, ok, detail="", **where):
    line = json.dumps({"unit": unit, "ok": ok, "detail": detail[:300], **where})
    sys.__stdout__.write(sys.argv[1] + " " + line + "\n")
    sys.__stdout__.flush()


def raised_at(error, source):
    """Where the answer's own code raised ``error``: its type, name (a NameError's), the
    innermost line of solution.py in the traceback and whether that line is in a function."""
    frame, lineno = None, None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "solution.py":
            frame, lineno = trace.tb_frame, trace.tb_lineno
        trace = trace.tb_next
    lines = source.splitlines()
    text = lines[lineno - 1].strip()[:200] if lineno and 0 < lineno <= len(lines) else ""
    return {
        "error": type(error).__name__,
        "name": getattr(error, "name", None) if isinstance(error, NameError) else None,
        "line": text,
        "in_function": frame is not None and frame.f_code.co_name != "<module>",
    }


def last_line(error):
    lines = traceback.format_exception_only(type(error), error)
    return lines[-1].strip() if lines else type(error).__name__


def _actual(unit, error, namespace):
    """For a failed ``assert left == right``: what ``left`` gave (the one thing a reader asks)."""
    if not isinstance(error, AssertionError) or unit["kind"] != "statement":
        return ""
    try:
        import ast

        node = ast.parse(unit["source"]).body[0]
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
            signal.alarm(2)
            got = eval(compile(ast.Expression(node.test.left), "<test>", "eval"), namespace)
            signal.alarm(0)
            return " (got " + repr(got)[:120] + ")"
    except BaseException:  # noqa: BLE001 - the detail is a courtesy: no detail rather than none at all
        signal.alarm(0)
    return ""


def main():
    unit_seconds = int(sys.argv[2])
    signal.signal(signal.SIGALRM, alarm)
    module = types.ModuleType("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module
    with open("solution.py", encoding="utf-8") as handle:
        source = handle.read()
    with open("units.json", encoding="utf-8") as handle:
        units = json.load(handle)
    alone = sys.argv[3:] == ["alone"]
    flags = __future__.annotations.compiler_flag if alone else 0
    signal.alarm(unit_seconds)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, "solution.py", "exec", flags=flags, dont_inherit=True), module.__dict__)
    except UnitTimeout:
        report(-1, False, "the answer's code did not finish", error="timeout")
        return
    except BaseException as error:  # noqa: BLE001 - SystemExit too: the answer's failure, reported
        report(-1, False, "the answer's code raised " + last_line(error), **raised_at(error, source))
        return
    finally:
        signal.alarm(0)
    report(-1, True)
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for index, unit in enumerate(units):
        captured = io.StringIO()
        signal.alarm(unit_seconds)
        try:
            with contextlib.redirect_stdout(captured):
                if unit["kind"] == "function":
                    module.__dict__[unit["source"]]()
                elif unit["kind"] == "call":  # what the call returns is the report
                    shown = repr(eval(compile(unit["source"], "<call>", "eval"), module.__dict__))
                    signal.alarm(0)
                    report(index, True, shown if len(shown) <= 200 else "sha256:" + sha256(shown.encode()).hexdigest())
                    continue
                elif unit["kind"] == "doctest":
                    exec(compile(unit["source"], "<doctest>", "single"), module.__dict__)
                else:
                    exec(compile(unit["source"], "<test>", "exec"), module.__dict__)
            signal.alarm(0)
            if unit["kind"] == "doctest" and not checker.check_output(unit["want"], captured.getvalue(), flags):
                report(index, False, "expected " + unit["want"].strip() + ", got " + captured.getvalue().strip())
            else:
                report(index, True)
        except UnitTimeout:
            report(index, False, "timed out")
        except BaseException as error:  # noqa: BLE001 - any failure of the unit is its verdict
            signal.alarm(0)
            if unit["kind"] == "doctest" and unit["want"].startswith("Traceback"):
                exception = unit["want"].strip().splitlines()[-1].split(":")[0]
                if type(error).__name__ == exception.split(".")[-1]:
                    report(index, True)
                    continue
            report(index, False, last_line(error) + _actual(unit, error, module.__dict__))


if __name__ == "__main__":
    main()
