"""Execution as a signal: run an answer against the tests its record carries, in the sandbox.

Tests come from, in this order:
- the record's tests (``tests``/``test``/``unit_tests``/``test_list`` fields, KodCode-,
  OpenCodeInstruct- and MBPP-style): Python asserts, ``test_*`` functions or a HumanEval-style
  ``check(candidate)``; JavaScript, Rust or Java statements (asserts) in the answer's language;
- the instruction's own runnable examples: doctest lines (``>>> f(2)`` then ``4``) or
  ``assert f(...) == ...`` lines (Python).

A record with neither is ``not_run`` at the cost of two substring tests, unless its answer is run
alone (:func:`run_alone`, off by default): its code and the example usage it shows, where an
error of the code's own making (``raised``) is evidence of a bug and anything else (``ran``) is
not. The verdict per unit (an assert, a test function, a doctest example) gives
``passed``/``total``; ``status`` is ``passed`` (every unit), ``failed`` (some unit failed:
``detail`` names the first and why), ``error`` (the answer's code itself raised or does not
compile), ``timeout`` or ``not_run`` (with why: no tests, no toolchain, no sandbox).
"""

from __future__ import annotations

import ast
import doctest
import functools
import json
import re
import secrets
import shlex
from dataclasses import dataclass, replace
from importlib import resources

from qaq_assets.lib.ingest import codecheck
from qaq_assets.lib.ingest.execution import sandbox
from qaq_assets.lib.ingest.execution.toolchains import BUILD_LIMITS, toolchain

PASSED, FAILED, ERROR, TIMEOUT, NOT_RUN = "passed", "failed", "error", "timeout", "not_run"
# An answer run alone (no tests): its own code raised an error of its own making, or it did not;
# one that ran returns what another answer to the same request returns (agreement.py).
RAISED, RAN, AGREED = "raised", "ran", "agreed"
# Statuses that show the answer does not do what its tests ask (the selection drops them).
FAILING = (FAILED, ERROR, TIMEOUT)
UNIT_SECONDS = 5
_ASSERT_LINE = re.compile(r"^[ \t]*assert\b.+$", re.MULTILINE)


@dataclass(frozen=True)
class Execution:
    status: str
    detail: str | None = None  # the first failing unit and why, or why it was not run
    passed: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Unit:
    kind: str  # statement, function, doctest
    source: str
    counted: bool = True  # setup statements (imports, helpers) run but are not test units
    want: str = ""


def not_run(why: str) -> Execution:
    return Execution(NOT_RUN, why)


NO_TESTS = not_run("no tests")


def has_examples(instruction: str) -> bool:
    """Cheap test: could the instruction hold runnable examples (doctest or assert lines)?"""
    return ">>>" in instruction or "assert" in instruction


def instruction_units(instruction: str) -> list[Unit]:
    """The instruction's runnable examples (Python): doctest examples, else assert lines that parse."""
    if ">>>" in instruction:
        try:
            examples = doctest.DocTestParser().get_examples(instruction)
        except ValueError:
            examples = []
        if examples:
            return [Unit("doctest", example.source, want=example.want) for example in examples]
    units = []
    for line in _ASSERT_LINE.findall(instruction):
        statement = line.strip().rstrip("`").strip()
        try:
            ast.parse(statement)
        except SyntaxError:
            continue
        units.append(Unit("statement", statement))
    return units


def python_units(tests: str, answer_code: str, instruction: str = "") -> list[Unit]:
    """A Python test file as units: each top-level assert and each ``test_*`` function is one;
    other statements (imports, helpers) are setup. A ``check(candidate)`` with no test of its
    own is called with the answer's function the instruction names in backticks, else its last
    (HumanEval's form: helpers come first)."""
    tree = ast.parse(tests)
    units = []
    for node in tree.body:
        source = ast.get_source_segment(tests, node) or ast.unparse(node)
        if isinstance(node, ast.Assert):
            units.append(Unit("statement", source))
            continue
        units.append(Unit("statement", source, counted=False))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            if not node.args.args:
                units.append(Unit("function", node.name))
    if not any(unit.counted for unit in units):
        defines_check = any(isinstance(node, ast.FunctionDef) and node.name == "check" for node in tree.body)
        entry = _entry_point(answer_code, instruction)
        if defines_check and entry:
            units.append(Unit("statement", f"check({entry})"))
    return units


