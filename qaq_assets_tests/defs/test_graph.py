"""The Dagster asset graph end to end with the tiny model and real Delta tables."""

import dagster as dg
import polars as pl

from qaq_assets.definitions import build_definitions
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.settings import Settings
from qaq_assets.lib.store.tables import (
    ALL_TABLES,
    CURATED_SUBSET,
    CURATION_RUNS,
    QAQ_SCORES,
    QUARANTINE,
    RAW_SAMPLES,
    TOKEN_LOGPROBS,
)
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, graph, materialize_all, register_files

TINY_WEAK = "weak=random:tiny-llama:1"


def read(lake, table, **filters):
    frame = lake.scan(table).collect()
    for column, value in filters.items():
        frame = frame.filter(pl.col(column) == value)
    return frame


def test_definitions_load_with_lineage():
    defs = build_definitions(Settings(models=(TINY, TINY_WEAK)))
    dg.Definitions.validate_loadable(defs)
    asset_graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in asset_graph.get(key).parent_keys}
        for key in asset_graph.get_all_asset_keys()
    }
    # Every table of the lake, with what each is computed from (the data flow a user inspects).
    assert parents == {
        "raw_samples": set(),
        "quarantine": set(),
        "sample_features": set(),
        "shard_sources": set(),
        "token_logprobs": {"raw_samples"},
        "score_cache": {"raw_samples"},
        "qaq_scores": {"token_logprobs"},
        "curated_subset": {"qaq_scores", "raw_samples", "sample_features"},
        "curation_runs": {"qaq_scores", "raw_samples", "sample_features"},
    }
    assert set(parents) == {table.name for table in ALL_TABLES}
    # One step writes each stage's tables; the UI lists each table's columns.
    for table in ALL_TABLES:
        node = asset_graph.get(dg.AssetKey(table.name))
        columns = node.metadata["dagster/column_schema"].columns
        assert [column.name for column in columns] == table.schema.names()
    assert asset_graph.get(dg.AssetKey("token_logprobs")).kinds == {"pytorch", "deltalake"}
    assert asset_graph.get(dg.AssetKey("token_logprobs")).partitions_def.get_partitions_def_for_dimension(
        "model"
    ).get_partition_keys() == ["tiny", "weak"]


def test_whole_graph_on_two_shards(lake, make_shard):
    one = make_shard("one", CODE_PAIRS[:7], extra_records=["{broken json"])
    two = make_shard("two", CODE_PAIRS[7:] + CODE_PAIRS[:1])  # its last pair repeats shard one's first
    _, result = materialize_all(lake, [one, two])

    raw = read(lake, RAW_SAMPLES)
    assert raw.height == 13 and set(raw["shard"]) == {"one", "two"}
    assert read(lake, QUARANTINE)["reason"].to_list() == ["malformed_json"]
    logprobs = read(lake, TOKEN_LOGPROBS)
    assert logprobs.height == 13 and logprobs["sample_id"].n_unique() == 12  # shard two's repeat came from the cache
    scores = read(lake, QAQ_SCORES)
    expected_rmi = scores["nll_query"] - scores["nll_query_given_answer"]
    assert (scores["rmi"] - expected_rmi).abs().max() < 1e-12
    assert scores.select(pl.col("rmi", "ifd_loss", "ifd_ppl").is_finite().all()).row(0) == (True, True, True)

    curated = read(lake, CURATED_SUBSET)
    assert curated.height == 13 and set(curated["decision"]) == {"keep", "drop"}
    assert curated.filter(pl.col("decision") == "keep").height == 3  # floor(12 * 0.25 + 0.5)
    duplicate = curated.filter(pl.col("shard") == "two", pl.col("row_index") == 6).row(0, named=True)
    assert duplicate["decision"] == "drop" and duplicate["reason"] == "exact_duplicate_of:one:1"
    assert curated["reason"].null_count() == 0

    lineage = read(lake, CURATION_RUNS).row(0, named=True)
    assert lineage["curated_version"] == lake.version(CURATED_SUBSET) and lineage["shards"] == ["one", "two"]
    materialization = result.asset_materializations_for_node("curated_subset")[0]
    assert materialization.metadata["kept"].value == 3
    checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
    assert checks == {"schema_decisions_valid_and_budget_met": True, "lineage_counts_add_up": True}


