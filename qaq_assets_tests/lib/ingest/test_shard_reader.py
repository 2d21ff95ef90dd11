"""The shard reader: formats, aliases, duplicates, and every bad row quarantined with a reason."""

import gzip
import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qaq_assets.lib.ingest.file_formats import ShardReadError
from qaq_assets.lib.ingest.record_fields import normalise_text, sample_id_for
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets_tests.helpers import write_jsonl


def test_aliases_and_chat_messages(tmp_path):
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"id": 7, "instruction": "Q1", "response": "A1", "defect": "echo", "source": "x"},
            {"prompt": "Q2", "output": "A2"},
            {"instruction": "Sort", "input": "[3, 1]", "output": "[1, 3]"},
            {"input": "Q4 alone", "completion": "A4"},
            {
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "Q5"},
                    {"role": "assistant", "content": "A5"},
                    {"role": "user", "content": "later"},
                ]
            },
        ],
    )
    read = read_shard(path, "s")
    rows = read.samples.to_dicts()
    assert [(r["instruction"], r["response"]) for r in rows] == [
        ("Q1", "A1"),
        ("Q2", "A2"),
        ("Sort\n\n[3, 1]", "[1, 3]"),
        ("Q4 alone", "A4"),
        ("Q5", "A5"),
    ]
    assert rows[0]["id"] == "7" and rows[0]["label"] == "echo"
    assert json.loads(rows[0]["extra_fields"]) == {"source": "x"}
    assert rows[1]["id"] is None and rows[1]["row_index"] == 2
    assert read.quarantine.height == 0 and read.rows_read == 5


def test_sample_id_is_stable_under_whitespace_and_newline_style():
    assert sample_id_for("def f():\r\n  pass  ", "x") == sample_id_for("def f():\n  pass", "x")
    assert sample_id_for("a", "b") != sample_id_for("b", "a")
    assert normalise_text("  x \r\n y  ") == "x\n y"