_BACKTICKED_NAME = re.compile(r"`([A-Za-z_]\w*)(?:\(|`)")


def _entry_point(code: str, instruction: str) -> str | None:
    """The answer's top-level function the instruction names in backticks, else its last one."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    defined = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    named = [name for name in _BACKTICKED_NAME.findall(instruction) if name in defined]
    return named[0] if named else (defined[-1] if defined else None)


def _statements(language: str, tests: str) -> list[str]:
    """Top-level statements of a test text in ``language``, split by tree-sitter (the whole text as
    one statement where it does not parse)."""
    wrappers = {"javascript": ("", ""), "rust": ("fn __tests() {\n", "\n}"), "java": ("class T { void t() {\n", "\n}}")}
    before, after = wrappers[language]
    parser = codecheck.tree_sitter_parser(language)
    text = (before + tests + after).encode("utf-8")
    if parser is None:
        return [tests]
    root = parser.parse(text).root_node
    if root.has_error:
        return [tests]
    node = root
    if language != "javascript":  # the wrapper function's body
        blocks = [n for n in codecheck.walk(root) if n.type == "block"]
        if not blocks:
            return [tests]
        node = blocks[0]
    return [
        text[child.start_byte : child.end_byte].decode("utf-8")
        for child in node.named_children
        if child.type not in ("comment", "line_comment", "block_comment")
    ]


def statement_units(language: str, tests: str) -> list[Unit]:
    """Tests in JavaScript, Rust or Java as units: each statement is one, but declarations
    (imports, bindings, helper functions) are setup."""
    units = []
    for statement in _statements(language, tests):
        setup = (
            re.match(r"\s*(const|let|var|function|class|import)\b", statement) is not None
            if language == "javascript"
            else re.match(r"\s*(let|use|fn|struct|impl|final|int|long|String|var|List|Map|import)\b", statement)
            is not None
        )
        units.append(Unit("statement", statement, counted=not setup))
    return units


@functools.lru_cache(maxsize=4)
def _harness(name: str) -> str:
    return resources.files("qaq_assets.lib.ingest.execution").joinpath(name).read_text(encoding="utf-8")


def _program(language: str, code: str, units: list[Unit], marker: str) -> dict[str, str]:
    """The files of one run: the answer's code, the units and the harness."""
    payload = json.dumps([{"kind": u.kind, "source": u.source, "want": u.want} for u in units])
    if language == "python":
        return {"solution.py": code, "units.json": payload, "harness.py": _harness("python_harness.py")}
    if language == "javascript":
        return {"solution.js": code, "units.json": payload, "harness.js": _harness("node_harness.js")}
    if language == "rust":
        return {"main.rs": _rust_program(code, units)}
    return {"Main.java": _java_program(code, units)}


def _in_order(units: list[Unit], report: str, separator: str) -> str:
    """The units as statements run in order, each test unit followed by the report of its pass
    (a failure stops the rest: the panic hook or the catch reports it)."""
    steps = []
    for index, unit in enumerate(units):
        steps.append(unit.source.rstrip().rstrip(";") + ";")
        if unit.counted:
            steps.append(f'{report}({index}, true, "");')
    return separator.join(steps)


def _rust_program(code: str, units: list[Unit]) -> str:
    # The answer's own main (an example run) is kept but never called.
    code = re.sub(r"\bfn\s+main\s*\(", "fn __answer_main(", code)
    body = _in_order(units, "__report", "\n    ")
    return f"""#![allow(unused, dead_code, non_snake_case)]
{code}

static __UNIT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);
fn __report(unit: i64, ok: bool, detail: &str) {{
    let marker = std::env::args().nth(1).unwrap_or_default();
    let detail: String = detail.chars().take(300).collect();
    println!("{{}} {{{{\\"unit\\": {{}}, \\"ok\\": {{}}, \\"detail\\": {{:?}}}}}}", marker, unit, ok, detail);
    __UNIT.store(unit + 1, std::sync::atomic::Ordering::SeqCst);
}}
fn main() {{
    std::panic::set_hook(Box::new(|info| {{
        let unit = __UNIT.load(std::sync::atomic::Ordering::SeqCst);
        __report(unit, false, &info.to_string().split_whitespace().collect::<Vec<_>>().join(" "));
    }}));
    __report(-1, true, "");
    {body}
}}
"""


