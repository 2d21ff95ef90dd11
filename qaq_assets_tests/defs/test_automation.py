"""Sensors, declarative automation, incremental scoring and lineage of curated versions."""

import json
import os
import time

import dagster as dg
import polars as pl

from qaq_assets.defs.automation.sensors import build_landing_sensor
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.reports.export import export_curated, lineage_record
from qaq_assets.lib.store.tables import CURATED_SUBSET, SHARD_SOURCES
from qaq_assets_tests.helpers import (
    CODE_PAIRS,
    FUSED_FORWARD,
    TINY,
    age,
    graph,
    materialize_all,
    requested_shards,
    tick,
    write_jsonl,
)


def test_landing_sensor_waits_for_settled_files_and_never_requests_twice(tmp_path, lake):
    landing = tmp_path / "incoming"
    landing.mkdir()
    sensor = build_landing_sensor(str(landing), settle_seconds=5)
    instance = dg.DagsterInstance.ephemeral()
    first = write_jsonl(landing / "day1.jsonl", [{"instruction": "Q", "response": "A"}])
    age(first)
    (landing / "notes.txt").write_text("ignored")

    seen_once = tick(sensor, instance, lake)
    assert seen_once.run_requests == []  # one look is not enough to know the writer is done

    settled = tick(sensor, instance, lake, seen_once.cursor)
    assert [r.partition_key for r in settled.run_requests] == ["day1"]
    assert settled.dynamic_partitions_requests[0].partition_keys == ["day1"]
    assert lake.scan(SHARD_SOURCES).collect()["shard"].to_list() == ["day1"]

    # Already registered and unchanged: nothing more, however often the sensor looks.
    assert tick(sensor, instance, lake, settled.cursor).run_requests == []

    # A file still being written changes between looks and is not picked up half-way.
    growing = landing / "day2.jsonl"
    growing.write_text(json.dumps({"instruction": "Q2", "response": "A2"}) + "\n")
    age(growing)
    look = tick(sensor, instance, lake, settled.cursor)
    with open(growing, "a") as handle:
        handle.write(json.dumps({"instruction": "Q3", "response": "A3"}) + "\n")
    age(growing, 30)
    look = tick(sensor, instance, lake, look.cursor)
    assert look.run_requests == []
    look = tick(sensor, instance, lake, look.cursor)
    assert [r.partition_key for r in look.run_requests] == ["day2"]

    # A fresh file with a .ready marker needs no settling; a re-landed changed file runs again.
    write_jsonl(landing / "day3.jsonl", [{"instruction": "Q4", "response": "A4"}])
    (landing / "day3.jsonl.ready").touch()
    write_jsonl(first, [{"instruction": "Q", "response": "A"}, {"instruction": "Q5", "response": "A5"}])
    marked = tick(sensor, instance, lake, look.cursor)
    assert [r.partition_key for r in marked.run_requests] == ["day3"]
    age(first)
    relanded = tick(sensor, instance, lake, tick(sensor, instance, lake, marked.cursor).cursor)
    run_keys = {r.run_key for r in settled.run_requests + relanded.run_requests}
    assert [r.partition_key for r in relanded.run_requests] == ["day1"] and len(run_keys) == 2


def test_a_marked_file_still_changing_waits_and_no_link_leads_out_of_the_landing_directory(tmp_path, lake):
    landing = tmp_path / "incoming"
    (landing / "nested").mkdir(parents=True)
    sensor = build_landing_sensor(str(landing), settle_seconds=5)
    instance = dg.DagsterInstance.ephemeral()
    outside = write_jsonl(tmp_path / "secret.jsonl", [{"instruction": "Q", "response": "A"}])
    (landing / "passwd.jsonl").symlink_to("/etc/passwd")
    (landing / "nested" / "secret.jsonl").symlink_to(outside)
    inside = write_jsonl(landing / "real.jsonl", [{"instruction": "Q", "response": "A"}])
    (landing / "alias.jsonl").symlink_to(inside)  # a link that stays inside is a file like any other
    age(inside)
    first = tick(sensor, instance, lake)
    marked = write_jsonl(landing / "marked.jsonl", [{"instruction": "Q1", "response": "A1"}])
    (landing / "marked.jsonl.ready").touch()
    look = tick(sensor, instance, lake, first.cursor)
    assert sorted(requested_shards(look)) == ["alias", "marked", "real"] and len(look.run_requests) == 1
    assert set(json.loads(look.cursor)["observed"]) == {
        str(landing / n) for n in ("alias.jsonl", "marked.jsonl", "real.jsonl")
    }

    # A marked file that changed since the last look is still being written, marker or not.
    again = write_jsonl(landing / "again.jsonl", [{"instruction": "Q2", "response": "A2"}])
    seen = tick(sensor, instance, lake, look.cursor)
    (landing / "again.jsonl.ready").touch()
    with open(again, "a") as handle:
        handle.write(json.dumps({"instruction": "Q3", "response": "A3"}) + "\n")
    os.utime(again, ns=(time.time_ns(), time.time_ns() + 10**9))
    changing = tick(sensor, instance, lake, seen.cursor)
    assert "again" not in [r.partition_key for r in changing.run_requests]
    assert [r.partition_key for r in tick(sensor, instance, lake, changing.cursor).run_requests] == ["again"]
    assert marked.exists()