def test_exact_duplicates_are_marked_not_dropped(tmp_path):
    pair = {"instruction": "Q", "response": "A"}
    read = read_shard(write_jsonl(tmp_path / "d.jsonl", [pair, {"instruction": "Q2", "response": "A2"}, pair]), "d")
    assert read.samples["is_duplicate"].to_list() == [False, False, True]
    assert read.samples["duplicate_of"].to_list() == [None, None, "d:1"]


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"instruction": "Q", "response": "A"}).encode()
    lines = [
        good,
        b"{not json",
        json.dumps([1, 2]).encode(),
        json.dumps({"response": "A"}).encode(),
        json.dumps({"instruction": "Q"}).encode(),
        json.dumps({"instruction": "  ", "response": "A"}).encode(),
        json.dumps({"instruction": "Q", "response": ""}).encode(),
        json.dumps({"instruction": 5, "response": "A"}).encode(),
        json.dumps({"instruction": "Q\u0000", "response": "A"}).encode(),
        b'{"instruction": "caf\xe9", "response": "A"}',
        json.dumps({"instruction": "big", "response": "x" * 5_000_000}).encode(),
        json.dumps({"id": "k", "instruction": "Q3", "response": "A3"}).encode(),
        json.dumps({"id": "k", "instruction": "other", "response": "other"}).encode(),
        json.dumps({"instruction": "Q9", "response": "A9", "unknown": {"nested": 1}}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    read = read_shard(path, "bad")
    reasons = dict(zip(read.quarantine["row_index"].to_list(), read.quarantine["reason"].to_list(), strict=True))
    assert reasons == {
        2: "malformed_json",
        3: "not_an_object",
        4: "missing_instruction",
        5: "missing_response",
        6: "empty_instruction",
        7: "empty_response",
        8: "wrong_type",
        9: "nul_character",
        10: "invalid_utf8",
        11: "record_too_large",
        13: "duplicate_id",
    }
    assert read.samples["row_index"].to_list() == [1, 12, 14]
    assert read.rows_read == read.samples.height + read.quarantine.height
    assert read.quarantine.filter(pl.col("reason") == "record_too_large")["raw"].str.len_chars().item() <= 2000


def test_parquet_and_gzip_shards(tmp_path):
    frame = pl.DataFrame({"instruction": ["Q1", "Q2"], "response": ["A1", None]})
    frame.write_parquet(tmp_path / "p.parquet")
    read = read_shard(tmp_path / "p.parquet", "p")
    assert read.samples["instruction"].to_list() == ["Q1"]
    assert read.quarantine["reason"].to_list() == ["missing_response"]
    with gzip.open(tmp_path / "g.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"instruction": "Q", "response": "A"}) + "\n")
    assert read_shard(tmp_path / "g.jsonl.gz", "g").samples.height == 1


def test_empty_file_reads_as_zero_rows(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    read = read_shard(tmp_path / "e.jsonl", "e")
    assert read.rows_read == 0 and read.samples.height == 0


@pytest.mark.parametrize(
    "name, content",
    [
        ("bin.jsonl", bytes(range(256)) * 10),
        ("fake.parquet", b"not parquet"),
        ("x.xml", b"<a/>"),
        ("y.csv", b""),  # no header row
        ("z.jsonl.gz", b"nogz"),
    ],
)
def test_unreadable_file_raises_an_error_naming_it(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ShardReadError, match=name.replace(".", r"\.")):
        read_shard(tmp_path / name, "x")


def test_a_bad_csv_row_is_quarantined_alone_and_the_others_are_read(tmp_path):
    rows = [
        b"id,instruction,response",
        b'007,Add two numbers.,"def add(a, b):\n    return a + b"',
        "008,Caf\u00e9 au lait: print it.,print('caf\u00e9')".encode("latin-1"),  # one Latin-1 row
        b"009,Too many,fields,here",
        b'010,Reverse s.,"def rev(s):',  # a quote never closed
        b"    return s[::-1]",
        b"011,Square x.,def sq(x): return x * x",
        b'012,Negate x.,"def neg(x):\n    return -x"',
    ]
    (tmp_path / "t.csv").write_bytes(b"\n".join(rows) + b"\n")
    read = read_shard(tmp_path / "t.csv", "t")
    assert read.samples["id"].to_list() == ["007", "011", "012"]
    assert read.samples["response"][0] == "def add(a, b):\n    return a + b"
    reasons = dict(zip(read.quarantine["row_index"].to_list(), read.quarantine["reason"].to_list(), strict=True))
    assert reasons == {2: "invalid_utf8", 3: "malformed_csv", 4: "malformed_csv", 5: "malformed_csv"}
    assert read.rows_read == 7


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from(["instruction", "response", "prompt", "output", "input", "id", "messages", "defect", "x"]),
    json_values,
    max_size=5,
)
lines = st.one_of(records.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=12))
def test_reader_never_crashes_and_every_row_is_accounted_for(tmp_path, raw_lines):
    path = tmp_path / "h.jsonl"
    path.write_bytes("\n".join(line.replace("\n", " ") for line in raw_lines).encode("utf-8", "surrogatepass"))
    try:
        read = read_shard(path, "h")
    except ShardReadError:
        return  # no line parsed as JSON at all: the whole file is rejected, by design
    assert read.rows_read == read.samples.height + read.quarantine.height
    assert read.samples["instruction"].str.strip_chars().str.len_chars().min() or read.samples.height == 0
    assert set(read.quarantine["reason"]) <= {
        "malformed_json",
        "not_an_object",
        "missing_instruction",
        "missing_response",
        "unknown_role",
        "empty_instruction",
        "empty_response",
        "wrong_type",
        "nul_character",
        "invalid_utf8",
        "record_too_large",
        "duplicate_id",
    }


def test_signature_agreement_between_the_instruction_and_the_answer():
    from qaq_assets.lib.ingest.codecheck import signature_status

    ask = "Implement `cut_size(G, S, T=None, weight=None)` in Python."
    assert signature_status(ask, "def cut_size(G, S, T=None, weight=None):\n    return G.size(S, T, weight)") == "match"
    # Another function's body renamed to the asked-for name keeps its own parameters.
    assert signature_status(ask, "def cut_size(G, nbunch, weight=None):\n    return 1") == "mismatch"
    # Another function's body under the asked name and parameters reads none of them.
    transplanted = "def cut_size(G, S, T=None, weight=None):\n    return len(nodes) + total(edges)"
    assert signature_status(ask, transplanted) == "unused"
    assert signature_status("Sum a list.", "def total(xs):\n    return sum(values)") == "unused"
    assert signature_status("Sum a list.", "def total(xs):\n    return sum(xs)") == "unknown"
    assert signature_status(ask, "Here:\n```python\ndef cut_size(G, S, T=None, weight=None):\n    pass\n```") == "match"
    assert signature_status("Reverse a list.", "def r(xs): return xs[::-1]") == "unknown"  # nothing asked
    # The answer's code never names the asked-for function, in any language: the caller's call fails.
    assert signature_status(ask, "def other(G): pass") == "missing"
    js = "Write a JavaScript function `sumList(numbers)`."
    assert signature_status(js, "```js\nfunction sum_list(numbers) {\n  return 0;\n}\n```") == "missing"
    assert signature_status(js, "```js\nconst sumList = (numbers) => numbers.length;\n```") == "match"
    assert signature_status(js, "Sure! I can help with that.") == "unknown"  # no code: code_no_code's evidence
    method = "```python\nclass Graph:\n    def cut_size(self, G, S, T=None, weight=None):\n        return 0\n```"
    assert signature_status(ask, method) != "missing"
    assert signature_status(ask, "def cut_size(G, S,") == "unknown"  # unparsable answer
    star = "Write `f(a, *rest, key=None, **options)`."
    assert signature_status(star, "def f(a, *rest, key=None, **options): pass") == "match"


@pytest.mark.parametrize(
    "ask, name, right, wrong",
    [
        (
            "Write a Rust function `fn merge_sorted(a: &[i32], b: &[i32]) -> Vec<i32>` merging two sorted slices.",
            "merge_sorted",
            "```rust\nfn merge_sorted(a: &[i32], b: &[i32]) -> Vec<i32> {\n    [a, b].concat()\n}\n```",
            "```rust\nfn merge(a: &[i32], b: &[i32]) -> Vec<i32> {\n    [a, b].concat()\n}\n```",
        ),
        (
            "Write a Go method `func (s *Stack) Push(x int)` that pushes x.",
            "Push",
            "```go\nfunc (s *Stack) Push(x int) { s.items = append(s.items, x) }\n```",
            "```go\nfunc (s *Stack) Add(x int) { s.items = append(s.items, x) }\n```",
        ),
        (
            "Implement `public static int[] mergeSorted(int[] a, int[] b)` in Java.",
            "mergeSorted",
            "```java\nclass M { static int[] mergeSorted(int[] a, int[] b) { return a; } }\n```",
            "```java\nclass M { static int[] merge(int[] a, int[] b) { return a; } }\n```",
        ),
        (
            "Write the TypeScript function `function clamp<T>(x: number, lo: number, hi: number): number`.",
            "clamp",
            "```ts\nfunction clamp(x: number, lo: number, hi: number): number { return x; }\n```",
            "```ts\nfunction limit(x: number, lo: number, hi: number): number { return x; }\n```",
        ),
    ],
)
def test_the_asked_for_name_is_checked_in_every_language(ask, name, right, wrong):
    from qaq_assets.lib.ingest.codecheck import asked_name, signature_status

    assert asked_name(ask) == name
    assert signature_status(ask, right) != "missing"
    assert signature_status(ask, wrong) == "missing"  # another item defined: the caller's call fails


def test_asked_parameters_without_a_parse_equal_the_parsers_on_fuzzed_signatures():
    """Plain names skip the parser; whatever the text, the parameters (or the SyntaxError) are
    the parser's."""
    import random

    from qaq_assets.lib.ingest import codecheck

    pieces = ["a", "b", "x1", "_", "__debug__", "match", "class", "None", "self", "ｘ", "é", ",", ", ", " ", "\t",
              "=", "=None", "*", "**", ":", "int", "1", "(", ")", "/", "\n", ""]  # fmt: skip
    rng = random.Random(0)
    for _ in range(20_000):
        arguments = "".join(rng.choices(pieces, k=rng.randint(0, 8)))
        try:
            expected = codecheck._parameters(codecheck._tree(f"def f({arguments}): pass").body[0])
        except SyntaxError:
            expected = SyntaxError
        try:
            found = codecheck._asked_parameters("f", arguments)
        except SyntaxError:
            found = SyntaxError
        assert found == expected, repr(arguments)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ("def f(x):\n    y = 1\n    return (y +\n            x)", "match"),  # read on a continuation line
        ("def f(x):\n    @wrap(x)\n    def g():\n        return 1\n    return g", "match"),  # in a decorator above
        ("def f(x):\r\n    y = 1\r\n    return x", "match"),  # \r\n line ends
        ("def f(x):\r    y = 1\r    return x", "match"),  # \r line ends
        ("def f(ｘ):\n    y = 1\n    return x", "match"),  # a name the parser normalises (NFKC)
        ("def f(x):\n    y = 'x'\n    return y", "unused"),  # spelled in a string, never read
        ("def f(x):\n    xs = 1\n    return obj.x + xs", "unused"),  # inside longer names, attributes
        ("def f(x):\n    class K:\n        v = x\n    return K", "match"),  # in a nested class body
    ],
)
def test_a_read_of_a_parameter_is_found_wherever_its_statement_spells_it(answer, status):
    """The parameter check skips statements whose text never spells a parameter: never one that
    reads it, whatever the line ends, decorators or identifier normalisation."""
    from qaq_assets.lib.ingest.codecheck import signature_status

    assert signature_status("Write `f(x)`.", answer) == status


