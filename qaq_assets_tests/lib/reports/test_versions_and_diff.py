"""One way to name a version and a sample for every command, and what changed between versions."""

import json
import re
import shutil

import polars as pl
import pytest

from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.reports.resolve import resolve_sample, resolve_version
from qaq_assets.lib.reports.version_diff import diff_versions, summary_lines
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, CURATION_RUNS
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, TINY_FLAGS, qaq, write_jsonl


@pytest.fixture(scope="module")
def three_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    lake = root / "lake"
    first = write_jsonl(
        root / "a.jsonl", [{"id": f"a{i}", "instruction": q, "response": a} for i, (q, a) in enumerate(CODE_PAIRS)]
    )
    assert qaq("curate", first, "--lake", lake, *TINY_FLAGS, "--strategy", "rmi-band").returncode == 0
    second = write_jsonl(root / "b.jsonl", [{"instruction": f"Also: {q}", "response": a} for q, a in CODE_PAIRS])
    assert qaq("curate", second, "--lake", lake, *TINY_FLAGS, "--strategy", "rmi-band").returncode == 0
    assert (
        qaq("curate", second, "--lake", lake, *TINY_FLAGS, "--strategy", "rmi-band", "--budget", "0.5").returncode == 0
    )
    return Lake(lake)


def test_a_version_is_named_by_number_v_number_latest_or_time(three_versions):
    lake = three_versions
    assert [resolve_version(lake, name) for name in (None, "latest", "2", "v2", 1)] == [3, 3, 2, 2, 1]
    made = lake.scan(CURATION_RUNS).sort("curated_version").collect()["created_at"].to_list()
    assert resolve_version(lake, made[1].isoformat()) == 2
    with pytest.raises(LakeError, match=r"no curated version 7; recorded versions: 1-3 \(latest 3\); name one as"):
        resolve_version(lake, "7")
    with pytest.raises(LakeError, match="version 0 is the empty table a lake starts with"):
        resolve_version(lake, "0")
    with pytest.raises(LakeError, match="no curated version existed at 2001-01-01T00:00:00"):
        resolve_version(lake, "2001-01-01")
    with pytest.raises(LakeError, match="--version takes latest, N, vN or a time"):
        resolve_version(lake, "yesterday")


def test_every_command_takes_the_same_version_names_and_says_the_same_line(three_versions, tmp_path):
    root = three_versions.root
    assert json.loads(qaq("lineage", "--lake", root, "--version", "v2").stdout)["curated_version"] == 2
    assert qaq("summary", "--lake", root, "--version", "v1").stdout.startswith("curated_subset version 1:")
    exported = qaq("export", "--lake", root, "--version", "v1", "--out", tmp_path / "v1.jsonl")
    assert exported.returncode == 0 and "wrote 3 samples" in exported.stdout
    lines = {
        command: qaq(command, *extra, "--lake", root, "--version", "0").stderr.strip()
        for command, extra in (("summary", []), ("lineage", []), ("export", ["--out", tmp_path / "x.jsonl"]))
    }
    assert {line.split(": ", 1)[1] for line in lines.values()} == {
        "version 0 is the empty table a lake starts with, no curation; recorded versions: 1-3 (latest 3); "
        "name one as latest, N, vN or a time such as 2026-12-06T05:00"
    }
    # The lineage names the rule that ran, not "auto".
    auto = qaq("curate", tmp_path / "nothing.jsonl", "--lake", root, *TINY_FLAGS)
    assert auto.returncode == 2
    assert json.loads(qaq("lineage", "--lake", root).stdout)["selection_config"]["strategy"] == "rmi-band"


def test_a_sample_is_named_by_id_prefix_record_id_or_shard_row(three_versions):
    lake = three_versions
    raw_version = json.loads(
        lake.scan(CURATION_RUNS).filter(pl.col("curated_version") == 3).collect()["input_versions"][0]
    )["raw_samples"]
    row = lake.scan(CURATED_SUBSET, 3).filter(pl.col("shard") == "a").sort("row_index").collect().row(2, named=True)
    for key in (row["sample_id"], row["sample_id"][:8], "a2", "a:3"):
        assert resolve_sample(lake, key, 3, raw_version)["sample_id"][0] == row["sample_id"], key
    with pytest.raises(LakeError, match=r"rows are numbered from 1 .*; no row 0"):
        resolve_sample(lake, "a:0", 3, raw_version)
    with pytest.raises(LakeError, match=r"no row 99 in shard 'a' of curated version 3: shard 'a' has rows 1-12"):
        resolve_sample(lake, "a:99", 3, raw_version)
    with pytest.raises(LakeError, match=r"no sample 'nope' in curated version 3; name it as a sample id"):
        resolve_sample(lake, "nope", 3, raw_version)
    explained = qaq("explain", row["sample_id"][:10], "--lake", lake.root, "--model", TINY)
    assert explained.returncode == 0 and f"a:3 sample {row['sample_id']}" in explained.stdout