def _java_program(code: str, units: list[Unit]) -> str:
    imports = "\n".join(line for line in code.splitlines() if re.match(r"\s*import\s+[\w.*]+\s*;", line))
    body_code = "\n".join(
        line for line in code.splitlines() if not re.match(r"\s*(import|package)\s+[\w.*]+\s*;", line)
    )
    # One public class per file (Main): the answer's classes lose `public`; bare methods get a class.
    body_code = re.sub(
        r"^(\s*)public\s+(?=(final\s+|abstract\s+)?(class|interface|enum|record)\b)",
        r"\1",
        body_code,
        flags=re.MULTILINE,
    )
    if not re.search(r"\b(class|interface|enum|record)\s+\w+", body_code):
        body_code = "class Solution {\n" + body_code + "\n}"
    body = _in_order(units, "report", "\n            ")
    return f"""import java.util.*;
import java.util.stream.*;
{imports}

{body_code}

public class Main {{
    static int unit = -1;
    static String marker;
    static void report(int at, boolean ok, String detail) {{
        String text = detail.length() > 300 ? detail.substring(0, 300) : detail;
        System.out.println(marker + " {{\\"unit\\": " + at + ", \\"ok\\": " + ok + ", \\"detail\\": \\""
            + text.replace("\\\\", "\\\\\\\\").replace("\\"", "\\\\\\"").replace("\\n", " ") + "\\"}}");
        unit = at + 1;
    }}
    public static void main(String[] args) {{
        marker = args[0];
        report(-1, true, "");
        try {{
            {body}
        }} catch (Throwable error) {{
            report(unit, false, error.toString());
        }}
    }}
}}
"""


def answer_code(answer: str, language: str) -> str:
    """The answer's code in ``language``: its blocks in that language joined, else the whole answer."""
    blocks = [code for found, code in codecheck.code_blocks(answer, language) if found == language]
    return "\n\n".join(blocks) if blocks else answer


def execute(instruction: str, answer: str, tests: str | None, language: str | None) -> Execution:
    """Run the answer against its record's tests, or its instruction's examples (see module doc)."""
    if tests and tests.strip():
        language = language or "python"
        if toolchain(language) is None:
            return not_run(f"no toolchain for {language}")
        code = answer_code(answer, language)
        try:
            units = python_units(tests, code, instruction) if language == "python" else statement_units(language, tests)
        except SyntaxError as error:
            return not_run(f"the tests do not parse: {error.msg}")
    elif has_examples(instruction) and language in (None, "python"):
        language, units = "python", instruction_units(instruction)
        code = answer_code(answer, language)
    else:
        return NO_TESTS
    if not any(unit.counted for unit in units):
        return NO_TESTS
    why = sandbox.unavailable()
    if why is not None:
        return not_run(why)
    return _run(language, code, units)


# Languages whose harness reports where the answer's own code raised (run_alone).
RUN_ALONE = ("python", "javascript")
# Errors that show the code's own logic is wrong when its own example runs it. Not evidence:
# input() at the end of input, files, arguments, the network, a library the sandbox lacks, a
# ValueError or an error the code raises on purpose (a demonstration of its input checks), time.
_BUG_ERRORS = {
    "python": frozenset(
        {
            "AssertionError",
            "AttributeError",
            "IndexError",
            "KeyError",
            "NameError",
            "RecursionError",
            "TypeError",
            "UnboundLocalError",
            "ZeroDivisionError",
        }
    ),
    "javascript": frozenset({"ReferenceError", "RangeError", "SyntaxError", "TypeError"}),
}
_ON_PURPOSE = re.compile(r"^(?:raise|throw)\b")
# A line that reads what the user gives the program (arguments, the environment).
_USER_INPUT = re.compile(r"\b(?:sys\.argv|os\.environ|getenv|process\.argv|process\.env)\b")
_DEFINITION = re.compile(r"^(?:@|(?:async\s+)?def\s|class\s)")
# Joined blocks that each declare the same function (a first and a better version) are no bug.
_REDECLARED = "has already been declared"


