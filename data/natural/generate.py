"""Step 1 of the natural-defect corpus: answers sampled from the models the project loads.

    .venv/bin/python data/natural/generate.py --model smollm2-135m --samples 4 --out data/natural/generated.jsonl

For each task of ``tasks.py`` and each language (Python, JavaScript), the instruction is written
the way users write code requests, and the model answers it through its chat template, sampled at
``--temperature`` (seeded: ``--seed``). Nobody edits the answers: their defects are the model's
own. ``label.py`` then runs each answer against the task's tests in the sandbox.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typed import camel, java_signature, rust_signature, typed_task  # noqa: E402

from qaq_assets.lib.scoring.engine.models import load_model  # noqa: E402

# How users phrase a request; one is drawn per (task, language, sample) from the seed.
PHRASINGS = [
    "Write a {language} function `{call}` that {description}.",
    "In {language}, implement `{call}`: it {description}.",
    "Create a {language} function named `{name}` with parameters ({params}). It {description}.",
    "I need a {language} function `{call}` which {description}. Please write it.",
]


# Typed languages: the request states the signature, as users asking for Rust or Java do.
TYPED_PHRASINGS = [
    "Write a {language} function `{signature}` that {description}.",
    "In {language}, implement `{signature}`{where}: it {description}.",
    "I need `{signature}` in {language}{where}, which {description}. Please write it.",
]


def request(task: tuple, language: str, rng: random.Random) -> tuple[str, str] | None:
    """The instruction for one task in one language and the function's name there (None: the
    task cannot be posed in that language)."""
    name, params, description, _ = task
    shown = {"python": "Python", "javascript": "JavaScript", "rust": "Rust", "java": "Java"}[language]
    if language in ("rust", "java"):
        typed = typed_task(task)
        if typed is None:
            return None
        signature = rust_signature(task, typed) if language == "rust" else java_signature(task, typed)
        where = " in a class `Solution`" if language == "java" else ""
        phrasing = rng.choice(TYPED_PHRASINGS).replace("{where}", where)
        name = camel(name) if language == "java" else name
        return phrasing.format(language=shown, signature=signature, description=description), name
    if language == "javascript":
        name = camel(name)
        params = ", ".join(camel(p.strip()) for p in params.split(","))
    phrasing = rng.choice(PHRASINGS)
    return phrasing.format(
        language=shown, call=f"{name}({params})", name=name, params=params, description=description
    ), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=4, help="answers per task and language")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--languages", default="python,javascript")
    parser.add_argument("--limit", type=int, default=0, help="first N tasks only (0: all)")
    parser.add_argument("--out", default="data/natural/generated.jsonl")
    parser.add_argument(
        "--tasks", default="tasks", help="the task set: tasks (the first) or tasks_heldout (written after the rules)"
    )
    args = parser.parse_args()
    task_set = importlib.import_module(args.tasks).TASKS  # a module beside this file

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    loaded = load_model(args.model, device="cpu", dtype="auto")
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.padding_side = "left"
    chosen = task_set[: args.limit] if args.limit else task_set
    jobs = []
    for language in args.languages.split(","):
        for task in chosen:
            for sample in range(args.samples):
                posed = request(task, language, rng)
                if posed is None:
                    break
                instruction, name = posed
                jobs.append(
                    {
                        "task": task[0],
                        "language": language,
                        "function": name,
                        "sample": sample,
                        "instruction": instruction,
                    }
                )
    started = time.time()
    with open(args.out, "w", encoding="utf-8") as out:
        for start in range(0, len(jobs), args.batch):
            batch = jobs[start : start + args.batch]
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": job["instruction"]}], tokenize=False, add_generation_prompt=True
                )
                for job in batch
            ]
            encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                generated = model.generate(
                    **encoded,
                    do_sample=True,
                    temperature=args.temperature,
                    top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            for job, tokens in zip(batch, generated[:, encoded["input_ids"].shape[1] :], strict=True):
                response = tokenizer.decode(tokens, skip_special_tokens=True).strip()
                out.write(
                    json.dumps(
                        {
                            **job,
                            "response": response,
                            "model": args.model,
                            "temperature": args.temperature,
                            "seed": args.seed,
                        }
                    )
                    + "\n"
                )
            out.flush()
            done = start + len(batch)
            print(f"{done}/{len(jobs)} answers, {time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