def test_the_parameter_check_equals_walking_every_statement_on_fuzzed_bodies():
    """Searching the text for the lines that spell a parameter finds every statement that reads
    one: on bodies of shared lines, continuation lines, strings, comments, blank lines and nested
    definitions."""
    import ast
    import random

    from qaq_assets.lib.ingest import codecheck

    statements = ["y = 1", "y = x", "y = 'x'", "y = obj.x", "xs = 2", "y = 1; z = x", "z = 1; y = 2",
                  "y = (1 +\n        x)", "y = (x +\n        1)", "# x", "", "return y", "return x",
                  "if y:\n        y = x", "def g():\n        return x", "class K:\n        v = 1",
                  "@wrap(x)\n    def h():\n        return 1", "for i in range(3): y += i", "y = [x for _ in ()]",
                  "y = 1  # x", "pass"]  # fmt: skip
    rng = random.Random(0)
    checked = 0
    for _ in range(5000):
        lines = rng.choices(statements, k=rng.randint(1, 8))
        source = "def f(x, b):\n" + "".join(f"    {line}\n" for line in lines)
        try:
            function = ast.parse(source).body[0]
        except SyntaxError:
            continue
        names = {"x", "b"}
        read = any(isinstance(n, ast.Name) and n.id in names for s in function.body for n in ast.walk(s))
        stub = all(codecheck._trivial(statement) for statement in function.body)
        assert codecheck._uses_none_of_its_parameters(function, source) == (not read and not stub), source
        checked += 1
    assert checked > 4000


