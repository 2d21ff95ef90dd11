"""Every command fails in one line, never silently, never with a traceback, creating nothing."""

import json

import pytest

from qaq_assets.cli import main
from qaq_assets_tests.helpers import CODE_PAIRS, TINY_FLAGS, qaq, write_jsonl


@pytest.fixture(scope="module")
def curated_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    shard = write_jsonl(root / "s.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    assert qaq("curate", shard, "--lake", root / "lake", *TINY_FLAGS).returncode == 0  # no shared DAGSTER_HOME
    return root / "lake"


def run(capsys, *args):
    capsys.readouterr()
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def test_every_command_names_the_cause_of_bad_input_in_one_line(tmp_path, capsys, curated_lake):
    missing_lake, out = tmp_path / "no-such-lake", tmp_path / "out" / "y.jsonl"
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xffnot json at all\n")
    cases = [
        (["export", "--lake", missing_lake, "--out", out], "no curated_subset in"),
        (["summary", "--lake", missing_lake], "no curated_subset in"),
        (["report", "--lake", missing_lake, "--out", out], "no curated_subset in"),
        (["lineage", "--lake", missing_lake], "no curated_subset in"),
        (
            ["export", "--lake", curated_lake, "--version", 99, "--out", out],
            "no curated version 99; recorded versions: 1 (latest 1)",
        ),
        (
            ["summary", "--lake", curated_lake, "--version", 99],
            "no curated version 99; recorded versions: 1 (latest 1)",
        ),
        (
            ["report", "--lake", curated_lake, "--version", 99, "--out", out],
            "no curated version 99; recorded versions: 1 (latest 1)",
        ),
        (
            ["lineage", "--lake", curated_lake, "--version", 99],
            "no curated version 99; recorded versions: 1 (latest 1)",
        ),
        (["export", "--lake", curated_lake, "--out", out, "--storage-option", "oops"], "KEY=VALUE"),
        (["curate", tmp_path / "missing.jsonl", "--lake", missing_lake, *TINY_FLAGS], "missing.jsonl: no such file"),
        (["curate", tmp_path / "x.xml", "--lake", missing_lake, *TINY_FLAGS], "unsupported file type"),
        (["evaluate", tmp_path / "missing.jsonl", "--lake", missing_lake, *TINY_FLAGS], "no such file"),
        (["curate", garbage, "--lake", garbage / "lake", *TINY_FLAGS], "garbage.jsonl is a file, not a directory"),
        (["export", "--lake", garbage, "--out", out], "garbage.jsonl is a file, not a directory"),
    ]
    for args, cause in cases:
        status, _, err = run(capsys, *args)
        assert status == 2, (args, err)
        assert 1 <= len(err) <= 3 and cause in "\n".join(err), (args, err)
        assert not any("Traceback" in line for line in err)
    assert not missing_lake.exists() and not out.parent.exists()

    # A garbage file fails in one line; the only file given, it leaves nothing usable: exit status 2.
    status, stdout, err = run(capsys, "curate", garbage, "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert status == 2 and err == [
        f"garbage: {garbage}: no line is valid JSON; the file is not JSON Lines or a JSON document"
    ]
    assert (
        "shards failed: garbage" in stdout and "curated_subset" not in stdout.split("shards failed:")[1].split("\n")[0]
    )


def test_one_bad_file_never_stops_the_others(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    unreadable = write_jsonl(tmp_path / "locked.jsonl", [{"instruction": "Q", "response": "A"}])
    unreadable.chmod(0)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n binary")
    args = ["curate", tmp_path / "bad.csv", tmp_path / "missing.jsonl", garbage, good, "--lake", tmp_path / "lake"]
    status, stdout, err = run(capsys, *args, *TINY_FLAGS)
    assert status == 1
    assert stdout.strip().splitlines()[-1].startswith("samples_in=12 samples_scored=12 ")
    causes = "\n".join(err)
    assert "bad.csv: no record maps to an instruction and a response (fields found: a, b)" in causes
    assert "missing.jsonl: no such file" in causes
    assert "garbage: " in causes and len(err) == 3 + (0 if _root() else 1)
    unreadable.chmod(0o600)
    # Every file failing is "no usable file": exit 2, as for files refused before registration.
    status, _, err = run(capsys, "curate", tmp_path / "bad.csv", garbage, "--lake", tmp_path / "lake2", *TINY_FLAGS)
    assert status == 2 and any("bad.csv: no record maps" in line for line in err)


def _root() -> bool:
    import os

    return os.geteuid() == 0  # root reads a file whatever its mode


def test_lineage_counts_add_up_per_reason_code(tmp_path, capsys):
    pairs = [{"instruction": q, "response": a} for q, a in CODE_PAIRS]
    shard = write_jsonl(tmp_path / "dups.jsonl", pairs + pairs[:2])  # two exact duplicates
    lake = tmp_path / "lake"
    assert main(["curate", str(shard), "--lake", str(lake), *TINY_FLAGS]) == 0
    status, stdout, _ = run(capsys, "lineage", "--lake", lake)
    counts = json.loads(stdout)["counts"]
    assert counts["drop:exact_duplicate"] == 2 and sum(counts.values()) == 14
    assert set(counts) <= {
        "drop:exact_duplicate",
        "drop:near_duplicate",
        "drop:rmi_below_band",
        "drop:answer_incomplete",
        "drop:signature_mismatch",
        "drop:rmi_above_band",
        "keep:rmi_in_band",
    }
    status, stdout, _ = run(capsys, "summary", "--lake", lake)
    assert "exact_duplicate" in stdout and " 2\n" in stdout


def test_report_export_and_lineage_of_a_curated_lake(tmp_path, capsys, curated_lake):
    import polars as pl

    from qaq_assets.lib.reports.summary import shorten, top_kept
    from qaq_assets.lib.store.lake import Lake
    from qaq_assets.lib.store.tables import CURATED_SUBSET

    page = tmp_path / "report.html"
    status, stdout, err = run(capsys, "report", "--lake", curated_lake, "--out", page)
    assert status == 0 and err == [] and stdout.strip() == f"report: {page}"
    html = page.read_text()
    kept = top_kept(Lake(curated_lake).scan(CURATED_SUBSET).collect())
    assert "Kept samples (top 3 by keep_score)" in html and "td.id{white-space:nowrap}" in html
    first, second = (f"<td class=id>s:{row}</td>" for row in kept["row_index"].to_list()[:2])
    assert html.index(first) < html.index(second)
    assert kept["keep_score"].to_list() == sorted(kept["keep_score"].to_list(), reverse=True)

    out = tmp_path / "train.jsonl"
    status, stdout, _ = run(capsys, "export", "--lake", curated_lake, "--out", out)
    assert status == 0 and len(out.read_text().splitlines()) == 3 and "wrote 3 samples" in stdout
    status, stdout, _ = run(capsys, "lineage", "--lake", curated_lake)
    assert status == 0 and json.loads(stdout)["curated_version"] == 1
    assert pl.read_ndjson(out)["sample_id"].sort().to_list() == kept["sample_id"].sort().to_list()

    assert shorten("short", 10) == "short"
    assert shorten("def add(a, b): return a + b", 16) == "def add(a, b):…"


@pytest.mark.parametrize("command", ["summary", "lineage"])
def test_a_reader_that_stops_early_ends_the_command_quietly(command, curated_lake):
    """`qaq summary | head -1`: the reader closes the pipe; no traceback, the status of SIGPIPE."""
    import os
    import signal
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command writes: every write meets a broken pipe
    try:
        result = subprocess.run(
            [sys.executable, "-m", "qaq_assets.cli", command, "--lake", str(curated_lake)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 128 + signal.SIGPIPE, result.stderr
    assert result.stderr == ""
