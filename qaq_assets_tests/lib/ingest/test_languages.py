"""The language an instruction asks for: the literal prefilter never changes the patterns' answer."""

import glob
import json
import random

from qaq_assets.lib.ingest import languages


def requested_by_patterns_alone(instruction: str) -> str | None:
    """``languages.requested`` without its prefilter: every pattern searched."""
    return languages.one_language(
        {language for language, pattern in languages._REQUEST_PATTERNS.items() if pattern.search(instruction)}
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
