"""``qaq bench files``: the orchestration cost of many files, from ``qaq curate`` to a curated
version, with a tiny random model (so it measures everything but a real model's forward passes).

It writes N files of R records each (code instructions of realistic length), curates the folder
as ``qaq curate`` does (batched runs on an ephemeral instance), then lands 10 more files and
curates the folder again (the incremental path: only the new files are read and scored), and
curates the same records from one file for comparison. The many files' runs go to a
SQLite-backed instance, whose partitions, runs and storage are reported. Last line:
``files_per_s=<a> per_file_overhead_ms=<b> incremental_seconds=<c> peak_rss_mb=<d>
lake_to_input=<e> lake_files=<f>``, where the per-file overhead is (many files − one file) / N and
the lake's size is set against the input's (partitions per shard: small files cost their
Parquet footers and Delta log entries), whole and without the per-token log-prob tables.
"""

from __future__ import annotations

import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from qaq_assets.benchmarks.scale import _record
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.tables import SCORE_CACHE, TOKEN_LOGPROBS

# Tables of one float per token per direction: their size follows the tokens, not the files.
TOKEN_TABLES = (TOKEN_LOGPROBS, SCORE_CACHE)

MODEL = "tiny=random:tiny-llama"
NEW_FILES = 10


def _write(directory: Path, files: int, records: int, first: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + files):
        rng = random.Random(index)
        lines = [json.dumps(_record(rng, index * records + r)) for r in range(records)]
        (directory / f"part-{index:06d}.jsonl").write_text("\n".join(lines) + "\n")


def _curate(
    paths: list[str],
    lake: Path,
    instance=None,
    model: str | None = None,
    keep: bool = ScoringConfig.keep_token_logprobs,
):
    from qaq_assets.runner.curate import curate_files

    if model is None:
        settings = Settings(
            lake=str(lake), models=[MODEL], template="plain", device="cpu", dtype="float32", keep_token_logprobs=keep
        )
    else:
        settings = Settings(lake=str(lake), models=[model], keep_token_logprobs=keep)
    started = time.perf_counter()
    summary = curate_files(paths, settings, instance=instance, log=lambda _line: None, warn=print)
    return time.perf_counter() - started, summary


def _persistent_instance(home: Path):
    """A SQLite-backed instance under ``home``, as ``qaq curate`` uses with DAGSTER_HOME set: its
    run and event storage is measured, as a deployment's would grow."""
    from qaq_assets.runner.instance import open_instance

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        return open_instance(str(home))
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous


def _instance_figures(instance, home: Path, files: int) -> str:
    """Dagster's partitions, runs and storage after curating ``files`` files, per file."""
    from qaq_assets.defs.partitions import SHARDS

    partitions = len(instance.get_dynamic_partitions(SHARDS))
    runs = instance.get_runs_count()
    storage = _size(home)[0]
    return (
        f"{partitions:,} shard partitions (shard x model: as many per model), {runs:,} runs, "
        f"instance storage {storage / 2**20:,.1f} MiB ({storage / max(files, 1) / 1024:,.1f} KiB per file)"
    )


def main(
    files: int,
    records: int,
    workdir: str | None = None,
    model: str | None = None,
    keep_token_logprobs: bool = ScoringConfig.keep_token_logprobs,
) -> None:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as root:
        root = Path(root)
        corpus = root / "many"
        _write(corpus, files, records)
        print(
            f"bench files: {files:,} files of {records:,} record(s), model "
            + (f"{MODEL} (orchestration, not a model)" if model is None else model)
            + (", every token's log-prob kept" if keep_token_logprobs else ", each span's log-prob sum kept")
        )
        home = root / "dagster_home"
        instance = _persistent_instance(home)
        seconds, summary = _curate([str(corpus)], root / "lake-many", instance, model, keep_token_logprobs)
        print(
            f"many files: {seconds:.1f}s ({summary.samples_in:,} records read, {summary.samples_scored:,} scored, "
            f"{summary.kept:,} kept, {len(summary.failed)} failed)"
        )
        _write(corpus, NEW_FILES, records, first=files)
        again, incremental = _curate([str(corpus)], root / "lake-many", instance, model, keep_token_logprobs)
        print("Dagster after both:", _instance_figures(instance, home, files + NEW_FILES))
        print(
            f"+{NEW_FILES} files: {again:.1f}s ({incremental.samples_in:,} records read, "
            f"{incremental.samples_scored:,} scored)"
        )
        single = root / "one.jsonl"
        with open(single, "w") as out:
            for path in sorted(corpus.glob("*.jsonl"))[:files]:
                out.write(path.read_text())
        one, _ = _curate([str(single)], root / "lake-one", model=model, keep=keep_token_logprobs)
        print(f"the same records in one file: {one:.1f}s")
        input_bytes = sum(path.stat().st_size for path in corpus.glob("*.jsonl"))
        lake_bytes, lake_files = _size(root / "lake-many")
        token_bytes = sum(_size(root / "lake-many" / table.name)[0] for table in TOKEN_TABLES)
        print(
            f"lake of the many files: {lake_bytes / 2**20:,.1f} MiB in {lake_files:,} files "
            f"({lake_bytes / max(input_bytes, 1):.1f}x the input's {input_bytes / 2**20:,.1f} MiB), of which the "
            f"per-token log-probs ({', '.join(t.name for t in TOKEN_TABLES)}) {token_bytes / 2**20:,.1f} MiB; "
            f"the rest {(lake_bytes - token_bytes) / max(input_bytes, 1):.1f}x the input; "
            f"the lake of the one file: {_size(root / 'lake-one')[0] / 2**20:,.1f} MiB"
        )
        print("per table (data files; log files):", _breakdown(root / "lake-many"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"files_per_s={files / seconds:.1f} per_file_overhead_ms={1000 * (seconds - one) / files:.1f} "
            f"incremental_seconds={again:.1f} peak_rss_mb={peak:.0f} "
            f"lake_to_input={lake_bytes / max(input_bytes, 1):.1f} lake_files={lake_files}"
        )


def _size(directory: Path) -> tuple[int, int]:
    """Bytes and files under ``directory`` (a lake: data files and logs)."""
    files = [path for path in directory.rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files), len(files)


def _breakdown(lake: Path) -> str:
    """Each table's data and log: KiB in how many files."""
    parts = []
    for table in sorted(path for path in lake.iterdir() if path.is_dir()):
        log_bytes, log_files = _size(table / "_delta_log")
        all_bytes, all_files = _size(table)
        data = f"{(all_bytes - log_bytes) / 1024:,.0f} KiB in {all_files - log_files:,}"
        parts.append(f"{table.name} {data}; {log_bytes / 1024:,.0f} KiB in {log_files:,}")
    return ", ".join(parts)