def run_alone(answer: str, language: str | None) -> Execution:
    """An answer whose record carries no tests, run on its own in the sandbox: its code and the
    example usage it shows. ``raised``: its own code raised an error of the code's own making
    (:data:`_BUG_ERRORS`, not raised on purpose, and not a name it never binds at module level,
    which is context the snippet leaves out: ``np``, a constant of its module); ``ran`` otherwise."""
    if language not in RUN_ALONE:
        return not_run(f"answers in {language} are not run alone")
    if toolchain(language) is None:
        return not_run(f"no toolchain for {language}")
    why = sandbox.unavailable()
    if why is not None:
        return not_run(why)
    code = answer_code(answer, language)
    report = _reports(*_sandboxed(language, code, [], alone=True)).get(-1)
    if report is None or report.get("ok"):
        return Execution(RAN, None if report else "the program ended before reporting")
    detail = report.get("detail") or "the answer's code raised"
    if _is_bug(language, code, report):
        return Execution(RAISED, detail)
    return Execution(RAN, f"no evidence: {detail}")


def behaviour(answer: str, language: str, calls: list[str]) -> tuple[str, ...] | None:
    """What the answer's code returns for each of ``calls`` (expressions in its language, run
    after its code in one sandbox): a ``repr`` (Python) or JSON (JavaScript) text each, or
    ``error: <its first words>``; None where the code itself does not run to its end."""
    if language not in RUN_ALONE or toolchain(language) is None or sandbox.unavailable() is not None:
        return None
    units = [Unit("call", call) for call in calls]
    reports = _reports(*_sandboxed(language, answer_code(answer, language), units))
    if not reports.get(-1, {}).get("ok"):
        return None
    results = (reports.get(index) for index in range(len(units)))
    return tuple(
        "error: no result" if r is None else r["detail"] if r["ok"] else "error: " + r["detail"][:60] for r in results
    )


def _is_bug(language: str, code: str, report: dict) -> bool:
    line = report.get("line") or ""
    if report.get("error") not in _BUG_ERRORS[language] or _ON_PURPOSE.match(line) or _USER_INPUT.search(line):
        return False
    if _REDECLARED in (report.get("detail") or "") or _MISSING_DEPENDENCY.search(report.get("detail") or ""):
        return False
    if language == "python" and report["error"] == "NameError" and not report.get("in_function"):
        if _DEFINITION.match(line):
            return False  # a default, base or decorator naming its module's context (def f(x=np.pi))
        return report.get("name") in _bound_names(code)  # a name it binds elsewhere: out of scope
    return True


def _bound_names(code: str) -> set[str]:
    """Every name ``code`` binds anywhere (assigned, a parameter, a definition, an import)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound


def _run(language: str, code: str, units: list[Unit]) -> Execution:
    outcome, marker = _sandboxed(language, code, units)
    return _verdict(outcome, units, marker)


def _sandboxed(language: str, code: str, units: list[Unit], alone: bool = False) -> tuple[sandbox.Outcome, str]:
    """One sandboxed run of the answer's code and ``units``, and the marker of its reports."""
    chain = toolchain(language)
    marker = secrets.token_hex(8)
    files = _program(language, code, units, marker)
    argv = [*chain.run, marker, str(UNIT_SECONDS), *(["alone"] if alone else [])]
    limits = _scaled(chain.limits, units)
    if chain.compile:
        # Build and run in one sandbox (the build's output lives in its throwaway directory); a
        # build that fails reports it as the answer's own failure.
        failed = json.dumps({"unit": -1, "ok": False, "detail": COMPILE_ERROR})
        script = (
            f"{shlex.join(chain.compile)} >/dev/null 2>build.err || {{ head -c 4000 build.err >&2; "
            f"echo {shlex.quote(marker + ' ' + failed)}; exit 0; }}; exec {shlex.join(argv)}"
        )
        argv, limits = ["/bin/sh", "-c", script], _scaled(BUILD_LIMITS, units)
    return sandbox.run(argv, files, limits, chain.binds), marker


