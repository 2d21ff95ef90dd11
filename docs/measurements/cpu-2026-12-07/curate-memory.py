"""Curation alone on a lake `qaq bench scale` built (its run(..., workdir) keeps it): seconds, peak
RSS and a hash of every decision row, so two releases' decisions can be compared.
`.venv/bin/python docs/measurements/cpu-2026-12-07/curate-memory.py LAKE [--allow-partial] [--publish]`
from the repository's root (--allow-partial: curate the scored shards of a lake whose scoring was
stopped; --publish: also write the curated version, as a re-curation does)."""

import resource
import sys
import time

from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import curate, publish
from qaq_assets.lib.store.lake import Lake

started = time.perf_counter()
config = SelectionConfig(allow_partial="--allow-partial" in sys.argv[2:])
if "--publish" in sys.argv[2:]:
    version, curation = publish(Lake(sys.argv[1]), ["bench"], config, "x")
    frame = curation.frame
    print(f"version {version}")
else:
    frame = curate(Lake(sys.argv[1]), ["bench"], config, "x").frame
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
seconds = time.perf_counter() - started
print(f"{frame.height:,} rows {seconds:.1f}s peak {peak:.0f} MiB hash", frame.drop("curation_id").hash_rows().sum())
