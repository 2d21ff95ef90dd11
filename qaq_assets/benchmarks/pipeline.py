"""``qaq bench pipeline``: the lake side of scoring, with log-probs precomputed in place of a model.

A GPU scores a 0.5B model's samples at hundreds per second; the lake side (score-cache commits,
the streamed ``token_logprobs`` partition, ``qaq_scores``) must never be what holds it back.
This bench measures exactly that side: it ingests one shard of short synthetic records, computes
every sample's per-token log-probs before the clock starts (seeded by the sample's text, with a
token per 4 bytes), then times the real path the scoring assets run (:func:`score_partition`,
:func:`write_qaq_scores`) with a backend that only looks those log-probs up.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends import Chunk, ScoredChunk, ScorerIdentity
from qaq_assets.lib.scoring.engine.scorer import PairLogprobs, PairTokens
from qaq_assets.lib.scoring.shard_scoring import chunk_samples, score_partition, write_qaq_scores
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import RAW_SAMPLES

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


def synthetic_records(samples: int) -> Iterator[dict]:
    """Short code-instruction records (the shape of the synthetic sets users curate)."""
    for i in range(samples):
        yield {
            "instruction": f"Write a function f{i}(x) that returns x plus {i}, and explain it briefly.",
            "response": f"def f{i}(x):\n    # adds {i}\n    return x + {i}\n\nThe function adds {i} to its input.",
        }


def run(samples: int, commit_every: int, workdir: Path, log: Callable[[str], None] = print) -> dict[str, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    shard_file = workdir / "bench.jsonl"
    with open(shard_file, "w", encoding="utf-8") as handle:
        for record in synthetic_records(samples):
            handle.write(json.dumps(record) + "\n")
    lake = Lake(workdir / "lake")
    lake.ensure_all()
    started = time.perf_counter()
    read = read_shard(shard_file, "bench")
    lake.replace_partition(RAW_SAMPLES, read.samples, {"shard": "bench"})
    ingest_seconds = time.perf_counter() - started
    backend = PrecomputedBackend.for_pairs(read.samples["instruction"], read.samples["response"])
    log(f"{samples:,} samples; ingest {ingest_seconds:.1f}s; log-probs precomputed (not timed)")

    commit_every = commit_every or chunk_samples(backend)
    started = time.perf_counter()
    result, _ = score_partition(lake, "bench", backend, commit_every=commit_every)
    logprob_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores, _ = write_qaq_scores(lake, "bench", IDENTITY.model_key)
    scores_seconds = time.perf_counter() - started
    if scores.height != samples or result.samples_scored != samples:
        raise AssertionError(f"wrote {scores.height} scores for {samples} samples")
    seconds = logprob_seconds + scores_seconds
    log(
        f"score cache + token_logprobs: {logprob_seconds:.2f}s ({samples / logprob_seconds:,.0f} samples/s, "
        f"commits of {commit_every}); qaq_scores: {scores_seconds:.2f}s"
    )
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def main(samples: int, commit_every: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        figures = run(samples, commit_every, Path(workdir))
    print(f"pipeline_samples_per_s={figures['samples_per_s']:.1f}")
