"""Input written to break the reader: a repetition loop, rows that are not text, a gzip bomb."""

import gzip
import json
import subprocess
import sys

import polars as pl
import pytest

from qaq_assets.lib.ingest.codecheck import check_code
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.store.tables import CURATED_SUBSET
from qaq_assets_tests.helpers import CODE_PAIRS, materialize_all, pair_records, write_jsonl


def test_a_repetition_loop_answer_is_recorded_not_fatal(tmp_path, lake):
    loop = {"instruction": "Explain.", "response": "the " * 2000}
    assert check_code(loop["instruction"], loop["response"]).status == "check_failed:MemoryError"
    shard = write_jsonl(tmp_path / "loop.jsonl", pair_records() + [loop])
    materialize_all(lake, [shard], budget=0.5)
    curated = lake.scan(CURATED_SUBSET).collect()
    assert curated.height == len(CODE_PAIRS) + 1
    assert curated.filter(pl.col("code_status").str.starts_with("check_failed"))["code_status"].to_list() == [
        "check_failed:MemoryError"
    ]


def test_hostile_rows_are_quarantined_one_by_one(tmp_path):
    good = json.dumps({"instruction": "Q1", "response": "A1"}).encode()
    lines = [
        b"\xef\xbb\xbf" + good,  # a UTF-8 BOM before the first, valid record
        b"[" * 10000 + b"]" * 10000,
        *[
            json.dumps(record).encode()
            for record in (
                {"instruction": "Q\ud800", "response": "A"},
                {"instruction": "Q", "response": "A\udfff"},
                {"instruction": "Q", "response": "A", "id": "x\ud800"},
                {"instruction": "Q", "response": "A", "defect": "\ud800"},
                {"instruction": "Q", "response": "A", "extra": ["\ud800"]},
                {"instruction": "Q", "response": "A", "k\ud800": 1},
                {"instruction": "Q", "response": "A", "id": "a\u0000b"},
                {"instruction": "Q", "response": "A", "defect": "x\u0000"},
                {"instruction": "Q", "response": "A", "meta": {"deep": "\u0000"}},
                {"instruction": "Q2", "response": "A2", "id": 7},
                {"instruction": "Q3", "response": "A3", "id": "7"},
                {"instruction": "", "input": "Reverse a list.", "response": "def r(xs):\n    return xs[::-1]"},
            )
        ],
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines))
    read = read_shard(path, "hostile")
    assert read.rows_read == len(lines) == read.samples.height + read.quarantine.height
    reasons = dict(zip(read.quarantine["row_index"], read.quarantine["reason"], strict=True))
    assert reasons == {
        2: "too_deeply_nested",
        **{row: "invalid_unicode" for row in range(3, 9)},
        **{row: "nul_character" for row in range(9, 12)},
        13: "duplicate_id",  # integer 7 and string "7" are the same id (ids are text)
    }
    samples = read.samples.sort("row_index")
    assert samples["row_index"].to_list() == [1, 12, 14]
    assert samples["instruction"].to_list() == ["Q1", "Q2", "Reverse a list."]  # Alpaca: input alone
    assert samples["id"].to_list() == [None, "7", None]
    # Every stored string encodes: the quarantine frame writes (the bad key is escaped in the detail).
    read.quarantine.write_parquet(tmp_path / "q.parquet")


def _peak_rss_of(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh process; its own peak RSS in MiB (the high-water mark inherited
    through fork is reset first) and what it printed."""
    prologue = "from pathlib import Path\nPath('/proc/self/clear_refs').write_text('5')\n"
    epilogue = (
        "\nimport re\nprint(int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1]) / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", prologue + code + epilogue], capture_output=True, text=True, check=True
    )
    *out, peak = done.stdout.strip().splitlines()
    return float(peak), "\n".join(out)


@pytest.mark.slow
def test_a_gzip_bomb_is_read_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as handle:
        handle.write(json.dumps({"instruction": "Q", "response": "A"}).encode() + b"\n")
        block = b"\x00" * (1 << 20)
        for _ in range(512):  # a 512 MiB line without a newline
            handle.write(block)
        handle.write(b"\n" + json.dumps({"instruction": "Q2", "response": "A2"}).encode() + b"\n")
    assert bomb.stat().st_size < 4 << 20
    peak, out = _peak_rss_of(
        f"from qaq_assets.lib.ingest.shard_reader import read_shard\nr = read_shard({str(bomb)!r}, 'b')\n"
        "print(r.samples.height, r.quarantine['reason'].to_list())"
    )
    assert out == "2 ['record_too_large']"
    assert peak < 400, f"peak RSS {peak:.0f} MiB while reading a 512 MiB line"
