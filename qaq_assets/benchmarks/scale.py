"""``qaq bench scale``: the whole curation path at 10^5-10^7 samples, a model's cost left out.

It builds a synthetic corpus of N samples in K shards (code instructions of realistic length,
2% exact and 2% near duplicates), ingests it as ``qaq curate`` does (batches of shards of at
most ``MAX_BATCH_BYTES`` of files, one commit per table per batch, the features computed by
worker processes over record batches), scores it with precomputed log-probs
(:mod:`qaq_assets.benchmarks.pipeline`), curates, then lands
one more shard of N/K samples and re-curates. It prints per-stage seconds and samples/s, the
peak RSS of each stage's processes, the lake bytes the second curated version added, and last:
``ingest_samples_per_s=<a> recurate_seconds=<b> peak_rss_mb=<c> curated_version_bytes_per_sample=<d>``.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa

from qaq_assets.lib.batches import MAX_BATCH_BYTES, MAX_BATCH_SHARDS, batches
from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.ingest.feature_pool import resolved_workers, shutdown_pool
from qaq_assets.lib.ingest.shard_ingest import ingest_shards
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import publish
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET

IDENTITY_KEY = "bench"  # the precomputed backend's model key
EXACT_DUPLICATES = 0.02
NEAR_DUPLICATES = 0.02
_WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=random.Random(-i).randint(3, 9)))
    for i in range(6000)
]


def _record(rng: random.Random, index: int) -> dict:
    words = lambda n: " ".join(rng.choices(_WORDS, k=n))  # noqa: E731
    name, args = f"{rng.choice(_WORDS)}_{index}", ", ".join(rng.sample(_WORDS, rng.randint(1, 4)))
    body = "\n".join(
        f"    {rng.choice(_WORDS)} = {rng.choice(_WORDS)}({rng.choice(_WORDS)}, {rng.randint(0, 99)})"
        for _ in range(rng.randint(6, 14))
    )
    return {
        "instruction": f"Write a Python function `{name}({args})` that {words(rng.randint(20, 40))}.",
        # The result reads the first parameter, as a real body does (the signature check drops
        # bodies that never do).
        "response": f"```python\ndef {name}({args}):\n{body}\n"
        f"    return {rng.choice(_WORDS)}({args.split(', ')[0]})\n```\n\n"
        f"{words(rng.randint(25, 50)).capitalize()}.",
    }


def write_shard(path: Path, samples: int, seed: int) -> None:
    """One JSONL shard; a few records repeat an earlier one exactly or with one word changed."""
    rng = random.Random(seed)
    records: list[dict] = []
    for index in range(samples):
        draw = rng.random()
        if records and draw < EXACT_DUPLICATES:
            record = dict(rng.choice(records))
        elif records and draw < EXACT_DUPLICATES + NEAR_DUPLICATES:
            record = dict(rng.choice(records))
            words = record["response"].split(" ")
            words[rng.randrange(len(words))] = rng.choice(_WORDS)
            record["response"] = " ".join(words)
        else:
            record = _record(rng, seed * 10_000_000 + index)
        records.append(record)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _ingest(lake: Lake, files: list[tuple[str, Path]]) -> int:
    """Ingest ``files`` the way the runner's ingest runs do: batches of shards by their files'
    bytes, in this process."""
    sizes = {shard: path.stat().st_size for shard, path in files}
    plan = batches(list(sizes), list(sizes), sizes, MAX_BATCH_SHARDS, MAX_BATCH_BYTES)
    paths, ingested = dict(files), 0
    for batch in plan:
        result = ingest_shards(lake, [(shard, paths[shard]) for shard in batch])
        if result.failures:
            raise next(iter(result.failures.values()))
        ingested += sum(read.samples.height for read in result.reads.values())
    return ingested


def _score(job: tuple[str, str]) -> tuple[int, float]:
    """Precompute a shard's log-probs (untimed), then time the lake side of scoring it."""
    from qaq_assets.benchmarks.precomputed import IDENTITY, PrecomputedBackend
    from qaq_assets.lib.scoring.shard_scoring import score_partition, shard_samples, write_qaq_scores

    root, shard = job
    lake = Lake(root)
    samples = shard_samples(lake, shard)
    backend = PrecomputedBackend.for_pairs(samples["instruction"], samples["response"])
    started = time.perf_counter()
    score_partition(lake, shard, backend, commit_every=1024)
    write_qaq_scores(lake, shard, IDENTITY.model_key)
    return samples.height, time.perf_counter() - started


