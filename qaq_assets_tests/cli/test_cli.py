"""The ``qaq`` command line, run as a user runs it."""

import re

from qaq_assets_tests.helpers import CODE_PAIRS, LAST_LINE, TINY, TINY_FLAGS, qaq, write_jsonl


def test_curate_prints_the_contract_line_and_reruns_score_nothing(tmp_path, make_shard):
    one = make_shard("one", CODE_PAIRS[:8], extra_records=["not json"])
    two = make_shard("two", CODE_PAIRS[8:])
    lake = tmp_path / "lake"
    args = ["curate", str(one), str(two), "--lake", str(lake), "--model", TINY, "--template", "plain"]
    first = qaq(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    values = [int(v) for v in LAST_LINE.match(first.stdout.strip().splitlines()[-1]).groups()]
    samples_in, scored, tokens, kept, quarantined = values
    assert (samples_in, scored, kept, quarantined) == (13, 12, 3, 1) and tokens > 0
    for table in ("raw_samples", "token_logprobs", "qaq_scores", "curated_subset", "quarantine"):
        assert (lake / table / "_delta_log").is_dir()

    again = qaq(*args)
    assert again.returncode == 0
    assert LAST_LINE.match(again.stdout.strip().splitlines()[-1]).groups()[1] == "0"

    summary = qaq("summary", "--lake", str(lake))
    assert summary.returncode == 0 and "defect rate: input 0.0% -> kept 0.0%" in summary.stdout


def test_runs_are_recorded_in_a_shared_dagster_home(tmp_path, make_shard):
    home = tmp_path / "dagster_home"  # not there yet: the command creates it
    result = qaq(
        "curate",
        str(make_shard("s", CODE_PAIRS[:4])),
        "--lake",
        str(tmp_path / "lake"),
        "--model",
        TINY,
        env_extra={"DAGSTER_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        jobs = {run.job_name for run in instance.get_runs()}
        assert jobs == {"ingest_job", "scoring_job", "curation_job"}
        assert instance.get_dynamic_partitions("shards") == ["s"]


def test_curate_exits_non_zero_when_a_shard_fails_but_curates_the_rest(tmp_path, make_shard):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    result = qaq(
        "curate", str(make_shard("good", CODE_PAIRS)), str(bad), "--lake", str(tmp_path / "lake"), "--model", TINY
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"bad: {bad}: cannot read as Parquet: ")
    assert "shards failed: bad" in result.stdout
    assert LAST_LINE.match(result.stdout.strip().splitlines()[-1]).groups()[3] == "3"


def test_bad_arguments_are_rejected_clearly(tmp_path):
    result = qaq("curate", "x.xml", "--lake", str(tmp_path / "l"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # one line, naming the file and what is supported
    assert "x.xml: unsupported file type (supported: .jsonl" in line
    assert not (tmp_path / "l").exists()


def test_summary_says_how_many_rows_carry_no_label(tmp_path):
    records = [{"instruction": q, "response": a, "defect": "clean"} for q, a in CODE_PAIRS[:6]]
    records += [{"instruction": q, "response": a} for q, a in CODE_PAIRS[6:]]
    shard = write_jsonl(tmp_path / "half.jsonl", records)
    assert qaq("curate", shard, "--lake", tmp_path / "lake", *TINY_FLAGS).returncode == 0
    summary = qaq("summary", "--lake", tmp_path / "lake").stdout
    assert re.search(r"^  \(no label\)\s+input\s+6\s+kept\s+\d+\s+\(not in the defect rate\)$", summary, re.M), summary
