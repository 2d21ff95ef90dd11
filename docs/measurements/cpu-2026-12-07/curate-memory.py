"""Curation alone on a lake `qaq bench scale` built (its run(..., workdir) keeps it): seconds, peak
RSS and a hash of every decision row, so two releases' decisions can be compared.
`.venv/bin/python docs/measurements/cpu-2026-12-07/curate-memory.py LAKE` from the repository's root."""

import resource
import sys
import time

from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import curate
from qaq_assets.lib.store.lake import Lake

started = time.perf_counter()
frame = curate(Lake(sys.argv[1]), ["bench"], SelectionConfig(), "x").frame
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{time.perf_counter() - started:.1f}s peak {peak:.0f} MiB hash", frame.drop("curation_id").hash_rows().sum())