def _version_bytes(lake: Lake, version: int) -> int:
    """Bytes of the data files a curated_subset version added (its log entry aside)."""

    def files(at: int) -> dict[str, int]:
        actions = pa.table(lake.delta_table(CURATED_SUBSET, at).get_add_actions(flatten=True))
        return dict(zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(), strict=True))

    before = files(version - 1)
    return sum(size for path, size in files(version).items() if path not in before)


class Stages:
    def __init__(self, log):
        self.log, self.figures = log, {}

    def report(self, name: str, samples: int, seconds: float, note: str = "") -> None:
        self.figures[name] = seconds
        self.log(f"{name:<22} {seconds:8.1f}s  {samples / seconds if seconds else 0:10,.0f} samples/s  {note}")


def run(samples: int, shards: int, workdir: Path, workers: int = 2, log=print) -> dict[str, float]:
    per_shard = samples // shards
    paths = [workdir / f"part-{i:05d}.jsonl" for i in range(shards + 1)]
    started = time.perf_counter()
    for seed, path in enumerate(paths):
        write_shard(path, per_shard, seed)
    log(f"corpus: {shards} shards of {per_shard:,} samples (+1 to land later), {time.perf_counter() - started:.0f}s")
    root = str(workdir / "lake")
    lake = Lake(root)
    lake.ensure_all()
    stages = Stages(log)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        # Start the scoring workers while this process is small: a spawned child's peak RSS counts
        # its parent's pages at the fork before its exec.
        list(pool.map(int, range(workers)))
        names = [path.stem for path in paths]
        files = list(zip(names, paths, strict=True))
        started = time.perf_counter()
        ingested = _ingest(lake, files[:-1])
        ingest_seconds = time.perf_counter() - started
        stages.report(
            "ingest",
            ingested,
            ingest_seconds,
            f"batches of shards, features on {resolved_workers(0, ingested)} worker processes; read, hash, "
            "code check, MinHash, decontamination",
        )
        started = time.perf_counter()
        scored = sum(rows for rows, _ in pool.map(_score, [(root, n) for n in names[:-1]]))
        stages.report("score (lake side)", scored, time.perf_counter() - started, "precomputed log-probs")
        config = SelectionConfig()
        started = time.perf_counter()
        first, _ = publish(lake, [IDENTITY_KEY], config, "bench-1")
        stages.report("curate", ingested, time.perf_counter() - started, f"version {first}")

        started = time.perf_counter()
        landed_rows = _ingest(lake, files[-1:])
        pool.submit(_score, (root, names[-1])).result()
        stages.report("land one shard", landed_rows, time.perf_counter() - started, "ingest + score")
        started = time.perf_counter()
        second, curation = publish(lake, [IDENTITY_KEY], config, "bench-2")
        recurate_seconds = time.perf_counter() - started
        stages.report("re-curate", curation.frame.height, recurate_seconds, f"version {second}")
    shutdown_pool()
    children_peak = _peak_rss_mb(resource.RUSAGE_CHILDREN)  # counted once the workers have ended
    rows = lake.scan(CURATED_SUBSET, second).select(pl.len()).collect().item()
    version_bytes = _version_bytes(lake, second)
    near = curation.frame.filter(pl.col("reason_code") == "near_duplicate").height
    exact = curation.frame.filter(pl.col("reason_code") == "exact_duplicate").height
    peak = max(_peak_rss_mb(), children_peak)
    log(f"dropped: {exact:,} exact and {near:,} near duplicates of {rows:,} rows")
    log(
        f"second curated version: {version_bytes:,} bytes for {rows:,} rows; peak RSS: curation process "
        f"{_peak_rss_mb():.0f} MiB, ingest/scoring workers {children_peak:.0f} MiB"
    )
    return {
        "ingest_samples_per_s": ingested / ingest_seconds,
        "recurate_seconds": recurate_seconds,
        "peak_rss_mb": peak,
        "curated_version_bytes_per_sample": version_bytes / rows,
    }


def main(samples: int, shards: int, workers: int, workdir: str | None = None, keep: bool = False) -> dict[str, float]:
    if keep:
        if workdir is None:
            raise QaqError("--keep needs --workdir: where the corpus and lake stay")
        Path(workdir).mkdir(parents=True, exist_ok=True)
        figures = run(samples, shards, Path(workdir), workers)
    else:
        with tempfile.TemporaryDirectory(dir=workdir) as directory:
            figures = run(samples, shards, Path(directory), workers)
    print(
        f"ingest_samples_per_s={figures['ingest_samples_per_s']:.0f} "
        f"recurate_seconds={figures['recurate_seconds']:.1f} peak_rss_mb={figures['peak_rss_mb']:.0f} "
        f"curated_version_bytes_per_sample={figures['curated_version_bytes_per_sample']:.1f}"
    )
    return figures
