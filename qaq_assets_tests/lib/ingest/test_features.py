"""Near-duplicate signatures: the fast shingling is the identity normalisation's, word for word."""

import hashlib
import random

from qaq_assets.lib.ingest import features
from qaq_assets.lib.ingest.record_fields import normalise_text

PIECES = ["def", "f(x):", "Return", "x", "  ", "\n", "\r\n", "\r", "\t", "\x1c", "\x1f", "\x85", "\xa0", "\u2028",
          "e\u0301", "\u00e9", "\u212b", "K", "\u0130stanbul", "ß", "ﬁ", "日本語", "", "   \n  "]  # fmt: skip


def shingles_by_definition(text: str) -> set[str]:
    words = normalise_text(text).lower().split()
    n = features.SHINGLE_WORDS
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def test_shingles_equal_those_of_the_normalised_text_on_awkward_unicode_and_whitespace():
    rng = random.Random(0)
    texts = ["", " ", "one", "a b c d e f g"]
    texts += [" ".join(rng.choices(PIECES, k=rng.randint(1, 30))) for _ in range(3000)]
    texts += ["".join(rng.choices(PIECES, k=rng.randint(1, 30))) for _ in range(3000)]
    for text in texts:
        assert features.shingles(text) == shingles_by_definition(text), repr(text)


def test_shingle_digests_are_the_sha1_of_each_shingle_on_awkward_unicode_and_whitespace():
    rng = random.Random(1)
    texts = ["", " ", "one", "a b c d", "a b c d e", "a b c d e f g", "Write a function that adds two numbers"]
    texts += [" ".join(rng.choices(PIECES, k=rng.randint(1, 30))) for _ in range(2000)]
    texts += ["".join(rng.choices(PIECES, k=rng.randint(1, 30))) for _ in range(2000)]
    for text in texts:
        expected = {hashlib.sha1(s.encode()).digest() for s in shingles_by_definition(text)}
        hashed = features._shingle_digests(text)
        assert {hashed[i : i + 20] for i in range(0, len(hashed), 20)} == expected, repr(text)
