"""Time the phases of one publish on a kept bench lake, with the peak RSS after each:
`.venv/bin/python docs/measurements/cpu-2026-12-07b/curate-phases.py LAKE [--partial]` from the
repository's root."""

import functools
import resource
import sys
import time

import qaq_assets.lib.selection.curation as c
from qaq_assets.benchmarks.scale import IDENTITY_KEY
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.store.lake import Lake

log = []


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(owner, name, label=None):
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            log.append((label or name, time.perf_counter() - t, peak()))

    setattr(owner, name, wrapper)


for name in [
    "_split_exact_duplicates",
    "_with_features",
    "_split_near_duplicates",
    "_model_scores",
    "_unscored",
    "_model_identities",
    "select",
    "_skip_lost_versions",
    "prepare",
    "curate",
    "near_duplicate_twins",
]:
    timed(c, name)
timed(c._Features, "__init__", "features init")
orig_sig = c._Features.signatures_of


def sig(self, ordered):
    read = orig_sig(self, ordered)

    def r(p):
        t = time.perf_counter()
        out = read(p)
        log.append((f"signatures read ({len(p)})", time.perf_counter() - t, peak()))
        return out

    return r


c._Features.signatures_of = sig
for name in ["overwrite", "append", "upsert"]:
    timed(Lake, name)
lake = Lake(sys.argv[1])
t = time.perf_counter()
version, cur = c.publish(
    lake, [IDENTITY_KEY], SelectionConfig(allow_partial="--partial" in sys.argv), f"prof-{time.time()}"
)
print(f"publish v{version} {time.perf_counter() - t:.1f}s peak {peak():.0f} MiB")
for k, v, p in log:
    print(f"  {k:32} {v:8.2f}s  peak so far {p:7.0f} MiB")
