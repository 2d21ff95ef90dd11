"""The last stage of `qaq bench scale` on a lake it kept: land one more shard of 10,000 samples
(ingest, score with precomputed log-probs), then re-curate (publish a version), timed as the bench
times it (wall clock and, since cpu-2026-12-07c, this process's CPU seconds: this machine's
speed varies by tens of percent from one run to the next, its CPU time less), with this
process's peak RSS and the bytes the new version added per sample.
`.venv/bin/python docs/measurements/cpu-2026-12-07/recurate-one-shard.py LAKE SEED` from the
repository's root (SEED: a shard number the lake does not hold yet)."""

import resource
import sys
import tempfile
import time
from pathlib import Path

from qaq_assets.benchmarks.scale import IDENTITY_KEY, _ingest, _score, _version_bytes, write_shard
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import publish
from qaq_assets.lib.store.lake import Lake


def main() -> None:
    root, seed = sys.argv[1], int(sys.argv[2])
    lake = Lake(root)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"part-{seed:05d}.jsonl"
        write_shard(path, 10_000, seed)
        started = time.perf_counter()
        landed = _ingest(lake, [(path.stem, path)])
        _score((root, path.stem))
        print(f"land one shard: {landed:,} samples in {time.perf_counter() - started:.1f}s (ingest + score)")
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    version, curation = publish(lake, [IDENTITY_KEY], SelectionConfig(), f"recurate-{seed}")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024
    print(
        f"re-curate: {curation.frame.height:,} rows, version {version}, {seconds:.1f}s "
        f"({usage.ru_utime + usage.ru_stime - cpu_before:.1f} CPU-s), peak RSS {peak:.0f} MiB, "
        f"{_version_bytes(lake, version) / curation.frame.height:.1f} bytes/sample"
    )


if __name__ == "__main__":  # the feature workers are spawned: they import this file
    main()
