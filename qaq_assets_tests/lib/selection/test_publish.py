"""A curation publishes a whole, current version or nothing: never a stale snapshot, never a subset
without its lineage."""

import dagster as dg
import polars as pl
import pytest

from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.reports.export import export_curated, lineage_record
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS
from qaq_assets_tests.helpers import graph, pair_records, register_files, write_jsonl


def _scored_lake(lake, tmp_path, names):
    instance = dg.DagsterInstance.ephemeral()
    resources, (raw, token_logprobs, qaq_scores, curated) = graph(lake)
    shards = register_files(lake, [write_jsonl(tmp_path / f"{n}.jsonl", pair_records(prefix=n)) for n in names])
    instance.add_dynamic_partitions(SHARDS, shards)
    for shard in shards:
        assert dg.materialize([raw], partition_key=shard, instance=instance, resources=resources).success
        key = dg.MultiPartitionKey({"shard": shard, "model": "tiny"})
        assert dg.materialize(
            [token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources
        ).success
    return instance, resources, curated


def test_a_slow_curation_never_publishes_a_stale_snapshot(tmp_path, lake, monkeypatch):
    import qaq_assets.lib.selection.curation as curation_module

    instance, resources, curated = _scored_lake(lake, tmp_path, ["one"])
    real_curate, calls = curation_module.curate, []

    def slow_curate(store, model_keys, config, curation_id):
        result = real_curate(store, model_keys, config, curation_id)
        calls.append(curation_id)
        if len(calls) == 1:  # while A holds its one-shard snapshot, shard two lands and B curates
            _scored_lake(lake, tmp_path, ["two"])
            curation_module.publish(store, model_keys, config, "run-b")
        return result

    monkeypatch.setattr(curation_module, "curate", slow_curate)
    assert dg.materialize([curated], instance=instance, resources=resources).success
    final = lineage_record(lake)
    assert sorted(final["shards"]) == ["one", "two"] and len(calls) == 3  # A, B, then A again
    assert set(lake.scan(CURATED_SUBSET).collect()["shard"]) == {"one", "two"}


def test_lineage_is_written_before_the_subset_and_found_by_curation_id(tmp_path, lake, monkeypatch):
    instance, resources, curated = _scored_lake(lake, tmp_path, ["one"])
    assert dg.materialize([curated], instance=instance, resources=resources).success
    published = lineage_record(lake)["curated_version"]

    # Killed between the lineage row and the subset's commit: readers still see the last version.
    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("kill -9")

    monkeypatch.setattr(type(lake), "overwrite", killed)
    with pytest.raises(BaseException):  # noqa: B017 - the "kill"
        dg.materialize([curated], instance=instance, resources=resources, raise_on_error=True)
    monkeypatch.undo()
    assert lake.version(CURATED_SUBSET) == published
    assert lineage_record(lake)["curated_version"] == published
    assert export_curated(lake, tmp_path / "out.jsonl", "messages-jsonl") == 3

    # A version committed without its lineage (what the old order left after a kill) is refused.
    rows = lake.scan(CURATED_SUBSET).collect().with_columns(curation_id=pl.lit("never-recorded"))
    lake.overwrite(CURATED_SUBSET, rows)
    with pytest.raises(LakeError, match="incomplete"):
        lineage_record(lake)
    with pytest.raises(LakeError, match="incomplete"):
        export_curated(lake, tmp_path / "x.jsonl", "messages-jsonl")
    assert lake.scan(CURATION_RUNS).collect().height >= 2
