"""Build data/eval/languages.jsonl: planted defects over real Go, Rust, Java and TypeScript code.

    .venv/bin/python data/build_language_corpus.py MIRRORS

MIRRORS holds bare clones of TheAlgorithms' Go, Rust, Java and TypeScript repositories (MIT;
``TheAlgorithms+Go/repo`` and so on, as the tool library's ``fetch`` writes them; the commits
read are printed and kept in ``data/eval/NOTICE``). Every documented top-level function (a
method of a class in Java) of 3-40 lines becomes a request, in the language's own words, for
`` `name(parameters)` `` with its doc comment's first sentences as the task; its own code is the
clean answer, fenced or bare. 35% of the records get a defect instead, six kinds in turn:
another function of the language with as many parameters under the asked name (misaligned), the
code cut mid-line (truncated), chatter, an echo of the request, a stub body in the language's own
idiom (``todo!()``, ``panic("not implemented")``, ``throw new UnsupportedOperationException()``),
and another language's function under the asked name (wrong_language). Nobody on this project
wrote the code, and no rule was tuned on it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_eval_corpora import CHATTER_A, CHATTER_B, OUT  # noqa: E402

from qaq_assets.lib.ingest.codecheck import parameter_names, tree_sitter_parser, walk  # noqa: E402

PER_LANGUAGE = 150
DEFECT_SHARE = 0.35
KINDS = ("misaligned", "truncated", "chatter", "echo", "stub", "wrong_language")
# language: (repository, file suffix, fence label, the name users call it by, function node types)
LANGUAGES = {
    "go": ("Go", ".go", "go", "Go", ("function_declaration",)),
    "rust": ("Rust", ".rs", "rust", "Rust", ("function_item",)),
    "java": ("Java", ".java", "java", "Java", ("method_declaration",)),
    "typescript": ("TypeScript", ".ts", "typescript", "TypeScript", ("function_declaration",)),
}
ASKS = [
    "Write a {L} function `{sig}` that {task}",
    "In {L}, implement `{sig}`: it should {task}",
    "{Task} Write it in {L} as `{sig}`.",
    "I need `{sig}` in {L}. It must {task}",
]
STUBS = {
    "go": '\tpanic("not implemented")',
    "rust": "    todo!()",
    "java": "    throw new UnsupportedOperationException();",
    "typescript": '  throw new Error("not implemented")',
}
_COMMENT_MARKS = re.compile(r"^\s*(?:/\*\*?|\*/|\*|///?|//!)\s?")
_STOP = re.compile(r"^(?:@|#|```|example|time complexity|space complexity|complexity|params?:|returns?:)", re.I)


def _git(repository: Path, *arguments: str) -> str:
    return subprocess.run(["git", "-C", str(repository), *arguments], capture_output=True, text=True, check=True).stdout


def _files(repository: Path, suffix: str) -> list[tuple[str, str]]:
    names = _git(repository, "ls-tree", "-r", "--name-only", "HEAD").split()
    wanted = sorted(n for n in names if n.endswith(suffix) and "test" not in n.lower())
    return [(name, _git(repository, "show", f"HEAD:{name}")) for name in wanted]


def _doc(node) -> str:
    """The first sentences of the doc comment right above ``node`` (or its export statement):
    its ``@description``, else its first paragraph."""
    anchor = node.parent if node.parent is not None and node.parent.type == "export_statement" else node
    comments, sibling = [], anchor.prev_sibling
    while sibling is not None and "comment" in sibling.type:
        comments.insert(0, sibling.text.decode("utf-8", "replace"))
        sibling = sibling.prev_sibling
    texts = [_COMMENT_MARKS.sub("", line).strip().rstrip("*/").strip() for line in "\n".join(comments).splitlines()]
    described = [i for i, text in enumerate(texts) if text.startswith("@description")]
    if described:
        texts = [texts[described[0]].removeprefix("@description").strip(), *texts[described[0] + 1 :]]
    lines = []
    for text in texts:
        if not text:
            if lines:
                break
            continue
        if _STOP.match(text) or text.startswith("http"):
            break
        lines.append(text)
    doc = " ".join(lines)
    sentences = re.split(r"(?<=[.!?])\s+", doc)
    task = ""
    for sentence in sentences:
        if len(task) + len(sentence) > 240:
            break
        task = f"{task} {sentence}".strip()
    return task


def _parameters(node) -> list[str] | None:
    """Parameter names (None where a receiver, self or a pattern makes the call unclear)."""
    listed = node.child_by_field_name("parameters")
    if listed is None:
        return None
    names = []
    for parameter in listed.named_children:
        if "comment" in parameter.type:
            continue
        bound = parameter_names(parameter)
        if parameter.type == "self_parameter" or not bound:
            return None
        names += [name.decode() for name in bound]
    return names


def _function(node, types: tuple[str, ...]):
    """(the declaration, the function, its name) where ``node`` declares a function: one of
    ``types``, or a constant bound to an arrow function (``const f = (x) => ...``)."""
    if node.type in types and node.child_by_field_name("body") is not None:
        return node, node, node.child_by_field_name("name").text.decode()
    if node.type == "lexical_declaration" and len(node.named_children) == 1:
        declarator = node.named_children[0]
        value = declarator.child_by_field_name("value")
        if value is not None and value.type == "arrow_function" and declarator.child_by_field_name("name"):
            return node, value, declarator.child_by_field_name("name").text.decode()
    return None


def functions(language: str, repository: Path) -> list[dict]:
    _, suffix, _, _, types = LANGUAGES[language]
    parser = tree_sitter_parser(language)
    found, seen = [], set()
    for path, source in _files(repository, suffix):
        tree = parser.parse(source.encode("utf-8"))
        for node in walk(tree.root_node):
            found_function = _function(node, types)
            if found_function is None:
                continue
            declared, function, name = found_function
            code = declared.text.decode("utf-8", "replace")
            lines = code.count("\n") + 1
            parameters = _parameters(function)
            task = _doc(declared)
            if parameters is None or not 3 <= lines <= 40 or name in seen or name in ("main", "new"):
                continue
            if len(task) < 25 or "TODO" in task:
                continue
            seen.add(name)
            found.append({"name": name, "parameters": parameters, "code": code, "task": task, "file": path})
    return found


def _renamed(code: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", new, code, count=1)


def _header(code: str) -> str:
    """The declaration up to and including the body's opening brace."""
    return code[: code.index("{") + 1] if "{" in code else code.splitlines()[0]


