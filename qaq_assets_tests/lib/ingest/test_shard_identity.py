"""A shard belongs to its source file: another file never silently takes over its samples."""

import dagster as dg
import polars as pl
import pytest

from qaq_assets.cli import main
from qaq_assets.defs.automation.sensors import build_landing_sensor
from qaq_assets.lib.ingest.registry import ShardRegistrationError, landed_shard_name
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import QAQ_SCORES, RAW_SAMPLES, SHARD_SOURCES
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, age, register_files, requested_shards, tick, write_jsonl


def records(pairs):
    return [{"instruction": q, "response": a} for q, a in pairs]


def curate(*args):
    return main(["curate", *map(str, args), "--model", TINY, "--template", "plain", "--dtype", "float32"])


def test_a_second_file_with_the_same_key_is_refused_and_changes_nothing(tmp_path, capsys):
    lake = tmp_path / "lake"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_jsonl(tmp_path / "a" / "shard-000.jsonl", records(CODE_PAIRS))
    second = write_jsonl(tmp_path / "b" / "shard-000.jsonl", records(CODE_PAIRS[:3]))
    assert curate(first, "--lake", lake) == 0
    store = Lake(lake)
    versions = {t.name: store.version(t) for t in (RAW_SAMPLES, QAQ_SCORES, SHARD_SOURCES)}
    capsys.readouterr()

    assert curate(second, "--lake", lake) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(first) in err[0] and str(second) in err[0] and "'shard-000'" in err[0]
    assert {t.name: store.version(t) for t in (RAW_SAMPLES, QAQ_SCORES, SHARD_SOURCES)} == versions
    assert store.scan(RAW_SAMPLES).collect().height == len(CODE_PAIRS)

    # Taken over on purpose: the new file's samples replace the shard's, the old path is recorded.
    assert curate(second, "--lake", lake, "--replace-shard") == 0
    assert store.scan(RAW_SAMPLES).collect().height == 3
    assert store.scan(QAQ_SCORES).collect().height == 3
    source = store.scan(SHARD_SOURCES).collect().row(0, named=True)
    assert (source["path"], source["previous_path"]) == (str(second), str(first))


def test_the_same_path_with_new_content_is_an_update(tmp_path, lake):
    path = write_jsonl(tmp_path / "s.jsonl", records(CODE_PAIRS[:4]))
    assert register_files(lake, [path]) == ["s"]
    write_jsonl(path, records(CODE_PAIRS[:6]))
    assert register_files(lake, [path]) == ["s"]
    sources = lake.scan(SHARD_SOURCES).collect()
    assert sources.height == 1 and sources["previous_path"].to_list() == [None]
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(ShardRegistrationError, match="would take over shard 's'"):
        register_files(lake, [write_jsonl(other / "s.jsonl", records(CODE_PAIRS[:1]))])


def test_landed_keys_follow_the_path_under_the_landing_directory(tmp_path):
    landing = tmp_path / "incoming"
    assert landed_shard_name(landing / "a" / "part-0.jsonl", landing) == "a__part-0"
    assert landed_shard_name(landing / "date=2026-11-26" / "part 1.jsonl.gz", landing) == "date-2026-11-26__part-1"
    assert landed_shard_name(landing / "top.parquet", landing) == "top"
    assert landed_shard_name(landing / "数据" / "訓練 データ.jsonl", landing) == "数据__訓練-データ"
    assert landed_shard_name(landing / "a...b.jsonl", landing) == "a.b"  # Dagster refuses "..." in a key


def test_a_file_with_a_non_ascii_name_is_a_shard_and_a_nameless_one_fails_alone(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "数据.jsonl", records(CODE_PAIRS[:2]))
    write_jsonl(folder / "good.jsonl", records(CODE_PAIRS[2:4]))
    write_jsonl(folder / "---.jsonl", records(CODE_PAIRS[4:6]))
    assert curate(folder, "--lake", tmp_path / "lake") == 1  # one file failed; the others are curated
    assert "---.jsonl: cannot derive a shard name from the file name" in capsys.readouterr().err
    shards = Lake(tmp_path / "lake").scan(RAW_SAMPLES).select("shard").unique().collect()["shard"].sort().to_list()
    assert shards == ["data__good", "data__数据"]


def test_sensor_lands_hive_style_parts_and_skips_a_clash_with_a_reason(tmp_path, lake):
    landing = tmp_path / "incoming"
    for folder in ("a", "b"):
        (landing / folder).mkdir(parents=True)
        age(write_jsonl(landing / folder / "part-0.jsonl", records(CODE_PAIRS[:2])))
    age(write_jsonl(landing / "a" / "---.jsonl", records(CODE_PAIRS[:2])))  # no key: fails alone
    sensor = build_landing_sensor(str(landing), settle_seconds=5)
    instance = dg.DagsterInstance.ephemeral()
    settled = tick(sensor, instance, lake, tick(sensor, instance, lake).cursor)
    assert sorted(requested_shards(settled)) == ["a__part-0", "b__part-0"]

    # A shard of that name already reads another file (curated by hand): the landed one is skipped.
    elsewhere = write_jsonl(tmp_path / "c.jsonl", records(CODE_PAIRS[2:4]))
    register_files(lake, [elsewhere])
    age(write_jsonl(landing / "c.jsonl", records(CODE_PAIRS[4:6])))
    look = tick(sensor, instance, lake, settled.cursor)
    look = tick(sensor, instance, lake, look.cursor)
    assert look.run_requests == []
    assert (
        "would take over shard 'c'" in look.skip_reason.skip_message and str(elsewhere) in look.skip_reason.skip_message
    )
    sources = lake.scan(SHARD_SOURCES).filter(pl.col("shard") == "c").collect()
    assert sources["path"].to_list() == [str(elsewhere)]


def test_a_registered_file_swapped_for_a_link_is_never_read(tmp_path, lake):
    """A file that passed registration, then replaced by a symlink to a secret outside the
    landing directory: refused at the check, and refused by the read itself (the swap can land
    between the check and the open), with nothing of the secret in the lake."""
    import os

    from qaq_assets.lib.ingest.file_formats import ShardReadError
    from qaq_assets.lib.ingest.registry import source_paths
    from qaq_assets.lib.ingest.shard_ingest import ingest_shards
    from qaq_assets.lib.ingest.shard_reader import read_shard
    from qaq_assets.lib.store.tables import QUARANTINE, RAW_SAMPLES

    landing = tmp_path / "incoming"
    landing.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text('{"instruction": "hunter2", "response": "aws_secret_access_key"}\nnot json\n')
    shard_file = write_jsonl(landing / "a.jsonl", [{"instruction": "Q", "response": "A"}])
    [shard] = register_files(lake, [shard_file])
    shard_file.unlink()
    os.symlink(secret, shard_file)

    paths, refused = source_paths(lake, [shard])
    assert shard in refused and "changed since it was registered" in str(refused[shard])
    for suffix in ("jsonl", "jsonl.gz", "csv", "parquet", "arrow"):
        link = landing / f"swapped.{suffix}"
        link.symlink_to(secret)
        with pytest.raises(ShardReadError, match="is now a symbolic link"):
            read_shard(link, "swapped")
    # Past the check (the swap after it): the read refuses, the shard fails alone.
    ingested = ingest_shards(lake, [(shard, shard_file)])
    assert shard in ingested.failures and "symbolic link" in str(ingested.failures[shard])
    for table in (RAW_SAMPLES, QUARANTINE):
        stored = lake.scan(table).collect() if lake.version(table) is not None else None
        assert stored is None or "hunter2" not in stored.write_csv()
