"""Build data/eval/spider_sql.jsonl: SQL answers nobody on this project wrote, beside Python ones,
to measure whether the curation keeps correct SQL as often as correct Python.

The SQL is Spider's (Yu et al. 2018; github.com/taoyds/spider, Apache-2.0): 1,034 questions over
166 databases, each with a query written and checked by people. Each record asks the question
over the tables its query reads (their CREATE TABLE statements, as text-to-SQL instruction data
gives them), and answers with the gold query (on one line as Spider writes it, or laid out a clause
per line by sqlglot's printer), fenced, bare or after one sentence. Defects are
planted in 35% of the SQL records:
- truncated: the query cut after a word (what is left may still parse);
- misaligned: the gold query of another question over the same database (it parses, reads the
  same tables, and answers something else);
- chatter: a sentence about the question, no query;
- wrong_language: the question answered with a Python function that runs the query.
The Python half is the ``pypi`` corpus's clean records (documented functions of installed
packages), so both languages meet one model, one band and one budget.

Run: ``python data/build_sql_corpus.py SPIDER_CHECKOUT`` (a clone of taoyds/spider; deterministic).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import sqlglot

OUT = Path(__file__).parent / "eval" / "spider_sql.jsonl"
PYTHON_SOURCE = Path(__file__).parent / "eval" / "pypi.jsonl"
SQL_RECORDS, PYTHON_RECORDS = 400, 300
DEFECT_SHARE = 0.35
KINDS = ("truncated", "misaligned", "chatter", "wrong_language")
ASKS = [
    "Write a SQL query to answer this question: {question}",
    "Given the tables below, write an SQL query: {question}",
    "SQL: {question}",
    "Using these tables, write a query that answers: {question}",
]
PROSE = [
    "This query answers the question directly.",
    "Here is a query that returns what was asked.",
    "The following SQL does it.",
]
CHATTER = [
    "To answer this you would look at the {table} table and pick out the rows that matter, then "
    "combine them as the question asks.",
    "You can get this from the {table} table; filter it by the condition in the question and return "
    "the columns asked for.",
]
_QUESTION = re.compile(r"Question \d+:\s+(.*?) \|\|\| (\w+)\nSQL:\s+(.*?)\n")


def _schema(database: dict, query: str) -> str:
    """CREATE TABLE statements of the tables ``query`` reads (all of them if it names none)."""
    words = set(re.findall(r"\w+", query.lower()))
    tables = [i for i, name in enumerate(database["table_names_original"]) if name.lower() in words]
    statements = []
    for index in tables or range(len(database["table_names_original"])):
        columns = [
            f"  {name} {'INTEGER' if kind == 'number' else 'TEXT'}"
            for (table, name), kind in zip(database["column_names_original"], database["column_types"], strict=True)
            if table == index
        ]
        statements.append(f"CREATE TABLE {database['table_names_original'][index]} (\n" + ",\n".join(columns) + "\n);")
    return "\n".join(statements)


def _answer(query: str, rng: random.Random) -> str:
    if rng.random() < 0.4:  # laid out a clause per line, as models write longer queries
        query = sqlglot.transpile(query, read="sqlite", pretty=True)[0]
    style = rng.random()
    if style < 0.5:
        return f"```sql\n{query};\n```"
    if style < 0.8:
        return f"{query};"
    return f"{rng.choice(PROSE)}\n\n```sql\n{query};\n```"


def _defect(kind: str, item: dict, other: dict, rng: random.Random) -> str:
    if kind == "truncated":
        words = item["query"].split()
        return "```sql\n" + " ".join(words[: rng.randrange(2, max(len(words), 3))]) + "\n```"
    if kind == "misaligned":
        return _answer(other["query"], rng)
    if kind == "chatter":
        table = re.search(r"\bfrom\s+(\w+)", item["query"], re.IGNORECASE)
        return rng.choice(CHATTER).format(table=table.group(1) if table else "main")
    return (
        "```python\nimport sqlite3\n\n\ndef answer(connection: sqlite3.Connection):\n"
        f'    return connection.execute("""{item["query"]}""").fetchall()\n```'
    )


def main(spider: Path) -> None:
    rng = random.Random(20261207)
    databases = {d["db_id"]: d for d in json.loads((spider / "evaluation_examples/examples/tables.json").read_text())}
    text = (spider / "evaluation_examples/dev.sql").read_text()
    items, seen = [], set()
    for question, database, query in _QUESTION.findall(text):
        if query.lower() in seen:
            continue  # Spider asks each query twice, in two wordings: one record per query
        seen.add(query.lower())
        question = question.replace(" ?", "?").replace(" .", ".").replace(" ,", ",")
        items.append({"question": question, "database": database, "query": query.strip()})
    rng.shuffle(items)
    items = items[:SQL_RECORDS]
    by_database: dict[str, list[dict]] = {}
    for item in items:
        by_database.setdefault(item["database"], []).append(item)
    records = []
    for index, item in enumerate(items):
        ask = rng.choice(ASKS).format(question=item["question"])
        instruction = f"{ask}\n\n{_schema(databases[item['database']], item['query'])}"
        defect = rng.choice(KINDS) if rng.random() < DEFECT_SHARE else "none"
        others = [o for o in by_database[item["database"]] if o["query"] != item["query"]] or items
        if defect == "none":
            response = _answer(item["query"], rng)
        else:
            response = _defect(defect, item, rng.choice(others), rng)
        records.append(
            {
                "id": f"sql-{index:04d}",
                "instruction": instruction,
                "response": response,
                "defect": defect,
                "language": "sql",
            }
        )
    python = [json.loads(line) for line in PYTHON_SOURCE.read_text().splitlines()]
    python = [r for r in python if r["defect"] == "none"]
    rng.shuffle(python)
    for record in python[:PYTHON_RECORDS]:
        records.append(
            {
                "id": f"py-{record['id']}",
                "instruction": record["instruction"],
                "response": record["response"],
                "defect": "none",
                "language": "python",
            }
        )
    rng.shuffle(records)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in records))
    counts = {kind: sum(r["defect"] == kind for r in records) for kind in ("none", *KINDS)}
    print(f"{OUT}: {len(records)} records, {counts}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