def test_the_diff_names_new_shards_flipped_decisions_and_changed_settings(three_versions):
    lake = three_versions
    landed = diff_versions(lake, 1, 2)
    assert landed.shards_added == ["b"] and landed.samples_added == 12 and landed.samples_removed == 0
    flipped_codes = set(landed.flips["reason_code_before"]) | set(landed.flips["reason_code_after"])
    assert flipped_codes <= {"rmi_in_band", "rmi_below_band", "rmi_above_band"}
    text = "\n".join(summary_lines(landed))
    assert (
        "shards added 1 (b), removed 0" in text
        and f"decisions flipped on samples in both: {landed.flips.height}" in text
    )
    if landed.flips.height:
        assert "the strata and ranks span the whole corpus" in text
    rebudgeted = diff_versions(lake, 2, 3)
    assert rebudgeted.settings == {"budget": (0.25, 0.5)} and rebudgeted.kept_after > rebudgeted.kept_before
    # A wider band from the same start only adds: nothing kept before is dropped.
    assert rebudgeted.newly_kept.height == rebudgeted.kept_after - rebudgeted.kept_before
    assert rebudgeted.newly_dropped.height == 0
    cli = qaq("diff", "--lake", lake.root)  # the latest against the one before it
    expected = f"curated version 2 -> 3: kept {rebudgeted.kept_before} -> {rebudgeted.kept_after}"
    assert cli.returncode == 0 and cli.stdout.startswith(expected)
    assert "setting budget: 0.25 -> 0.5" in cli.stdout


def _commit(lake_root, version: int):
    return lake_root / "curated_subset" / "_delta_log" / f"{version:020d}.json"


@pytest.mark.parametrize(
    "damage, cause",
    [
        ("cut before its add actions", r"0 rows where its curation wrote \d+"),
        ("cut to its commit info", "it holds the rows of version 2's curation"),
        ("emptied", "it holds the rows of version 2's curation"),
    ],
)
def test_a_damaged_commit_is_refused_naming_the_last_good_version(three_versions, tmp_path, damage, cause):
    root = tmp_path / "lake"
    shutil.copytree(three_versions.root, root)
    commit = _commit(root, 3)
    lines = commit.read_text().splitlines(keepends=True)
    kept = {"cut before its add actions": [line for line in lines if '"add"' not in line], "emptied": []}
    commit.write_text("".join(kept.get(damage, lines[:1])))
    out = tmp_path / "train.jsonl"
    out.write_text("yesterday's set\n")
    for command, extra in (("export", ["--out", out]), ("lineage", []), ("summary", [])):
        result = qaq(command, *extra, "--lake", root)
        assert result.returncode == 2
        assert re.fullmatch(
            rf"qaq {command}: curated_subset version 3 is damaged \({cause}\): not served; "
            r"the last good version is 2 \(--version 2\)\n",
            result.stderr,
        )
    assert out.read_text() == "yesterday's set\n"  # the training file is not overwritten
    assert qaq("export", "--lake", root, "--version", "2", "--out", out).returncode == 0


def test_a_deleted_newest_commit_never_lets_its_version_number_name_other_rows(three_versions, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(three_versions.root, root)
    lake = Lake(root)
    _commit(root, 3).unlink()
    third = write_jsonl(tmp_path / "c.jsonl", [{"instruction": f"Then: {q}", "response": a} for q, a in CODE_PAIRS])
    assert qaq("curate", third, "--lake", root, *TINY_FLAGS, "--strategy", "rmi-band").returncode == 0
    recorded = lake.scan(CURATION_RUNS).select("curated_version").collect()["curated_version"].to_list()
    assert sorted(recorded) == [1, 2, 3, 4]  # the new curation is 4, not a second 3
    assert json.loads(qaq("lineage", "--lake", root).stdout)["curated_version"] == 4
    refused = qaq("lineage", "--lake", root, "--version", "3")
    assert (
        refused.returncode == 2 and "version 3 is damaged (it holds the rows of version 2's curation)" in refused.stderr
    )


def test_stable_decisions_flip_nothing_that_an_earlier_version_decided(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    second = write_jsonl(tmp_path / "b.jsonl", [{"instruction": f"Also: {q}", "response": a} for q, a in CODE_PAIRS])
    third = write_jsonl(tmp_path / "c.jsonl", [{"instruction": f"Then: {q}", "response": a} for q, a in CODE_PAIRS])
    lake = tmp_path / "lake"
    assert qaq("curate", first, "--lake", lake, *TINY_FLAGS).returncode == 0
    before = Lake(lake).scan(CURATED_SUBSET).select("sample_id", "decision").collect().sort("sample_id")
    for shard in (second, third):
        stable = qaq("curate", shard, "--lake", lake, *TINY_FLAGS, "--decisions", "stable")
        assert stable.returncode in (0, 3), stable.stderr  # 3: fewer kept than the budget over all, said
        diff = qaq("diff", "--lake", lake).stdout
        assert "decisions flipped on samples in both: 0 (0 kept -> dropped, 0 dropped -> kept)" in diff
    after = Lake(lake).scan(CURATED_SUBSET).select("sample_id", "decision").collect()
    assert (
        before.join(after, on="sample_id", suffix="_now").filter(pl.col("decision") != pl.col("decision_now")).height
        == 0
    )
    assert json.loads(qaq("lineage", "--lake", lake).stdout)["selection_config"]["decisions"] == "stable"
