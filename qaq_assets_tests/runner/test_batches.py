"""Thousands of files in a few runs: batches of consecutive partitions, one bad file failing
alone, the incremental path reading only what changed, and a registry of 100,000 shards."""

import json

import dagster as dg
import pytest

from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.batches import batches
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QAQ_SCORES, RAW_SAMPLES
from qaq_assets_tests.helpers import LAST_LINE, TINY_FLAGS, qaq


def test_batches_are_consecutive_keys_cut_by_count_and_weight():
    order = [f"s{i}" for i in range(10)]
    assert batches(order, order, {}, 4, 10) == [order[:4], order[4:8], order[8:]]
    # A gap (a key not wanted) ends a batch: a run's range holds every key between its ends.
    assert batches(order, ["s1", "s2", "s4", "s5", "s9"], {}, 10, 10) == [["s1", "s2"], ["s4", "s5"], ["s9"]]
    weights = {"s0": 3, "s1": 3, "s2": 5, "s3": 20}
    assert batches(order, ["s0", "s1", "s2", "s3"], weights, 10, 8) == [["s0", "s1"], ["s2"], ["s3"]]
    assert batches(order, ["s3", "s0"], {}, 10, 10) == [["s0"], ["s3"]]  # in the partitions' order
    with pytest.raises(ValueError, match="not among the partitions"):
        batches(order, ["x"], {}, 10, 10)


def _files(directory, count, first=0):
    directory.mkdir(exist_ok=True)
    for index in range(first, first + count):
        record = {
            "instruction": f"Write f{index}(x) returning x + {index}.",
            "response": f"def f{index}(x):\n    return x + {index}",
        }
        (directory / f"f{index:04d}.jsonl").write_text(json.dumps(record) + "\n")


@pytest.mark.slow  # runs the qaq command in processes
def test_many_files_run_in_batches_one_bad_file_fails_alone_and_the_rest_is_recorded(tmp_path):
    folder = tmp_path / "many"
    _files(folder, 40)
    (folder / "f0013.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n not json")
    home = tmp_path / "home"
    result = qaq("curate", folder, "--lake", tmp_path / "lake", *TINY_FLAGS, env_extra={"DAGSTER_HOME": str(home)})
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("many__f0013")] == [
        f"many__f0013: {folder / 'f0013.jsonl'}: no line is valid JSON; the file is not JSON Lines or a JSON document"
    ]
    assert "shards failed: many__f0013" in result.stdout
    samples_in, scored, _, _, _ = LAST_LINE.match(result.stdout.strip().splitlines()[-1]).groups()
    assert (samples_in, scored) == ("39", "39")
    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    ingest_runs = [run for run in runs if run.job_name == "ingest_job"]
    assert len(ingest_runs) <= 4  # the batch, then the rest again without the bad file (in consecutive ranges)
    materialized = instance.get_materialized_partitions(dg.AssetKey("raw_samples"))
    assert len(materialized) == 39 and "many__f0013" not in materialized
    scored = instance.get_materialized_partitions(dg.AssetKey("qaq_scores"))
    assert len(scored) == 39
    assert Lake(tmp_path / "lake").scan(QAQ_SCORES).collect()["shard"].n_unique() == 39


@pytest.mark.slow  # runs the qaq command in processes
def test_curating_the_same_files_plus_new_ones_reads_and_scores_only_the_new_ones(tmp_path):
    folder = tmp_path / "many"
    _files(folder, 30)
    first = qaq("curate", folder, "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert first.returncode == 0, first.stderr
    _files(folder, 3, first=30)
    again = qaq("curate", folder, "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert again.returncode == 0, again.stderr
    samples_in, scored, _, kept, _ = LAST_LINE.match(again.stdout.strip().splitlines()[-1]).groups()
    assert (samples_in, scored, kept) == ("3", "3", "8")  # round(0.25 * 33)
    assert Lake(tmp_path / "lake").scan(RAW_SAMPLES).collect().height == 33
    # Other ingest settings read the files again (they may yield other samples).
    relabelled = qaq("curate", folder, "--lake", tmp_path / "lake", *TINY_FLAGS, "--label-field", "kind")
    assert LAST_LINE.match(relabelled.stdout.strip().splitlines()[-1]).group(1) == "33"


def test_a_registry_of_100000_shards_holds_them_in_order_and_plans_their_batches(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    instance = dg.DagsterInstance.from_config(str(home))  # SQLite, as a local deployment has it
    keys = [f"dump__part-{index:06d}" for index in range(100_000)]
    instance.add_dynamic_partitions(SHARDS, keys)
    order = instance.get_dynamic_partitions(SHARDS)
    planned = batches(order, keys[50_000:], {}, 2000, 1 << 30)
    assert order == keys and len(planned) == 25 and planned[0][0] == keys[50_000] and planned[-1][-1] == keys[-1]
    assert instance.has_dynamic_partition(SHARDS, keys[99_999])
