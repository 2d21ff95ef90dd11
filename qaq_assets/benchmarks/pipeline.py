"""``qaq bench pipeline``: the lake side of scoring, with log-probs precomputed in place of a model.

A GPU scores a 0.5B model's samples at hundreds per second; the lake side (score-cache commits,
the shard's ``token_logprobs`` rows, ``qaq_scores`` from the cached lists) must never be what holds it back.
This bench measures exactly that side: it ingests one shard of short synthetic records, computes
every sample's per-token log-probs before the clock starts (seeded by the sample's text, with a
token per 4 bytes), then times the real path the scoring assets run (:func:`score_partition`,
:func:`write_qaq_scores`) with a backend that only looks those log-probs up.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from qaq_assets.benchmarks.precomputed import IDENTITY, PrecomputedBackend
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.shard_scoring import chunk_samples, score_partition, write_qaq_scores
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import RAW_SAMPLES


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
