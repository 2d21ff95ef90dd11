"""Generate data/shards/: synthetic code instructions with planted defects, offline.

Real code comes from third-party packages installed beside qaq-assets (never the Python
standard library, which is kept for an independent held-out check): each documented
function of a modest size becomes an instruction written from its docstring and
signature, answered by its own body. A share of rows is then corrupted on purpose and
labelled in the ``defect`` column, which scoring never reads:

- ``misaligned``: the answer belongs to another task (another function's body, renamed
  to the asked-for name, so the surface matches);
- ``echo``: the answer only restates the question;
- ``truncated``: the code is cut off part-way;
- ``chatty``: a friendly non-answer with no code;
- ``wrong_language``: a JavaScript answer to a Python request.

Run: ``python data/generate_sample.py`` (deterministic for a given set of installed
package versions; the shipped shards record what it produced). The independent held-out
set comes from the standard library instead:
``python data/generate_sample.py --packages stdlib --out data/heldout --seed 7 --shards 2 --per-shard 100``.

A second held-out set is made differently on every count (``--variant shifted``): another source
corpus (networkx and sympy, installed with torch), misaligned answers taken from a neighbouring
function of the *same* module, truncation at a random character as well as at a line, echoes
that paraphrase the task, Rust instead of JavaScript, and other chatty texts:
``python data/generate_sample.py --packages networkx,sympy --variant shifted --out data/heldout2 --seed 11
--shards 2 --per-shard 100``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import pkgutil
import random
import textwrap
import warnings
from pathlib import Path

PACKAGES = ["polars", "click", "jinja2", "yaml", "packaging", "datasketch", "rich", "tqdm", "dateutil", "sqlalchemy"]
STDLIB = [
    "json",
    "email",
    "http",
    "logging",
    "urllib",
    "xml",
    "argparse",
    "textwrap",
    "shutil",
    "pathlib",
    "inspect",
    "difflib",
    "csv",
    "calendar",
    "configparser",
    "zipfile",
    "tarfile",
    "statistics",
    "ipaddress",
    "importlib",
    "unittest",
    "concurrent",
    "asyncio",
    "tomllib",
    "html",
    "wsgiref",
]
SHARDS = 4
PER_SHARD = 80
DEFECT_SHARE = {"misaligned": 0.08, "echo": 0.08, "truncated": 0.08, "chatty": 0.08, "wrong_language": 0.06}
SEED = 20261125
OUT = Path(__file__).parent / "shards"

ASKS = [
    "Write a Python function `{sig}` that {task}",
    "Implement `{sig}` in Python. It should {task}",
    "Create a Python function named `{name}` with signature `{sig}`. Requirement: {task}",
    "I need a helper `{sig}`: it must {task} Please write it in Python.",
]
CHATTY = [
    "Great question! There are many ways to approach a problem like this, and the best choice depends on your "
    "requirements. I'd recommend thinking carefully about edge cases and writing tests first. Let me know if you "
    "want me to go deeper into any part!",
    "Sure, I can help with that. This is a common task in Python and there are several libraries that can do it. "
    "Before writing the code, it is worth considering performance, readability and maintainability. Happy coding!",
    "Thanks for asking. Implementing this well requires understanding the problem domain. You might want to look "
    "at the documentation of the relevant library, as it probably already provides something similar.",
]


def task_text(doc: str) -> str:
    first = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in first.splitlines())
    text = text[0].lower() + text[1:] if text else text
    return text if text.endswith(".") else text + "."


def strip_docstring(source: str) -> tuple[str, ast.FunctionDef] | None:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    func = tree.body[0] if tree.body else None
    if not isinstance(func, ast.FunctionDef):
        return None
    func.decorator_list = []
    if (
        func.body
        and isinstance(func.body[0], ast.Expr)
        and isinstance(getattr(func.body[0], "value", None), ast.Constant)
    ):
        func.body = func.body[1:] or [ast.Pass()]
    return ast.unparse(func), func


def signature_args(func: ast.FunctionDef) -> str:
    """Parameters as written, without annotations (instructions name them, not their types)."""
    arguments = ast.parse(ast.unparse(func)).body[0].args
    for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
        if arg is not None:
            arg.annotation = None
    return ast.unparse(arguments)


def collect_functions(packages: list[str]) -> list[dict]:
    found, seen = [], set()
    for package_name in packages:
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        modules = [package]
        if hasattr(package, "__path__"):
            for info in pkgutil.walk_packages(package.__path__, package_name + "."):
                if (
                    any(part.startswith("_") and part != "__init__" for part in info.name.split(".")[1:])
                    or "test" in info.name
                ):
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        modules.append(importlib.import_module(info.name))
                except Exception:  # optional dependencies missing, platform-specific modules
                    continue
        for module in modules:
            for name, obj in sorted(vars(module).items()):
                if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                    continue
                doc = inspect.getdoc(obj) or ""
                if not 30 <= len(task_text(doc)) <= 300:
                    continue
                try:
                    source = inspect.getsource(obj)
                except (OSError, TypeError):
                    continue
                stripped = strip_docstring(source)
                if stripped is None:
                    continue
                code, func = stripped
                lines = code.count("\n") + 1
                if not 3 <= lines <= 30 or code in seen:
                    continue
                seen.add(code)
                args = signature_args(func)
                found.append(
                    {
                        "package": package_name,
                        "module": module.__name__,
                        "name": name,
                        "sig": f"{name}({args})",
                        "task": task_text(doc),
                        "code": code,
                    }
                )
    return found


def clean_answer(item: dict, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return item["code"]
    return f"Here is an implementation:\n\n```python\n{item['code']}\n```\n\nIt follows the requested behaviour."


def rename(code: str, new_name: str) -> str:
    tree = ast.parse(code)
    tree.body[0].name = new_name
    return ast.unparse(tree)


def defective(kind: str, item: dict, other: dict, rng: random.Random) -> str:
    if kind == "misaligned":
        return rename(other["code"], item["name"])
    if kind == "echo":
        return (
            f"You want a Python function `{item['sig']}` that {item['task']} So the function `{item['name']}` "
            f"should {item['task']}"
        )
    if kind == "truncated":
        lines = item["code"].splitlines()
        return "\n".join(lines[: max(2, len(lines) * rng.randint(30, 55) // 100)])
    if kind == "chatty":
        return rng.choice(CHATTY)
    if kind == "wrong_language":
        args = ", ".join(
            a.split("=")[0].strip(" *") for a in item["sig"][len(item["name"]) + 1 : -1].split(",") if a.strip(" *")
        )
        return (
            f"```javascript\nfunction {item['name']}({args}) {{\n  // {item['task']}\n"
            f"  const result = [];\n  for (const value of Object.values(arguments)) {{\n"
            f"    result.push(value);\n  }}\n  return result;\n}}\n```"
        )
    raise ValueError(kind)


CHATTY_SHIFTED = [
    "Happy to help! Before any code, let's make sure we understand the goal: clarify the inputs, the outputs and "
    "the edge cases, then pick a design. Once that is settled the implementation tends to follow naturally.",
    "This is a classic problem. Most solutions start from the standard approach described in the literature; I "
    "suggest reading the reference documentation and adapting one of its examples to your situation.",
]
PARAPHRASE = {
    "return": "give back",
    "compute": "work out",
    "the": "the",
    "given": "supplied",
    "graph": "network",
    "list": "sequence",
    "number": "value",
    "if": "whenever",
    "of": "for",
    "a": "one",
}


def paraphrase(task: str) -> str:
    words = [PARAPHRASE.get(word.lower(), word) for word in task.rstrip(".").split()]
    half = len(words) // 2
    return " ".join(words[half:] + ["-", "that is,"] + words[:half])


def defective_shifted(kind: str, item: dict, neighbour: dict, rng: random.Random) -> str:
    """The same defect types, planted the other ways (see the module's docstring)."""
    if kind == "misaligned":
        return rename(neighbour["code"], item["name"])
    if kind == "echo":
        return f"In other words, `{item['name']}` should {paraphrase(item['task'])}; that is what is being asked."
    if kind == "truncated":
        code = item["code"]
        if rng.random() < 0.5:
            return code[: max(20, len(code) * rng.randint(35, 70) // 100)]  # mid-line, mid-token
        lines = code.splitlines()
        return "\n".join(lines[: max(2, len(lines) * rng.randint(40, 70) // 100)])
    if kind == "chatty":
        return rng.choice(CHATTY_SHIFTED)
    if kind == "wrong_language":
        return (
            f"```rust\nfn {item['name']}(input: Vec<i64>) -> Vec<i64> {{\n    // {item['task']}\n"
            f"    input.into_iter().filter(|x| *x > 0).collect()\n}}\n```"
        )
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", default="third-party", help="third-party (default), stdlib, or a comma list")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--shards", type=int, default=SHARDS)
    parser.add_argument("--per-shard", type=int, default=PER_SHARD)
    parser.add_argument(
        "--variant", default="standard", choices=["standard", "shifted"], help="how defects are planted"
    )
    args = parser.parse_args()
    packages = {"third-party": PACKAGES, "stdlib": STDLIB}.get(args.packages) or args.packages.split(",")
    out = Path(args.out)
    rng = random.Random(args.seed)
    functions = collect_functions(packages)
    functions.sort(key=lambda f: (f["module"], f["name"]))
    rng.shuffle(functions)
    total = args.shards * args.per_shard
    if len(functions) < total:
        raise SystemExit(f"only {len(functions)} usable functions; install more of {packages}")
    chosen = functions[:total]
    kinds = [k for k, share in DEFECT_SHARE.items() for _ in range(round(share * total))]
    kinds += ["none"] * (total - len(kinds))
    rng.shuffle(kinds)
    out.mkdir(parents=True, exist_ok=True)
    layouts = ["instruction", "prompt", "messages", "instruction"]
    for shard in range(args.shards):
        lines = []
        for offset in range(args.per_shard):
            index = shard * args.per_shard + offset
            item, kind = chosen[index], kinds[index]
            other = chosen[(index + 1 + rng.randrange(total - 1)) % total]
            ask = rng.choice(ASKS).format(sig=item["sig"], name=item["name"], task=item["task"])
            if kind == "none":
                answer = clean_answer(item, rng)
            elif args.variant == "shifted":
                same_module = [f for f in functions if f["module"] == item["module"] and f["name"] != item["name"]]
                answer = defective_shifted(kind, item, rng.choice(same_module) if same_module else other, rng)
            else:
                answer = defective(kind, item, other, rng)
            meta = {"id": f"s{shard}-{offset:03d}", "source": f"{item['module']}.{item['name']}", "defect": kind}
            if layouts[shard] == "prompt":
                record = {**meta, "prompt": ask, "output": answer}
            elif layouts[shard] == "messages":
                record = {
                    **meta,
                    "messages": [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}],
                }
            else:
                record = {**meta, "instruction": ask, "response": answer}
            lines.append(json.dumps(record, ensure_ascii=False))
        if shard == 3:
            # Real synthetic dumps carry a few broken lines and repeats: keep some, labelled.
            lines.insert(10, '{"id": "s3-broken", "instruction": "Write a parser for')
            lines.append(lines[5])
            lines.append(lines[17])
        (out / f"shard-{shard:03d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = {k: kinds.count(k) for k in sorted(set(kinds))}
    print(f"{total} records in {args.shards} shards from {len(functions)} candidate functions; defects: {counts}")


if __name__ == "__main__":
    main()