def test_a_spreadsheets_capitalised_headers_are_the_usual_fields(tmp_path):
    (tmp_path / "sheet.csv").write_text(
        'ID,Instruction,Response,Notes\n7,Add a and b.,"def add(a, b):\n    return a + b",ok\n'
    )
    read = read_shard(tmp_path / "sheet.csv", "sheet")
    assert read.samples["instruction"].to_list() == ["Add a and b."]
    assert read.samples["id"].to_list() == ["7"] and read.quarantine.height == 0
    assert json.loads(read.samples["extra_fields"][0]) == {"Notes": "ok"}


def test_every_declared_field_role_can_be_mapped():
    """The roles --fields and a .fields file accept are the ones a record is read by."""
    import dataclasses

    from qaq_assets.lib.ingest.config import FIELD_ROLES
    from qaq_assets.lib.ingest.record_fields import FieldMap

    assert tuple(field.name for field in dataclasses.fields(FieldMap)) == FIELD_ROLES
    mapped = FieldMap.parse([f"{role}={role}_field" for role in FIELD_ROLES])
    assert all(mapped.names(role, ()) == (f"{role}_field",) for role in FIELD_ROLES)


@pytest.mark.parametrize(
    ("ask", "answer", "status"),
    [
        # A body that reads none of its parameters, in every language tree-sitter parses.
        (
            "Write a JavaScript function `sumList(numbers)`.",
            "```js\nfunction sumList(nums) {\n  return 0;\n}\n```",
            "unused",
        ),
        (
            "Write a JavaScript function `sumList(numbers)`.",
            "```js\nfunction sumList(nums) {\n  return nums.reduce((a, b) => a + b, 0);\n}\n```",
            "match",
        ),
        (
            "Write a JavaScript function `sumList(numbers)`.",
            "```js\nconst sumList = numbers => numbers.length;\n```",
            "match",
        ),
        (
            "Write a TypeScript function `add(a, b)`.",
            "```ts\nfunction add(a: number, b: number): number {\n  return 0;\n}\n```",
            "unused",
        ),
        ("Write a Go function `Add(a, b)`.", "```go\nfunc Add(a, b int) int {\n\treturn 0\n}\n```", "unused"),
        ("Write a Go function `Add(a, b)`.", "```go\nfunc Add(a, b int) int {\n\treturn a + b\n}\n```", "match"),
        # Every name a parameter binds counts: Go's grouped `a, b int`, a destructured object.
        ("Write a Go function `Add(a, b)`.", "```go\nfunc Add(a, b int) int {\n\treturn b * 2\n}\n```", "match"),
        (
            "Write a TypeScript function `f(p, b)`.",
            "```ts\nfunction f({ x, y }: P, b: number) {\n  return y;\n}\n```",
            "match",
        ),
        # A default's value is no parameter: reading it reads none of them.
        ("Write a JavaScript function `f(a, b)`.", "```js\nfunction f(a = c, b) {\n  return c;\n}\n```", "unused"),
        (
            "Implement `Sum(xs)` in C#.",
            "```csharp\nclass S {\n  public static int Sum(int[] xs) {\n    return total;\n  }\n}\n```",
            "unused",
        ),
        (
            "Write a Rust function `merge_sorted(a, b)`.",
            "```rust\nfn merge_sorted(a: &[i32], b: &[i32]) -> Vec<i32> {\n"
            "    let mut v = a.to_vec();\n    v.extend_from_slice(b);\n    v\n}\n```",
            "match",
        ),
        (
            "Write a Kotlin function `double(x)`.",
            "```kotlin\nfun double(x: Int): Int {\n    return 2\n}\n```",
            "unused",
        ),
        ("Write a Kotlin function `greet(name)`.", '```kotlin\nfun greet(name: String) = "Hello, $name"\n```', "match"),
        # Arguments passed by position: another number of parameters cannot be called as asked.
        (
            "Write a JavaScript function `sumList(numbers)`.",
            "```js\nfunction sumList(a, b) {\n  return a + b;\n}\n```",
            "mismatch",
        ),
        (
            "Write a JavaScript function `clamp(x, lo = 0, ...rest)`.",
            "```js\nfunction clamp(x, lo = 0, ...rest) {\n  return Math.max(lo, x, ...rest);\n}\n```",
            "match",
        ),
        (
            "Implement `mergeSorted(a, b)` in Java.",
            "```java\nclass S {\n  static int[] mergeSorted(int[] a) {\n    return a;\n  }\n}\n```",
            "mismatch",
        ),
        # A receiver is no parameter entry of its own; Go groups `a, b int`: not counted there.
        (
            "Write a Rust method `area(&self)`.",
            "```rust\nimpl Rect {\n    fn area(&self) -> u32 {\n        self.w * self.h\n    }\n}\n```",
            "match",
        ),
        (
            "Write a Go function `Add(a, b, c)`.",
            "```go\nfunc Add(a, b, c int) int {\n\treturn a + b + c\n}\n```",
            "match",
        ),
    ],
)
def test_the_asked_functions_parameters_are_checked_in_every_language_tree_sitter_parses(ask, answer, status):
    from qaq_assets.lib.ingest.codecheck import signature_status

    assert signature_status(ask, answer) == status