def _answer(code: str, label: str, rng: random.Random, closed: bool = True) -> str:
    if rng.random() < 0.4:
        return code  # bare code, as many answers come
    lead = rng.choice(["Here is the implementation:", "Sure! Here it is:", "This function does it:"])
    tail = "\n```\n\nIt follows the description above." if closed else ""
    return f"{lead}\n\n```{label}\n{code}{tail}"


def _defect(kind: str, item: dict, same: list[dict], others: list[dict], rng: random.Random) -> str:
    language, label = item["language"], LANGUAGES[item["language"]][2]
    if kind == "misaligned":
        peers = [o for o in same if len(o["parameters"]) == len(item["parameters"]) and o is not item] or same
        other = rng.choice(peers)
        return _answer(_renamed(other["code"], other["name"], item["name"]), label, rng)
    if kind == "truncated":
        code = item["code"]
        start = code.index("\n") + 1 if "\n" in code else len(code) // 2
        return _answer(code[: rng.randint(start + 1, max(start + 2, len(code) - 3))], label, rng, closed=False)
    if kind == "chatter":
        if rng.random() < 0.5:
            return rng.choice(CHATTER_A)
        return rng.choice(CHATTER_B).format(name=item["name"], task_short=item["task"])
    if kind == "echo":
        return f"You are asking: {item['ask']}"
    if kind == "stub":
        return _answer(f"{_header(item['code'])}\n{STUBS[language]}\n}}", label, rng)
    other = rng.choice(others)
    return _answer(_renamed(other["code"], other["name"], item["name"]), LANGUAGES[other["language"]][2], rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirrors", type=Path, help="folder of TheAlgorithms+<Language>/repo bare clones")
    parser.add_argument("--out", type=Path, default=OUT / "languages.jsonl")
    args = parser.parse_args()
    rng = random.Random(20261207)
    pools = {}
    for language, (repository, *_) in LANGUAGES.items():
        root = args.mirrors / f"TheAlgorithms+{repository}" / "repo"
        head = _git(root, "rev-parse", "HEAD")
        pool = functions(language, root)
        rng.shuffle(pool)
        pools[language] = [{**item, "language": language} for item in pool[:PER_LANGUAGE]]
        print(f"{language}: {len(pool)} documented functions at TheAlgorithms/{repository}@{head.strip()}")
    records = []
    for language, pool in pools.items():
        others = [item for other, items in pools.items() if other != language for item in items]
        defects = round(DEFECT_SHARE * len(pool))
        kinds = [KINDS[i % len(KINDS)] for i in range(defects)] + ["none"] * (len(pool) - defects)
        rng.shuffle(kinds)
        named = LANGUAGES[language][3]
        for index, (item, kind) in enumerate(zip(pool, kinds, strict=True)):
            sig = f"{item['name']}({', '.join(item['parameters'])})"
            task = item["task"][0].lower() + item["task"][1:]
            ask = rng.choice(ASKS).format(L=named, sig=sig, task=task, Task=item["task"])
            item = {**item, "ask": ask}
            label = LANGUAGES[language][2]
            response = _answer(item["code"], label, rng) if kind == "none" else _defect(kind, item, pool, others, rng)
            records.append(
                {
                    "id": f"{language}-{index:03d}",
                    "instruction": ask,
                    "response": response,
                    "defect": kind,
                    "language": language,
                    "source": item["file"],
                }  # fmt: skip
            )
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    counts = {kind: sum(r["defect"] == kind for r in records) for kind in ("none", *KINDS)}
    print(f"{args.out}: {len(records)} records; {counts}")


if __name__ == "__main__":
    main()