COMPILE_ERROR = "does not compile"


def _scaled(limits: sandbox.Limits, units: list[Unit]) -> sandbox.Limits:
    """Limits with time for every unit's alarm (a slow unit fails alone, not the whole run)."""
    seconds = min(60, 5 + UNIT_SECONDS * (1 + len(units)) // 2)
    return replace(limits, wall_seconds=max(limits.wall_seconds, seconds), cpu_seconds=max(limits.cpu_seconds, seconds))


def _counted(units: list[Unit]) -> int:
    return sum(unit.counted for unit in units)


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if "error" in line.lower()]
    return (lines[0] if lines else stderr.strip().splitlines()[-1] if stderr.strip() else "no output")[:300]


def _reports(outcome: sandbox.Outcome, marker: str) -> dict[int, dict]:
    """The harness's first report per unit in the run's output."""
    results: dict[int, dict] = {}
    prefix = marker + " "
    for line in outcome.stdout.splitlines():
        if line.startswith(prefix):
            try:
                report = json.loads(line[len(prefix) :])
                results.setdefault(int(report["unit"]), report)
            except (ValueError, KeyError, TypeError):
                continue
    return results


def _verdict(outcome: sandbox.Outcome, units: list[Unit], marker: str) -> Execution:
    results = _reports(outcome, marker)
    total = _counted(units)
    answer = results.get(-1)
    if answer is None:
        if outcome.timed_out:
            return Execution(TIMEOUT, "the answer's code did not finish", 0, total)
        why = outcome.signal_name or _first_error(outcome.stderr) or f"exit {outcome.returncode}"
        return Execution(ERROR, f"the program ended before any test ran ({why})", 0, total)
    if not answer["ok"]:
        detail = answer["detail"]
        if detail == COMPILE_ERROR:
            detail += ": " + _first_error(outcome.stderr)
        return _unless_missing(Execution(ERROR, detail, 0, total))
    passed, first_failure = 0, None
    for index, unit in enumerate(units):
        report = results.get(index)
        ok = report is not None and report["ok"]
        if unit.counted and ok:
            passed += 1
        elif first_failure is None and report is not None and not report["ok"]:
            first_failure = f"{_short(unit.source)}: {report['detail']}"
    if passed == total:
        return Execution(PASSED, None, passed, total)
    if outcome.timed_out and first_failure is None:
        return Execution(TIMEOUT, f"timed out after {passed} of {total} tests", passed, total)
    if first_failure is None:
        why = outcome.signal_name or f"exit {outcome.returncode}"
        first_failure = f"the program stopped after {passed} of {total} tests ({why})"
    return _unless_missing(Execution(FAILED, first_failure, passed, total))


# A library the sandbox does not have (it offers each language's standard library only): the
# answer may be right, so the run is no evidence either way.
_MISSING_DEPENDENCY = re.compile(
    r"No module named '(?P<python>[\w.]+)'"
    r"|Cannot find module '(?P<javascript>[^']+)'"
    r"|can't find crate for `(?P<crate>\w+)`"
    r"|unresolved import `(?!(?:std|core|alloc|crate|self|super)\b)(?P<rust>\w+)"
    r"|use of (?:unresolved|undeclared) crate or module `(?!(?:std|core|alloc)\b)(?P<module>\w+)`"
    r"|package (?!java\.|javax\.)(?P<java>[\w.]+) does not exist"
)


def _unless_missing(result: Execution) -> Execution:
    """``result``, or ``not_run`` where it failed only for a library the sandbox lacks."""
    found = _MISSING_DEPENDENCY.search(result.detail or "")
    if found is None:
        return result
    name = next(value for value in found.groupdict().values() if value)
    return not_run(f"needs {name}, which the sandbox lacks (standard libraries only)")


def _short(source: str) -> str:
    line = " ".join(source.split())
    return line if len(line) <= 120 else line[:117] + "..."