def test_rematerializing_a_shard_replaces_exactly_its_rows(lake, make_shard):
    one, two = make_shard("one", CODE_PAIRS[:6]), make_shard("two", CODE_PAIRS[6:])
    instance, _ = materialize_all(lake, [one, two])
    before_two = read(lake, QAQ_SCORES, shard="two").sort("sample_id")
    versions = {t.name: lake.version(t) for t in (RAW_SAMPLES, QAQ_SCORES)}

    make_shard("one", CODE_PAIRS[:4])  # the file shrinks on purpose: its shard must shrink too
    materialize_all(lake, [one, two], instance=instance, allow_shrink=True)
    assert read(lake, RAW_SAMPLES, shard="one").height == 4
    assert read(lake, QAQ_SCORES, shard="one").height == 4
    assert read(lake, QAQ_SCORES, shard="two").sort("sample_id").equals(before_two)
    assert read(lake, RAW_SAMPLES)["sample_id"].is_unique().all()
    assert all(lake.version(t) > versions[t.name] for t in (RAW_SAMPLES, QAQ_SCORES))
    # Each curation is a new Delta version (0 is the empty table); the earlier one stays readable.
    assert lake.version(CURATED_SUBSET) == 2
    assert lake.scan(CURATED_SUBSET, version=1).collect().height == 12
    assert lake.scan(CURATED_SUBSET).collect().height == 10


def test_strong_weak_pair_selects_by_diff(lake, make_shard):
    materialize_all(lake, [make_shard("one", CODE_PAIRS)], models=(TINY, TINY_WEAK), budget=0.5)
    curated = read(lake, CURATED_SUBSET)
    assert set(curated["strategy"]) == {"diff"}
    kept = curated.filter(pl.col("decision") == "keep")
    assert kept.height == 6 and kept["diff"].min() >= curated.filter(pl.col("decision") == "drop")["diff"].max()
    assert (curated["diff"] - (curated["rmi_rank"] - curated["weak_rmi_rank"])).abs().max() < 1e-9
    assert set(read(lake, QAQ_SCORES)["model_key"]) == {"tiny", "weak"}


def test_unreadable_shard_fails_its_partition_only(lake, tmp_path, make_shard):
    good = make_shard("good", CODE_PAIRS[:3])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(bytes(range(256)) * 4)
    instance = dg.DagsterInstance.ephemeral()
    resources, (raw, *_) = graph(lake)
    shards = register_files(lake, [good, bad])
    instance.add_dynamic_partitions(SHARDS, shards)
    failed = dg.materialize([raw], partition_key="bad", instance=instance, resources=resources, raise_on_error=False)
    assert not failed.success
    message = failed.get_step_failure_events()[0].step_failure_data.error.message
    assert "bad.jsonl" in message and "not JSON Lines or a JSON document" in message
    assert dg.materialize([raw], partition_key="good", instance=instance, resources=resources).success
    assert read(lake, RAW_SAMPLES).height == 3


def test_unregistered_shard_fails_with_instructions(lake):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, ["ghost"])
    resources, (raw, *_) = graph(lake)
    result = dg.materialize([raw], partition_key="ghost", instance=instance, resources=resources, raise_on_error=False)
    assert "no registered source file" in result.get_step_failure_events()[0].step_failure_data.error.message


def test_near_duplicates_are_dropped_pointing_at_their_twin(lake, make_shard):
    body = "\n".join(f"    total_{i} = scale(values[{i}], factor={i}) + bias_{i}" for i in range(25))
    near_pair = [
        ("Sum the scaled values.", f"def total(values):\n{body}\n    return total_0"),
        ("Sum the scaled values!", f"def total(values):\n{body}\n    return total_1"),
    ]
    materialize_all(lake, [make_shard("one", CODE_PAIRS[:10] + near_pair)])
    curated = read(lake, CURATED_SUBSET)
    twin = curated.filter(pl.col("row_index") == 12).row(0, named=True)
    assert twin["decision"] == "drop" and twin["reason"] == "near_duplicate_of:one:11"
    assert curated.filter(pl.col("decision") == "keep").height == 3  # floor(11 * 0.25 + .5) of 11 distinct


def test_a_shard_scored_by_the_weak_model_only_is_refused_or_left_out_and_named(lake, make_shard):
    models = (TINY, TINY_WEAK)
    instance, _ = materialize_all(lake, [make_shard("one", CODE_PAIRS[:8])], models=models)
    resources, (raw, token_logprobs, qaq_scores, curated) = graph(lake, models)
    instance.add_dynamic_partitions(SHARDS, register_files(lake, [make_shard("two", CODE_PAIRS[8:])]))
    assert dg.materialize([raw], partition_key="two", instance=instance, resources=resources).success
    weak_only = dg.MultiPartitionKey({"shard": "two", "model": "weak"})
    assert dg.materialize(
        [token_logprobs, qaq_scores], partition_key=weak_only, instance=instance, resources=resources
    ).success
    refused = dg.materialize([curated], instance=instance, resources=resources, raise_on_error=False)
    assert not refused.success and lake.version(CURATED_SUBSET) == 1  # nothing published
    partial = {"ops": {"curated_subset": {"config": {"allow_partial": True}}}}
    result = dg.materialize([curated], instance=instance, resources=resources, run_config=partial)
    metadata = result.asset_materializations_for_node("curated_subset")[0].metadata
    assert metadata["shards"].value == ["one"] and metadata["shards_pending"].value == ["two"]
    assert set(lake.scan(CURATED_SUBSET).collect()["shard"]) == {"one"}
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert any("not yet scored by every model (tiny, weak): two" in message for message in warnings)
