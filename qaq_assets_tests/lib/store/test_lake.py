"""The Delta store: partition replacement, versions of one's own commits, schema evolution."""

from pathlib import Path

import polars as pl
import pytest

from qaq_assets.lib.store.lake import partition_predicate
from qaq_assets.lib.store.tables import TableSpec

SPEC = TableSpec("things", pl.Schema({"shard": pl.String, "value": pl.Int64, "note": pl.String}), ("shard",))


def frame(shard, values):
    return pl.DataFrame({"shard": [shard] * len(values), "value": values, "note": [f"n{v}" for v in values]})


def test_replace_partition_touches_only_that_partition(lake):
    lake.replace_partition(SPEC, frame("a", [1, 2]), {"shard": "a"})
    lake.replace_partition(SPEC, frame("b", [3]), {"shard": "b"})
    version = lake.replace_partition(SPEC, frame("a", [9]), {"shard": "a"})
    assert lake.scan(SPEC).sort("value").collect()["value"].to_list() == [3, 9]
    assert version == lake.version(SPEC) and lake.scan(SPEC, version=version - 1).collect().height == 3
    with pytest.raises(ValueError, match="outside partition"):
        lake.replace_partition(SPEC, frame("b", [1]), {"shard": "a"})


def test_predicates_quote_values():
    assert partition_predicate({"shard": "it's", "model_key": "m"}) == "shard = 'it''s' AND model_key = 'm'"


def test_tables_written_by_an_older_release_take_new_columns(lake):
    old = TableSpec("things", pl.Schema({"shard": pl.String, "value": pl.Int64}), ("shard",))
    lake.replace_partition(
        old, pl.DataFrame({"shard": ["a", "b"], "value": [1, 2]}).filter(pl.col("shard") == "a"), {"shard": "a"}
    )
    lake.append(old, pl.DataFrame({"shard": ["b"], "value": [2]}))
    assert lake.missing_columns(SPEC) == ["note"]  # what the asset checks report
    lake.replace_partition(SPEC, frame("a", [5]), {"shard": "a"})
    lake.append(SPEC, frame("c", [7]))
    rows = lake.scan(SPEC).sort("value").collect()
    assert rows["note"].to_list() == [None, "n5", "n7"]

    whole = TableSpec("whole", pl.Schema({"value": pl.Int64}))
    lake.overwrite(whole, pl.DataFrame({"value": [1]}))
    newer = TableSpec("whole", pl.Schema({"value": pl.Int64, "extra": pl.String}))
    version = lake.overwrite(newer, pl.DataFrame({"value": [2], "extra": ["x"]}))
    assert lake.scan(newer).collect().to_dicts() == [{"value": 2, "extra": "x"}]
    assert lake.scan(whole, version=version - 1).collect().to_dicts() == [{"value": 1}]


FLAT = TableSpec("flat", SPEC.schema)


def test_a_flat_table_holds_a_batch_of_shards_in_one_file_and_replaces_one_shard_alone(lake):
    batch = pl.concat([frame(f"s{i:03d}", [i]) for i in range(200)])
    lake.replace_partition(FLAT, batch, {"shard": batch["shard"].unique().to_list()})
    assert len(lake.delta_table(FLAT).file_uris()) == 1  # not one per shard
    version = lake.replace_partition(FLAT, frame("s007", [70, 71]), {"shard": "s007"})
    rows = lake.scan(FLAT, version).collect()
    assert rows.height == 201 and sorted(rows.filter(pl.col("shard") == "s007")["value"]) == [70, 71]
    assert rows.filter(pl.col("shard") == "s008")["value"].to_list() == [8]
    assert lake.replace_partition(FLAT, FLAT.empty(), {"shard": ["s001", "s002"]}) == version + 1
    assert lake.scan(FLAT).collect().height == 199
    with pytest.raises(ValueError, match="outside partition"):
        lake.replace_partition(FLAT, frame("s009", [1]), {"shard": "s010"})


def test_a_table_keeps_the_layout_it_was_created_with(lake):
    """A table an older release partitioned by shard is written the same way by this one."""
    lake.replace_partition(SPEC, frame("a", [1]), {"shard": "a"})
    now_flat = TableSpec(SPEC.name, SPEC.schema)
    assert lake.partition_columns(now_flat) == ["shard"] and lake.partition_columns(FLAT) == []
    lake.replace_partition(now_flat, frame("b", [2, 3]), {"shard": "b"})
    lake.append(now_flat, frame("c", [4]))
    assert sorted(lake.scan(now_flat).collect()["value"]) == [1, 2, 3, 4]
    assert sorted(path.parent.name for path in Path(lake.uri(SPEC)).glob("shard=*/*.parquet")) == [
        "shard=a",
        "shard=b",
        "shard=c",
    ]


def test_partitions_with_any_value_read_back_by_value(lake):
    odd = "shard 1/of 'two' ü%x=y"
    lake.replace_partition(SPEC, frame(odd, [3, 4]), {"shard": odd})
    lake.replace_partition(SPEC, frame("plain", [5]), {"shard": "plain"})
    assert lake.scan(SPEC).filter(pl.col("shard") == odd).collect()["value"].to_list() == [3, 4]
    assert lake.missing_columns(SPEC) == []
    # One percent-encoded directory per value.
    directories = sorted(path.parent.name for path in Path(lake.uri(SPEC)).glob("shard=*/*.parquet"))
    assert directories == ["shard=plain", "shard=shard%201%2Fof%20%27two%27%20%C3%BC%25x%3Dy"]


def test_a_lake_whose_path_has_spaces_and_accents_reads_what_it_wrote(tmp_path):
    from qaq_assets.lib.store.lake import Lake

    lake = Lake(tmp_path / "my data" / "läke 100%")
    odd = "shard 1/ü%20"
    lake.replace_partition(SPEC, frame(odd, [1, 2]), {"shard": odd})
    lake.replace_partition(SPEC, frame("plain", [3]), {"shard": "plain"})
    lake.replace_partition(FLAT, frame(odd, [5]), {"shard": odd})
    assert lake.scan(FLAT).filter(pl.col("shard") == odd).collect()["value"].to_list() == [5]
    assert sorted(lake.scan(SPEC).collect()["value"].to_list()) == [1, 2, 3]
    assert lake.scan(SPEC).filter(pl.col("shard") == odd).collect()["value"].to_list() == [1, 2]
