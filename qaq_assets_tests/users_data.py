"""Data shaped like what users bring: correct answers in many languages, conversations of one to
six turns, written in every input format the project reads (ShareGPT, OpenAI messages, Alpaca's
JSON array, a JSON object holding records, CSV, TSV, Parquet with a messages column, a Hugging
Face ``save_to_disk`` folder, gzipped JSON Lines)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# (language as the instruction names it, canonical name, fence label, correct answer code)
PROGRAMS = [
    ("Python", "python", "python", "def add(a, b):\n    return a + b"),
    ("JavaScript", "javascript", "javascript", "function add(a, b) {\n  return a + b;\n}"),
    ("TypeScript", "typescript", "ts", "function add(a: number, b: number): number {\n  return a + b;\n}"),
    (
        "Java",
        "java",
        "java",
        "public class Adder {\n    public static int add(int a, int b) {\n        return a + b;\n    }\n}",
    ),
    ("C", "c", "c", "#include <stdio.h>\n\nint add(int a, int b) {\n    return a + b;\n}"),
    ("C++", "cpp", "cpp", "#include <iostream>\n\nint add(int a, int b) {\n    return a + b;\n}"),
    ("C#", "csharp", "csharp", "public static class Adder\n{\n    public static int Add(int a, int b) => a + b;\n}"),
    ("Go", "go", "go", "package main\n\nfunc Add(a int, b int) int {\n\treturn a + b\n}"),
    ("Rust", "rust", "rust", "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"),
    ("SQL", "sql", "sql", "SELECT a + b AS total FROM numbers;"),
    ("Bash", "bash", "bash", "add() {\n  echo $(( $1 + $2 ))\n}\nadd 2 3"),
    ("PHP", "php", "php", "<?php\nfunction add($a, $b) {\n    return $a + $b;\n}"),
    ("Ruby", "ruby", "ruby", "def add(a, b)\n  a + b\nend"),
    ("Kotlin", "kotlin", "kotlin", "fun add(a: Int, b: Int): Int {\n    return a + b\n}"),
    ("Swift", "swift", "swift", "func add(_ a: Int, _ b: Int) -> Int {\n    return a + b\n}"),
]
LANGUAGES = {canonical for _, canonical, _, _ in PROGRAMS}


def _answer(label: str, code: str, fenced: bool) -> str:
    return f"Here is the solution:\n\n```{label}\n{code}\n```\n\nIt returns the sum." if fenced else code


def pairs() -> list[dict]:
    """One correct pair per language and task, half of them fenced, half bare; ``language`` is
    the answer's language (for the tests, not read by ingest: it lands in extra_fields)."""
    records = []
    for index, (named, canonical, label, code) in enumerate(PROGRAMS):
        for task in ("add two numbers", "return the sum of two integers"):
            records.append(
                {
                    "id": f"{canonical}-{task[:3]}",
                    "instruction": f"Write a {named} function to {task}.",
                    "output": _answer(label, code, fenced=(index + len(task)) % 2 == 0),
                    "language": canonical,
                }
            )
    return records


def conversations() -> list[dict]:
    """ShareGPT conversations of 1 to 6 exchanges, some with a system turn; the last answer is
    code in the language the first question names."""
    records = []
    for index, (named, canonical, label, code) in enumerate(PROGRAMS):
        exchanges = 1 + index % 6
        turns = [{"from": "system", "value": "You are a careful programmer."}] if index % 3 == 0 else []
        for exchange in range(exchanges - 1):
            turns += [
                {"from": "human", "value": f"Question {exchange + 1} about {named}: what is a function?"},
                {"from": "gpt", "value": f"A function in {named} is a named block of code you can call."},
            ]
        turns += [
            {"from": "human", "value": f"Now write a {named} function that adds two numbers."},
            {"from": "gpt", "value": _answer(label, code, fenced=True)},
        ]
        records.append({"id": f"conv-{canonical}", "conversations": turns, "language": canonical})
    return records


def _messages(record: dict) -> dict:
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    turns = [{"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]]
    return {"id": record["id"], "messages": turns, "language": record["language"]}


def write_all(root: Path) -> dict[str, int]:
    """Every format under ``root`` (some in sub-folders); returns each file's record count by
    its path relative to ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    flat, convs = pairs(), conversations()
    half = len(flat) // 2
    written: dict[str, int] = {}

    def put(name: str, count: int) -> None:
        written[name] = count

    path = root / "sharegpt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in convs))
    put("sharegpt.jsonl", len(convs))
    path = root / "openai_messages.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("".join(json.dumps(_messages(r)) + "\n" for r in convs))
    put("openai_messages.jsonl.gz", len(convs))
    (root / "alpaca_data.json").write_text(json.dumps(flat[:half], indent=2))  # as Alpaca ships it
    put("alpaca_data.json", half)
    (root / "object.json").write_text(json.dumps({"version": 1, "data": flat[half:]}, indent=2))
    put("object.json", len(flat) - half)
    csv_rows = [{"prompt": r["instruction"], "completion": r["output"], "language": r["language"]} for r in flat]
    table = pa.Table.from_pylist(csv_rows)
    import pyarrow.csv as pacsv

    (root / "tables").mkdir()
    pacsv.write_csv(table, root / "tables" / "prompts.csv")
    put("tables/prompts.csv", len(csv_rows))
    tsv_rows = [{"question": r["instruction"], "answer": r["output"]} for r in flat[:6]]
    pacsv.write_csv(pa.Table.from_pylist(tsv_rows), root / "tables" / "qa.tsv", pacsv.WriteOptions(delimiter="\t"))
    put("tables/qa.tsv", 6)
    pq.write_table(pa.Table.from_pylist([_messages(r) for r in convs[:8]]), root / "messages.parquet")
    put("messages.parquet", 8)
    hf = root / "hf_dataset"
    hf.mkdir()
    hf_table = pa.Table.from_pylist([{"prompt": r["instruction"], "response": r["output"]} for r in flat[:10]])
    with pa.OSFile(str(hf / "data-00000-of-00001.arrow"), "wb") as sink:  # save_to_disk's stream format
        with pa.ipc.new_stream(sink, hf_table.schema) as writer:
            writer.write_table(hf_table)
    (hf / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (hf / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    put("hf_dataset/data-00000-of-00001.arrow", 10)
    return written
