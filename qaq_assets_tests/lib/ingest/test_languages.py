"""The language an instruction asks for: the literal prefilter never changes the patterns' answer."""

import glob
import json
import random

from qaq_assets.lib.ingest import languages


def requested_by_patterns_alone(instruction: str) -> str | None:
    """``languages.requested`` without its prefilter: every pattern searched."""
    return languages.choose(
        instruction,
        {language for language, pattern in languages._REQUEST_PATTERNS.items() if pattern.search(instruction)},
    )


FRAGMENTS = [
    *(literal for _, literal in languages._REQUEST_LITERALS),
    "Node.js", "NodeJS", "node js", "C", "c", "R", "r", "in", "Go", "go", "ts", "JS", "+", "#", ".", " ",
    "\n", "\t", "-", "_", "script", "sharp", "net", "K", "\u212a", "\u0130", "\u017f", "é", "1", "99", "11",
]  # fmt: skip


def test_the_prefilter_agrees_with_the_patterns_on_every_corpus_and_on_fuzzed_text():
    instructions = []
    for path in sorted(glob.glob("data/**/*.jsonl", recursive=True)):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the sample data plants broken lines
                    continue
                text = record.get("instruction") or record.get("prompt") or ""
                instructions.append(text if isinstance(text, str) else json.dumps(text))
    assert len(instructions) > 1000
    rng = random.Random(0)
    for _ in range(20_000):
        words = rng.choices(FRAGMENTS, k=rng.randint(1, 8))
        text = "".join(w.upper() if rng.random() < 0.3 else w for w in words)
        instructions.append(text)
    named = 0
    for text in instructions:
        expected = requested_by_patterns_alone(text)
        assert languages.requested(text) == expected, text
        named += expected is not None
    assert named > 1000  # the fuzz names languages, so agreement is not agreement on None


def test_unicode_case_folding_still_names_the_language():
    # U+212A KELVIN SIGN matches k case-insensitively: no ASCII literal occurs, the pattern still matches.
    assert languages.requested("Write it in \u212aotlin") == "kotlin"
    assert languages.requested("Write it in Kotlin") == "kotlin"


PHRASINGS = {
    "go": [
        "Write a Go method `Area` on `Rect` that returns its area.",
        "In Golang, implement a function that reverses a slice.",
        "Implement `Add` in main.go.",
        "Write a Go struct `Point` with a method `Dist`.",
        "Write a Go function that calls a JavaScript service over HTTP and decodes its JSON.",
        "Create a Go program that prints the Python version installed.",
    ],
    "rust": ["Write a Rust `impl` block for `Stack`.", "Add a Rust trait `Shape` to lib.rs, like the Java one."],
    "typescript": [
        "Define a TypeScript type `User` with a name and an age.",
        "Port this JavaScript code to TypeScript.",
    ],
    "kotlin": ["Write a Kotlin extension function `String.isPalindrome()`."],
    "python": [
        "Write a Python function that generates JavaScript source code for a JSON schema.",
        "Using Python, parse a Rust Cargo.toml file.",
    ],
    "javascript": ["Write a JavaScript function that validates a Java class name."],
    "sql": ["Write a SQL query that returns each Python package's latest version from the table `releases`."],
}


def test_languages_are_recognised_as_users_name_them_and_not_from_the_tasks_subject():
    for language, instructions in PHRASINGS.items():
        for instruction in instructions:
            assert languages.requested(instruction) == language, instruction
    # Several languages named, none asked for in particular: no request.
    assert languages.requested("Compare Golang and Rust error handling.") is None
    assert languages.requested("Convert this Python function to Rust, keeping its Python docstring.") == "rust"


STUBS = [
    ("rust", "fn add(a: i32, b: i32) -> i32 {\n    todo!()\n}", "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"),
    ("rust", 'fn add(a: i32, b: i32) -> i32 {\n    unimplemented!("later")\n}', "fn add(a: i32) -> i32 { a }"),
    ("go", 'func Add(a, b int) int {\n\tpanic("not implemented")\n}', "func Add(a, b int) int {\n\treturn a + b\n}"),
    (
        "java",
        "public class A {\n  public int add(int a, int b) {\n    throw new UnsupportedOperationException();\n  }\n}",
        "public class A {\n  public int add(int a, int b) {\n    return a + b;\n  }\n}",
    ),
    ("javascript", "function add(a, b) {\n  // TODO\n}", "function add(a, b) {\n  return a + b;\n}"),
    ("javascript", "function add(a, b) {\n  throw new Error('Not implemented');\n}", "const add = (a, b) => a + b;"),
    (
        "csharp",
        "public class A {\n  public int Add(int a, int b) {\n    throw new NotImplementedException();\n  }\n}",
        "public class A {\n  public int Add(int a, int b) {\n    return a + b;\n  }\n}",
    ),
    (
        "typescript",
        'function add(a: number, b: number): number {\n  throw new Error("not implemented");\n}',
        "function add(a: number, b: number): number {\n  return a + b;\n}",
    ),
    ("kotlin", "fun add(a: Int, b: Int): Int {\n    TODO()\n}", "fun add(a: Int, b: Int): Int {\n    return a + b\n}"),
]


def test_a_stub_is_a_stub_in_every_language_and_written_code_is_not():
    from qaq_assets.lib.ingest.codecheck import check_code

    for language, stub, written in STUBS:
        instruction = f"Write a {language} function `add`."
        assert check_code(instruction, f"```{language}\n{stub}\n```").status == "stub", (language, stub)
        assert check_code(instruction, f"```{language}\n{written}\n```").status == "valid", (language, written)


def test_a_file_name_names_its_language_and_attribute_access_does_not():
    for instruction, language in [
        ("Write main.rs that prints hello.", "rust"),
        ("Fix utils.py so it parses dates.", "python"),
        ("Write Program.cs with a Main method.", "csharp"),
        ("Write deploy.sh that copies the build.", "bash"),
        ("Write app.rb that greets the user.", "ruby"),
        ("Write Main.kt with an entry point.", "kotlin"),
        ("Port parser.py to Rust.", "rust"),  # the translation's target, as before
    ]:
        assert languages.requested(instruction) == language, instruction
    for instruction in ("resolve a.b.c.d on the object", "it takes (s, language=Language.C)", "call os.rs.close()"):
        assert languages.requested(instruction) is None, instruction
