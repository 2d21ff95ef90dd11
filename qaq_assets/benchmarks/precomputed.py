"""A scoring backend for benchmarks of everything but the model: per-token log-probs computed
before the clock starts (seeded by the pair's text, a token per 4 bytes), looked up when asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np

from qaq_assets.lib.scoring.backends.local import Chunk, ScoredChunk, ScorerIdentity
from qaq_assets.lib.scoring.engine.scorer import PairLogprobs, PairTokens

IDENTITY = ScorerIdentity("bench", "precomputed", "0" * 64, "float32", "precomputed-v1", "plain-v2", 2048)
BYTES_PER_TOKEN = 4


def _token_count(text: str) -> int:
    return max(1, len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def precompute(query: str, answer: str) -> tuple[PairTokens, PairLogprobs]:
    """Token counts and log-probs of one pair, the same for the same texts in any run."""
    seed = int.from_bytes(hashlib.blake2b(f"{query}\x1e{answer}".encode(), digest_size=8).digest(), "big")
    rng = np.random.default_rng(seed)
    n_query, n_answer = _token_count(query), _token_count(answer)
    draw = lambda n: -rng.exponential(2.0, n).astype(np.float32)  # noqa: E731
    tokens = PairTokens(tuple(range(n_query)), tuple(range(n_answer)))
    return tokens, PairLogprobs(draw(n_query), draw(n_answer), draw(n_answer), draw(n_query))


class PrecomputedBackend:
    """A scoring backend that returns log-probs computed beforehand, keyed by (query, answer)."""

    identity = IDENTITY
    on_gpu = False

    def __init__(self, scored: dict[tuple[str, str], tuple[PairTokens, PairLogprobs]]):
        self.scored = scored

    @classmethod
    def for_pairs(cls, queries: Iterable[str], answers: Iterable[str]) -> PrecomputedBackend:
        return cls({(q, a): precompute(q, a) for q, a in zip(queries, answers, strict=True)})

    def score_chunks(self, chunks: Iterable[Chunk], on_pass=None) -> Iterator[ScoredChunk]:
        for queries, answers in chunks:
            results = [self.scored[pair] for pair in zip(queries, answers, strict=True)]
            tokens = [t for t, _ in results]
            real = 2 * sum(len(t.query_ids) + len(t.answer_ids) for t in tokens)
            if on_pass is not None:
                on_pass(2 * len(tokens), real)
            yield ScoredChunk(tokens, [lp for _, lp in results], forward_calls=1, real_tokens=real, padding_tokens=0)

    def describe_forward(self) -> str:
        return "precomputed log-probs (no model)"

    def close(self) -> None:
        pass
