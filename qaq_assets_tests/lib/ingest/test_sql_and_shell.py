"""SQL and shell are checked like the other languages: bare queries and command lines read as
code, SQL is parsed (sqlglot, several dialects), and a query cut where a parser would still take
it is not kept as whole."""

import json
from pathlib import Path

import pytest

from qaq_assets.lib.ingest.codecheck import UNUSABLE, check_code
from qaq_assets.lib.ingest.sql_syntax import sql_parses

SPIDER = Path(__file__).resolve().parents[3] / "data" / "eval" / "spider_sql.jsonl"
ASK_SQL = "Write a SQL query that returns each customer's total order amount."
ASK_SHELL = "Write a bash command that counts the lines of every .py file under the current directory."


def test_every_correct_spider_answer_is_valid_sql_fenced_bare_or_after_a_sentence():
    records = [json.loads(line) for line in SPIDER.read_text().splitlines()]
    clean = [r for r in records if r["language"] == "sql" and r["defect"] == "none"]
    assert len(clean) > 200
    styles = {"fenced": 0, "bare": 0, "prose": 0}
    for record in clean:
        response = record["response"]
        styles["fenced" if response.startswith("```") else "prose" if "```" in response else "bare"] += 1
        checked = check_code(record["instruction"], response)
        assert (checked.status, checked.language) == ("valid", "sql"), response
        # Text-to-SQL data often names no language ("Using these tables, write a query"): no request.
        assert checked.requested in ("sql", None)
    assert min(styles.values()) > 30


@pytest.mark.parametrize(
    "query",
    [
        "SELECT TOP 5 name FROM users ORDER BY created_at DESC;",  # T-SQL
        "CREATE OR REPLACE FUNCTION add(a integer, b integer) RETURNS integer AS $$\n"
        "BEGIN\n  RETURN a + b;\nEND;\n$$ LANGUAGE plpgsql;",  # PostgreSQL
        "SELECT * FROM t LIMIT 5, 10;",  # MySQL
        "INSERT INTO t (id, n) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n;",
        "WITH totals AS (SELECT customer_id, SUM(amount) AS s FROM orders GROUP BY customer_id)\n"
        "SELECT * FROM totals WHERE s > 100;",
        "SELECT name, RANK() OVER (PARTITION BY dept ORDER BY salary DESC) AS r FROM employees;",
        "-- per customer\nSELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id; -- done",
        "\\c shop\nSELECT 1;",  # a psql command before the query
    ],
)
def test_sql_of_each_dialect_parses(query):
    assert sql_parses(query) is True


@pytest.mark.parametrize(
    "cut",
    [
        "SELECT customer_id, SUM(amount) AS total\nFROM orders\nGROUP BY",  # the parser takes it
        "SELECT a FROM t ORDER BY",
        "SELECT a FROM t JOIN u ON",
        "SELECT a FROM t WHERE a = 1 AND",
        "SELECT",
        "INSERT INTO t (a, b) VALUES (1,",
        "SELECT * FROM t WHERE name = 'abc",
        "SELECT id, CASE WHEN score >= 90 THEN 'A' WHEN score >= 80 THEN",
    ],
)
def test_a_cut_query_is_a_syntax_error(cut):
    assert sql_parses(cut) is False
    assert check_code(ASK_SQL, f"```sql\n{cut}\n```").status == "syntax_error"
    assert check_code(ASK_SQL, cut).status in UNUSABLE  # bare: a syntax error, or no code at all


def test_statements_the_parser_does_not_support_get_no_verdict():
    procedure = "DELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\nEND //\nDELIMITER ;"
    assert sql_parses(procedure) in (True, None)  # never a syntax error
    assert check_code(ASK_SQL, f"```sql\n{procedure}\n```").status in ("valid", "unchecked")


def test_a_bare_multi_line_query_is_code_and_prose_about_selecting_is_not():
    bare = "SELECT customer_id, SUM(amount) AS total\nFROM orders\nGROUP BY customer_id\nHAVING COUNT(*) > 5;"
    assert check_code(ASK_SQL, bare).status == "valid"
    update = "UPDATE employees SET salary = salary * 1.1\nWHERE dept = 'sales';"
    assert check_code(ASK_SQL, update).status == "valid"
    for prose in (
        "Select the option in the menu. From there, pick one.",
        "Select all rows from the orders table.\nGroup them by customer.",
    ):
        assert check_code(ASK_SQL, prose).status == "no_code", prose


def test_a_shell_command_line_is_code_and_prose_naming_a_command_is_not():
    for line in ('find . -name "*.py" -print0 | xargs -0 wc -l', 'grep -rn "TODO" src/ | wc -l'):
        checked = check_code(ASK_SHELL, line)
        assert (checked.status, checked.language) == ("valid", "bash"), line
    assert check_code(ASK_SHELL, "find the files first, then count their lines.").status == "no_code"
    unclosed = 'for f in $(find . -name "*.py"); do\n  wc -l "$f"\n'
    assert check_code(ASK_SHELL, unclosed).status == "syntax_error"
