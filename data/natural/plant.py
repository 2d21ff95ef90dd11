"""Planted defects (second to the natural labels) over answers in several languages that pass
their tests, for per-language figures: is each language's clean code kept as often, and dropped
as incomplete as rarely?

    .venv/bin/python data/natural/plant.py data/eval/natural.jsonl --seed 0

From every passing answer (label ``none``) one planted copy may be made, by a seeded draw:
``misaligned`` (another task's passing answer, in the same language, renamed to the asked-for
function), ``truncated`` (its function cut after half its statements, still parsing: see
``truncate.py``), ``chatter`` (a friendly answer with no code), ``echo`` (the request restated)
or ``wrong_language`` (the same task's passing answer in the other language). Writes
``data/eval/natural_planted.jsonl``: the passing answers and their planted copies.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from truncate import cut_javascript, cut_python

from qaq_assets.lib.ingest.execution.run_tests import answer_code

CHATTER = [
    "Great question! There are several ways to approach this, and the best one depends on your use case. "
    "Let me know if you want me to go into more detail about any of them.",
    "Sure! This is a common task. You can solve it with a loop or with a built-in function; both work well "
    "for small inputs, and you should pick whichever reads better in your codebase.",
]


def echo(instruction: str) -> str:
    return f"You want {instruction[0].lower()}{instruction[1:].rstrip('.')}. That is what this function does."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labelled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/eval/natural_planted.jsonl")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    records = [json.loads(line) for line in Path(args.labelled).read_text(encoding="utf-8").splitlines()]
    passing = [record for record in records if record["defect"] == "none"]
    by_language: dict[str, list[dict]] = {}
    for record in passing:
        by_language.setdefault(record["language"], []).append(record)
    out = []
    for record in passing:
        out.append({**record, "procedure": None})
        kind = rng.choice(["misaligned", "truncated", "chatter", "echo", "wrong_language", None])
        language, function = record["language"], record["id"].split("-")[1]
        name = function if language == "python" else re.sub(r"_(\w)", lambda m: m.group(1).upper(), function)
        response = None
        if kind == "misaligned":
            others = [other for other in by_language[language] if other["task"] != record["task"]]
            other = rng.choice(others)
            other_name = (
                other["task"] if language == "python" else re.sub(r"_(\w)", lambda m: m.group(1).upper(), other["task"])
            )
            response = re.sub(rf"\b{re.escape(other_name)}\b", name, other["response"])
        elif kind == "truncated":
            code = answer_code(record["response"], language)
            cut = (cut_python if language == "python" else cut_javascript)(code)
            if cut and cut != code and code in record["response"]:
                response = record["response"].replace(code, cut, 1)
        elif kind == "chatter":
            response = rng.choice(CHATTER)
        elif kind == "echo":
            response = echo(record["instruction"])
        elif kind == "wrong_language":
            other_language = [r for lang, rs in by_language.items() if lang != language for r in rs]
            same_task = [r for r in other_language if r["task"] == record["task"]]
            if same_task:
                response = rng.choice(same_task)["response"]
        if response is not None:
            out.append(
                {**record, "id": f"{record['id']}-{kind}", "response": response, "defect": kind,
                 "pass_fraction": None, "procedure": kind}
            )  # fmt: skip
    with open(args.out, "w", encoding="utf-8") as handle:
        for record in out:
            handle.write(json.dumps(record) + "\n")
    planted = [record["defect"] for record in out if record["defect"] != "none"]
    print(f"{len(passing)} passing answers, {len(planted)} planted copies: "
          + ", ".join(f"{kind} {planted.count(kind)}" for kind in sorted(set(planted))))  # fmt: skip


if __name__ == "__main__":
    main()
