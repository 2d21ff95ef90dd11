"""Dagster with N shard partitions (a landing directory of N files): adding them as the landing
sensor does (requests of 2,000), listing them, one automation tick over the graph, and the
SQLite instance's size. `.venv/bin/python docs/measurements/cpu-2026-12-07/dagster-partitions.py N`
from the repository's root. The tick is the first one (nothing materialized yet): what it costs
to walk the partitions, not to launch their runs."""

import os
import sys
import tempfile
import time
from pathlib import Path

home = Path(tempfile.mkdtemp()) / "home"
os.environ["DAGSTER_HOME"] = str(home)

import dagster as dg  # noqa: E402

from qaq_assets.definitions import build_definitions  # noqa: E402
from qaq_assets.defs.partitions import SHARDS  # noqa: E402
from qaq_assets.lib.settings import Settings  # noqa: E402
from qaq_assets.runner.instance import open_instance  # noqa: E402

instance = open_instance(str(home))
n = int(sys.argv[1])
keys = [f"landing__batch-{i // 1000:03d}__part-{i:06d}" for i in range(n)]
started = time.perf_counter()
for start in range(0, n, 2000):
    instance.add_dynamic_partitions(SHARDS, keys[start : start + 2000])
print(f"add {n:,} partitions in requests of 2,000: {time.perf_counter() - started:.1f}s")
started = time.perf_counter()
listed = instance.get_dynamic_partitions(SHARDS)
print(f"list them: {time.perf_counter() - started:.2f}s ({len(listed):,})")
size = sum(path.stat().st_size for path in home.rglob("*") if path.is_file())
print(f"instance storage: {size / 2**20:.1f} MiB ({size / n:.0f} bytes per partition)")
defs = build_definitions(Settings(models=["tiny=random:tiny-llama"], lake=str(home.parent / "lake")))
started = time.perf_counter()
result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
seconds = time.perf_counter() - started
print(f"one automation tick over {n:,} shards: {seconds:.1f}s ({result.total_requested} requested)")