def test_automation_scores_new_shards_and_recurates_without_waiting_for_missing_ones(lake, make_shard):
    from qaq_assets_tests.helpers import register_files

    instance, _ = materialize_all(lake, [make_shard("one", CODE_PAIRS[:6])])
    resources, assets = graph(lake)
    defs = dg.Definitions(assets=assets, resources=resources)
    # Shards two and three are registered; nothing is requested while their data is missing.
    instance.add_dynamic_partitions(SHARDS, ["two", "three"])
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert baseline.total_requested == 0

    register_files(lake, [make_shard("two", CODE_PAIRS[6:])])
    assert dg.materialize([assets[0]], partition_key="two", instance=instance, resources=resources).success
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    requested = evaluation.get_requested_partitions(dg.AssetKey("token_logprobs"))
    assert requested == {dg.MultiPartitionKey({"shard": "two", "model": "tiny"})}
    # Scores follow in the same tick: eager() counts a parent requested now as updated.
    assert evaluation.get_requested_partitions(dg.AssetKey("qaq_scores")) == requested
    assert evaluation.get_num_requested(dg.AssetKey("curated_subset")) == 0

    key = dg.MultiPartitionKey({"shard": "two", "model": "tiny"})
    assert dg.materialize(assets[1:3], partition_key=key, instance=instance, resources=resources).success
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert evaluation.get_num_requested(dg.AssetKey("curated_subset")) == 1  # shard three missing: not blocking


def test_landing_a_new_shard_scores_only_its_samples(lake, make_shard):
    instance, _ = materialize_all(lake, [make_shard("one", CODE_PAIRS[:6])])
    resources, assets = graph(lake)
    from qaq_assets_tests.helpers import register_files

    register_files(lake, [make_shard("two", CODE_PAIRS[4:])])  # two old samples, six new
    instance.add_dynamic_partitions(SHARDS, ["two"])
    dg.materialize([assets[0]], partition_key="two", instance=instance, resources=resources)
    result = dg.materialize(
        assets[1:3],
        partition_key=dg.MultiPartitionKey({"shard": "two", "model": "tiny"}),
        instance=instance,
        resources=resources,
    )
    metadata = result.asset_materializations_for_node("token_logprobs")[0].metadata
    assert metadata["samples_scored"].value == 6 and metadata["samples_from_cache"].value == 2
    assert metadata["forward_passes"].value >= 1
    assert metadata["forward"].value.startswith(FUSED_FORWARD)


def test_lineage_round_trip_and_export_of_an_older_version(lake, make_shard, tmp_path):
    _, result = materialize_all(lake, [make_shard("one", CODE_PAIRS)], budget=0.25)
    shown = result.asset_materializations_for_node("curated_subset")[0].metadata["selection_config"].value
    assert shown["strategy"] == "rmi-band+checks"  # the rule that ran, not "auto"
    first_version = lake.version(CURATED_SUBSET)
    first_kept = lake.scan(CURATED_SUBSET, first_version).filter(pl.col("decision") == "keep").collect()
    materialize_all(lake, [make_shard("one", CODE_PAIRS)], budget=0.5)
    assert lake.version(CURATED_SUBSET) == first_version + 1

    old = lineage_record(lake, first_version)
    new = lineage_record(lake)
    assert old["selection_config"]["budget"] == 0.25 and new["selection_config"]["budget"] == 0.5
    assert old["selection_config_sha"] != new["selection_config_sha"]
    assert old["models"][0]["model_id"] == "random:tiny-llama:0" and len(old["models"][0]["weights_sha256"]) == 64
    assert old["counts"]["keep:rmi_in_band"] == 3 and new["counts"]["keep:rmi_in_band"] == 6
    assert old["input_versions"]["qaq_scores"] is not None and old["shards"] == ["one"]

    out = tmp_path / "old.jsonl"
    assert export_curated(lake, out, "messages-jsonl", version=first_version) == 3
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["sample_id"] for r in exported) == sorted(first_kept["sample_id"])
    assert exported[0]["messages"][0]["role"] == "user"
    assert export_curated(lake, tmp_path / "new.parquet", "parquet") == 6
    assert pl.read_parquet(tmp_path / "new.parquet").height == 6
    alpaca = tmp_path / "a.jsonl"
    export_curated(lake, alpaca, "alpaca-jsonl", version=first_version)
    assert set(json.loads(alpaca.read_text().splitlines()[0])) == {"instruction", "input", "output", "id", "sample_id"}


def test_definitions_declare_the_automation():
    from qaq_assets.definitions import build_definitions
    from qaq_assets.lib.settings import Settings

    defs = build_definitions(Settings(models=(TINY,)))
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["qaq_automation"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["landing_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    schedules = {s.name: s for s in defs.schedules}
    assert schedules.keys() == {"recurate_nightly", "compact_nightly"}
    assert schedules["compact_nightly"].default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_assets_def("token_logprobs").op.pool == "gpu"


def test_scoring_step_carries_deployment_op_tags(monkeypatch):
    from qaq_assets.definitions import build_definitions
    from qaq_assets.lib.settings import Settings

    gpu = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
    monkeypatch.setenv("QAQ_SCORING_OP_TAGS", json.dumps(gpu))
    monkeypatch.setenv("QAQ_MODELS", TINY)
    defs = build_definitions(Settings.from_env())
    tags = defs.resolve_assets_def("token_logprobs").op.tags
    assert json.loads(tags["dagster-k8s/config"]) == gpu["dagster-k8s/config"]  # Dagster stores tag values as JSON
    assert "dagster-k8s/config" not in defs.resolve_assets_def("raw_samples").op.tags
