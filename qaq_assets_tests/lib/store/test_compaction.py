"""Small files merged on a schedule: fewer files, the same rows, every older version readable."""

import polars as pl

from qaq_assets.defs.automation.maintenance import compaction_job
from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.store.compaction import compact_lake
from qaq_assets.lib.store.tables import RAW_SAMPLES
from qaq_assets_tests.helpers import qaq


def land_one_at_a_time(lake, shards: int, first: int = 0) -> None:
    """As a landing directory fills: a run, and so a commit and a file, per shard."""
    for i in range(first, first + shards):
        shard = f"s{i:03d}"
        ids = [f"{shard}-{r}" for r in range(3)]
        rows = pl.DataFrame({"shard": [shard] * 3, "row_index": [0, 1, 2], "sample_id": ids})
        rows = RAW_SAMPLES.conform(rows, optional=tuple(c for c in RAW_SAMPLES.schema if c not in rows.columns))
        lake.replace_partition(RAW_SAMPLES, rows, {"shard": shard})


def test_compaction_merges_small_files_and_keeps_every_version_readable(lake):
    land_one_at_a_time(lake, 20)
    before, version = lake.scan(RAW_SAMPLES).sort("sample_id").collect(), lake.version(RAW_SAMPLES)
    assert len(lake.delta_table(RAW_SAMPLES).file_uris()) == 20

    [compacted] = compact_lake(lake, min_small_files=16)
    assert (compacted.table, compacted.files_removed, compacted.files_added) == ("raw_samples", 20, 1)
    assert len(lake.delta_table(RAW_SAMPLES).file_uris()) == 1
    assert lake.scan(RAW_SAMPLES).sort("sample_id").collect().equals(before)
    assert lake.scan(RAW_SAMPLES, version).sort("sample_id").collect().equals(before)  # time travel intact
    assert lake.scan(RAW_SAMPLES, 1).collect().height == 3
    assert compact_lake(lake, min_small_files=16) == []  # nothing left to merge


def test_the_nightly_job_compacts_and_the_command_says_what_it_did(lake):
    land_one_at_a_time(lake, 16)
    result = compaction_job.execute_in_process(resources={"lake": LakeResource(root=lake.root)})
    assert result.success and len(lake.delta_table(RAW_SAMPLES).file_uris()) == 1
    assert qaq("compact", "--lake", lake.root).stdout.strip() == "nothing to compact"
    land_one_at_a_time(lake, 15, first=16)  # 16 small files again: the merged one and 15 new
    shown = qaq("compact", "--lake", lake.root)
    assert shown.returncode == 0 and shown.stdout.strip() == "raw_samples: 16 small files merged into 1"
