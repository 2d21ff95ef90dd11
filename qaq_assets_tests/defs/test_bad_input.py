"""A dirty shard through the ingest asset: the run succeeds with a warning, bad rows land in
the quarantine table with a reason, and the counts reconcile."""

import json

import dagster as dg
import polars as pl

from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES
from qaq_assets_tests.helpers import graph, register_files


def test_dirty_shard_is_ingested_with_quarantine(lake, tmp_path):
    lines = [
        json.dumps({"id": 1, "instruction": "Q1", "response": "A1"}).encode(),
        b'{"instruction": "half a record',
        json.dumps({"id": 1, "instruction": "Q2", "response": "A2"}).encode(),  # duplicate id
        json.dumps({"id": 2, "instruction": "", "response": "A3"}).encode(),
        json.dumps({"id": 3, "instruction": ["not", "text"], "response": "A4"}).encode(),
        b"\xff\xfe not utf-8",
        json.dumps({"id": 4, "instruction": "Q5\u0000", "response": "A5"}).encode(),
        json.dumps({"id": 5, "instruction": "Q6", "response": "x" * 5_000_000}).encode(),
        json.dumps({"id": 6, "instruction": "Q7", "response": "A7", "extra": {"k": [1, 2]}}).encode(),
    ]
    path = tmp_path / "dirty.jsonl"
    path.write_bytes(b"\n".join(lines))
    register_files(lake, [path])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, ["dirty"])
    resources, (raw, *_) = graph(lake)

    result = dg.materialize([raw], partition_key="dirty", instance=instance, resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_samples")[0].metadata
    assert metadata["rows_read"].value == 9 == metadata["ingested"].value + metadata["quarantined"].value
    assert metadata["quarantined"].value == 7
    warnings = [e for e in instance.all_logs(result.run_id) if e.level == 30 and "quarantined" in e.user_message]
    assert len(warnings) == 1 and "7 of 9 rows" in warnings[0].user_message

    quarantine = lake.scan(QUARANTINE).collect().sort("row_index")
    assert quarantine["reason"].to_list() == [
        "malformed_json",
        "duplicate_id",
        "empty_instruction",
        "wrong_type",
        "invalid_utf8",
        "nul_character",
        "record_too_large",
    ]
    assert set(quarantine["shard"]) == {"dirty"} and quarantine["raw"].str.len_chars().max() <= 2000
    assert quarantine.filter(pl.col("reason") == "duplicate_id")["detail"].item() == "id '1' already used by row 1"
    kept = lake.scan(RAW_SAMPLES).collect().sort("row_index")
    assert kept["id"].to_list() == ["1", "6"]
    assert json.loads(kept["extra_fields"][1]) == {"extra": {"k": [1, 2]}}

    # Re-ingesting the same file replaces the shard's quarantine rows instead of adding to them.
    assert dg.materialize([raw], partition_key="dirty", instance=instance, resources=resources).success
    assert lake.scan(QUARANTINE).collect().height == 7
