"""Users' data as it comes: every common SFT format, answers in 15 languages, conversations of
one to six exchanges, folders and globs, fields named otherwise, a cut JSON array."""

import json

import polars as pl
import pytest

from qaq_assets.lib.ingest.codecheck import UNUSABLE, check_code
from qaq_assets.lib.ingest.registry import shard_files
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, QUARANTINE, RAW_SAMPLES, SAMPLE_FEATURES
from qaq_assets_tests.helpers import TINY_FLAGS, qaq, write_jsonl
from qaq_assets_tests.users_data import LANGUAGES, PROGRAMS, conversations, write_all


@pytest.fixture(scope="module")
def users_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("users") / "mixed"
    return root, write_all(root)


def test_every_format_in_a_folder_is_one_shard_per_file_and_nothing_maps_to_quarantine(users_data):
    root, written = users_data
    files, refused = shard_files([root])
    assert refused == {}
    keys = {file.path.relative_to(root.resolve()).as_posix(): file.shard for file in files}
    assert set(keys) == set(written)  # the dataset's metadata files are not data
    assert keys["tables/prompts.csv"] == "mixed__tables__prompts"
    assert keys["hf_dataset/data-00000-of-00001.arrow"] == "mixed__hf_dataset__data-00000-of-00001"
    for file in files:
        read = read_shard(file.path, file.shard)
        expected = written[file.path.relative_to(root.resolve()).as_posix()]
        assert (read.rows_read, read.samples.height, read.quarantine.height) == (expected, expected, 0), file.shard


def test_a_glob_keys_files_by_their_path_below_it(users_data):
    root, _ = users_data
    files, refused = shard_files([str(root / "**" / "*.csv"), str(root / "*.json")])
    assert refused == {}
    assert sorted(file.shard for file in files) == ["alpaca_data", "object", "tables__prompts"]
    assert shard_files([str(root / "*.nothing")])[1] == {
        str(root / "*.nothing"): f"{root}/*.nothing: no data file matches"
    }


def test_conversations_keep_every_turn_and_score_the_last_answer_given_the_history():
    records = conversations()
    path_rows = [(record, turns) for record in records if len(turns := record["conversations"]) > 0]
    read = read_shard(write_jsonl(_tmp() / "c.jsonl", records), "c")
    assert read.quarantine.height == 0
    for (record, turns), row in zip(path_rows, read.samples.iter_rows(named=True), strict=True):
        dialogue = [t for t in turns if t["from"] != "system"]
        assert row["response"] == turns[-1]["value"]
        if len(dialogue) == 2:
            assert row["instruction"] == dialogue[0]["value"]
        else:  # the history, every turn, as User:/Assistant: paragraphs
            assert row["instruction"].startswith(f"User: {dialogue[0]['value']}\n\nAssistant: ")
            assert row["instruction"].endswith(f"User: {dialogue[-2]['value']}")
        whole = len(dialogue) > 2 or len(dialogue) != len(turns)
        assert (row["conversation"] is not None) == whole
        if whole:
            assert [t["content"] for t in row["conversation"]] == [t["value"] for t in turns]
        assert row["record_style"] == "sharegpt" and row["id"] == record["id"]


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp())


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"conversations": [{"from": "human", "value": "Q"}]}, "missing_response"),
        ({"conversations": [{"from": "gpt", "value": "A"}]}, "missing_instruction"),
        ({"conversations": [{"from": "alien", "value": "Q"}]}, "unknown_role"),
        ({"messages": "not a list"}, "wrong_type"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "wrong_type"),
    ],
)
def test_broken_conversations_are_quarantined_with_their_reason(tmp_path, record, reason):
    good = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Q"}]},
            {"role": "assistant", "content": "A"},
        ]
    }
    read = read_shard(write_jsonl(tmp_path / "b.jsonl", [good, record]), "b")
    assert read.samples["instruction"].to_list() == ["Q"] and read.quarantine["reason"].to_list() == [reason]


def test_every_answer_language_is_detected_and_its_code_checked():
    for named, canonical, label, code in PROGRAMS:
        for answer in (code, f"```{label}\n{code}\n```"):
            checked = check_code(f"Write a {named} function that adds two numbers.", answer)
            assert (checked.status, checked.language, checked.requested) == ("valid", canonical, canonical), named
        cut = code[: len(code) // 2]
        assert check_code(f"Write it in {named}.", cut).status in UNUSABLE, named
    python = check_code("Write a Rust function that adds two numbers.", "def add(a, b):\n    return a + b")
    assert (python.status, python.language) == ("other_language", "python")


def test_the_default_rule_never_drops_a_correct_answer_for_its_language(users_data, tmp_path):
    root, written = users_data
    result = qaq("curate", root, "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert result.returncode in (0, 3), result.stderr
    lake = Lake(tmp_path / "lake")
    assert lake.scan(QUARANTINE).collect().height == 0
    assert lake.scan(RAW_SAMPLES).collect().height == sum(written.values())
    features = lake.scan(SAMPLE_FEATURES).collect()
    assert set(features["answer_language"].drop_nulls()) == LANGUAGES
    assert set(features["code_status"]) == {"valid"}
    curated = lake.scan(CURATED_SUBSET).collect()
    assert curated.filter(pl.col("reason_code").str.starts_with("code_")).height == 0
    assert set(curated["answer_language"].drop_nulls()) == LANGUAGES


def test_exports_write_conversations_back_whole_with_their_ids(tmp_path):
    records = conversations()
    shard = write_jsonl(tmp_path / "conv.jsonl", records)
    lake = tmp_path / "lake"
    qaq("curate", shard, "--lake", lake, *TINY_FLAGS, "--budget", "1", "--strategy", "rmi-band")
    by_id = {record["id"]: record for record in records}
    out = tmp_path / "train.jsonl"
    assert qaq("export", "--lake", lake, "--out", out).returncode == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == len(records)
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    for record in exported:
        source = by_id[record["id"]]["conversations"]
        assert record["messages"] == [{"role": roles[t["from"]], "content": t["value"]} for t in source]
    original = tmp_path / "original.jsonl"
    assert qaq("export", "--lake", lake, "--out", original, "--format", "original").returncode == 0
    for line in original.read_text().splitlines():
        record = json.loads(line)
        assert record["conversations"] == by_id[record["id"]]["conversations"]
    parquet = tmp_path / "train.parquet"  # the format from the extension
    assert qaq("export", "--lake", lake, "--out", parquet).returncode == 0
    assert pl.read_parquet(parquet).height == len(records)
    refused = qaq("export", "--lake", lake, "--out", tmp_path / "train.txt")
    assert refused.returncode == 2 and "cannot tell the format from .txt; pass --format" in refused.stderr


def test_fields_named_otherwise_get_one_line_naming_them_and_the_flag(tmp_path):
    rows = [
        {"text_in": f"Write f{i} in Python.", "text_out": f"def f{i}():\n    return {i}", "tag": "x"} for i in range(6)
    ]
    shard = write_jsonl(tmp_path / "custom.jsonl", rows)
    refused = qaq("curate", shard, "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert refused.returncode == 2  # no usable file
    assert (
        "no record maps to an instruction and a response (fields found: text_in, text_out, tag); "
        "map them with --fields instruction=FIELD,response=FIELD" in refused.stderr
    )
    mapped = qaq(
        "curate", shard, "--lake", tmp_path / "lake", *TINY_FLAGS, "--fields", "instruction=text_in,response=text_out"
    )
    assert mapped.returncode in (0, 3), mapped.stderr
    assert Lake(tmp_path / "lake").scan(RAW_SAMPLES).collect().height == 6
    bad = qaq("curate", shard, "--lake", tmp_path / "lake2", *TINY_FLAGS, "--fields", "question=text_in")
    assert bad.returncode == 2 and "--fields (QAQ_FIELDS) must match" in bad.stderr


def test_a_cut_json_array_keeps_its_whole_records_and_quarantines_the_rest(tmp_path):
    records = [{"instruction": f"Q{i}", "output": f"def f{i}():\n    return {i}"} for i in range(10)]
    text = json.dumps(records, indent=2)
    path = tmp_path / "alpaca_data.json"
    path.write_text(text[: len(text) * 7 // 10])
    read = read_shard(path, "a")
    assert 5 <= read.samples.height < 10 and read.quarantine["reason"].to_list() == ["malformed_json"]
    assert read.samples["instruction"].to_list() == [f"Q{i}" for i in range(read.samples.height)]
    detail = read.quarantine["detail"][0]
    assert "the rest of the array is unreadable" in detail or "the array is not closed" in detail


def test_an_odd_result_is_said_without_verbose_and_exits_3(tmp_path):
    prose = [
        {"instruction": f"Explain idea {i}.", "response": f"Idea {i} is about many things in life."} for i in range(12)
    ]
    result = qaq("curate", write_jsonl(tmp_path / "prose.jsonl", prose), "--lake", tmp_path / "lake", *TINY_FLAGS)
    assert result.returncode == 3, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert any(
        "the checks removed 12 of 12 samples (code_no_code" in w and "--strategy rmi-band" in w for w in warnings
    )
    assert any("kept 0 samples, fewer than the budget's 3" in w for w in warnings)


def _dataset_folder(root, files=3, rows=10):
    """A Hugging Face save_to_disk folder as datasets writes it: Arrow stream files of two
    batches each, state.json listing them, dataset_info.json counting the split's rows."""
    import pyarrow as pa

    root.mkdir(parents=True)
    names, cuts = [], {}
    for index in range(files):
        name = f"data-{index:05d}-of-{files:05d}.arrow"
        pairs = [(f"Task {index}.{row}: add {row}.", f"def f(x):\n    return x + {row}") for row in range(rows)]
        table = pa.table({"instruction": [q for q, _ in pairs], "output": [a for _, a in pairs]})
        with pa.OSFile(str(root / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=rows // 2):
                writer.write_batch(batch)
                cuts.setdefault(name, sink.tell())  # where the first batch ends
        names.append(name)
    (root / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names], "_split": "train"}))
    info = {"splits": {"train": {"name": "train", "num_examples": files * rows}}}
    (root / "dataset_info.json").write_text(json.dumps(info))
    return names, cuts


@pytest.mark.slow  # runs qaq in processes
def test_a_dataset_folder_missing_a_file_or_rows_says_so(tmp_path):
    whole = tmp_path / "whole"
    _dataset_folder(whole)
    files, refused = shard_files([whole])
    assert len(files) == 3 and refused == {}

    missing = tmp_path / "missing"
    names, _ = _dataset_folder(missing)
    (missing / names[1]).unlink()
    result = qaq("curate", missing, "--lake", tmp_path / "lake1", *TINY_FLAGS)
    assert result.returncode == 1
    assert f"{names[1]}: listed in state.json but missing: the dataset folder is incomplete" in result.stderr
    assert Lake(tmp_path / "lake1").scan(RAW_SAMPLES).collect().height == 20

    cut = tmp_path / "cut"
    names, cuts = _dataset_folder(cut)
    with open(cut / names[2], "r+b") as handle:
        handle.truncate(cuts[names[2]])  # at a batch boundary: still a clean stream
    result = qaq("curate", cut, "--lake", tmp_path / "lake2", *TINY_FLAGS)
    assert result.returncode == 1
    assert "its files hold 25 rows where dataset_info.json says the split has 30" in result.stderr
    assert Lake(tmp_path / "lake2").scan(RAW_SAMPLES).collect().height == 25


@pytest.mark.slow  # runs qaq in processes
def test_export_original_writes_each_record_as_it_came_extras_included(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [
        {"prompt": "Add a and b.", "completion": "def add(a, b):\n    return a + b", "score": 0.9, "tags": ["x"]},
        {"instruction": "Reverse s.", "input": "s = 'abc'", "output": "def rev(s):\n    return s[::-1]"},
        {"id": "m1", "messages": [{"role": "user", "content": "Square x."}, {"role": "assistant", "content": "x*x"}]},
        {"question": "Negate x.", "answer": "def neg(x):\n    return -x", "meta": {"$column": "not a marker"}},
    ]
    jsonl = write_jsonl(tmp_path / "mixed.jsonl", records[:3])
    answers = write_jsonl(tmp_path / "qa.jsonl", records[3:])
    table = pa.table(
        {
            "instruction": ["Double x."],
            "response": ["def double(x):\n    return 2 * x"],
            "blob": [b"\x00\xff"],
            "ratio": [float("nan")],
            "at": [datetime.datetime(2026, 12, 7, 1, 2, 3)],
        }
    )
    pq.write_table(table, tmp_path / "extras.parquet")
    lake = tmp_path / "lake"
    fields = ["--fields", "instruction=question,response=answer"]
    for path, extra in ((jsonl, []), (answers, fields), (tmp_path / "extras.parquet", [])):
        result = qaq("curate", path, "--lake", lake, *TINY_FLAGS, "--budget", "1", "--strategy", "random", *extra)
        assert result.returncode == 0, result.stderr
    out = tmp_path / "original.jsonl"
    assert qaq("export", "--lake", lake, "--out", out, "--format", "original").returncode == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    parquet_row = {
        "instruction": "Double x.",
        "response": "def double(x):\n    return 2 * x",
        "blob": {"$base64": "AP8="},
        "ratio": None,  # JSON has no NaN
        "at": "2026-12-07T01:02:03",
    }
    assert sorted(map(json.dumps, exported)) == sorted(map(json.dumps, [*records, parquet_row]))
    extras = Lake(lake).scan(RAW_SAMPLES).filter(pl.col("shard") == "extras").collect()["extra_fields"][0]
    assert json.loads(extras) == {key: parquet_row[key] for key in ("blob", "ratio", "at")}


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def _tool_conversation(content):
    return {
        "id": f"tools-{content!r}",
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": f"What is the weather in Paris? ({content!r})"},
            {"role": "assistant", "content": content, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp": 18}'},
            {"role": "assistant", "content": "It is 18 degrees in Paris."},
        ],
    }


@pytest.mark.slow  # runs qaq in processes
def test_exports_load_in_datasets_and_render_through_a_chat_template(tmp_path):
    import os

    from datasets import load_dataset

    from qaq_assets.lib.scoring.engine.models import tokenizer_of
    from qaq_assets.lib.settings import Settings

    three_exchanges = {
        "id": "multi",
        "messages": [
            {"role": "system", "content": "You write Python."},
            *[
                turn
                for n in range(3)
                for turn in (
                    {"role": "user", "content": f"Write f{n}(x) returning x + {n}."},
                    {"role": "assistant", "content": f"def f{n}(x):\n    return x + {n}"},
                )
            ],
        ],
    }
    records = [
        {"id": "pair", "instruction": "Add a and b.", "response": "def add(a, b):\n    return a + b"},
        three_exchanges,
        _tool_conversation(None),
        _tool_conversation(""),
    ]
    lake = tmp_path / "lake"
    shard = write_jsonl(tmp_path / "chat.jsonl", records)
    curated = qaq("curate", shard, "--lake", lake, *TINY_FLAGS, "--budget", "1", "--strategy", "random")
    assert curated.returncode == 0 and "quarantined=0" in curated.stdout, curated.stderr

    os.umask(0o022)
    out = {
        fmt: tmp_path / f"train.{fmt}.{'parquet' if fmt == 'parquet' else 'jsonl'}"
        for fmt in ("messages-jsonl", "sharegpt-jsonl", "alpaca-jsonl", "parquet")
    }
    for fmt, path in out.items():
        assert qaq("export", "--lake", lake, "--out", path, "--format", fmt).returncode == 0
        assert path.stat().st_mode & 0o777 == 0o644  # the usual mode, not the temporary file's 0600

    messages = {row["id"]: row for row in load_dataset("json", data_files=str(out["messages-jsonl"]))["train"]}
    parquet = {row["id"]: row for row in load_dataset("parquet", data_files=str(out["parquet"]))["train"]}
    assert len(messages) == len(parquet) == 4
    # Tool calls and results come back in the OpenAI format, with the tool definitions.
    for content in (None, ""):
        row = messages[f"tools-{content!r}"]
        assert row["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert row["messages"][2]["tool_call_id"] == "call_1"
        assert row["tools"][0]["function"]["name"] == "get_weather"
    # Every row has messages in Parquet, single-turn ones too.
    assert [m["role"] for m in parquet["pair"]["messages"]] == ["user", "assistant"]
    assert len(parquet["multi"]["messages"]) == 7

    # Rendered as TRL renders a conversational dataset: no empty assistant turn anywhere.
    tokenizer = tokenizer_of(Settings().model_specs[0])
    for row in parquet.values():
        rendered = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert row["messages"][-1]["content"] in rendered
        assert "<|im_start|>assistant\n<|im_end|>" not in rendered

    sharegpt = {row["id"]: row for row in map(json.loads, out["sharegpt-jsonl"].read_text().splitlines())}
    roles = [turn["from"] for turn in sharegpt["tools-None"]["conversations"]]
    assert roles == ["human", "function_call", "observation", "gpt"]  # LLaMA-Factory's tool roles
    assert json.loads(sharegpt["tools-None"]["conversations"][1]["value"]) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert json.loads(sharegpt["tools-None"]["tools"]) == TOOLS
    assert sharegpt["multi"]["system"] == "You write Python."
    assert all(turn["from"] in ("human", "gpt") for turn in sharegpt["multi"]["conversations"])

    alpaca = {row["id"]: row for row in map(json.loads, out["alpaca-jsonl"].read_text().splitlines())}
    assert alpaca["multi"]["instruction"] == "Write f2(x) returning x + 2."
    assert alpaca["multi"]["history"] == [
        [f"Write f{n}(x) returning x + {n}.", f"def f{n}(x):\n    return x + {n}"] for n in range(2)
    ]
    assert alpaca["multi"]["system"] == "You write Python." and "history" not in alpaca["pair"]


@pytest.mark.slow  # runs qaq in processes
def test_a_fields_file_beside_a_landed_file_maps_its_own_columns(tmp_path):
    folder = tmp_path / "sheets"
    folder.mkdir()
    (folder / "usual.csv").write_text('instruction,response\nAdd a and b.,"def add(a, b):\n    return a + b"\n')
    (folder / "odd.csv").write_text('Task,Solution\nNegate x.,"def neg(x):\n    return -x"\n')
    (folder / "chat").mkdir()
    other = json.dumps({"ask": "Square x.", "reply": "def sq(x):\n    return x * x"})
    (folder / "chat" / "other.jsonl").write_text(other + "\n")
    refused = qaq("curate", folder, "--lake", tmp_path / "lake0", *TINY_FLAGS)
    assert refused.returncode == 1 and "odd.csv.fields beside it" in refused.stderr
    (folder / "odd.csv.fields").write_text("instruction=Task\nresponse=Solution\n")
    (folder / "chat" / ".fields").write_text("instruction=ask,response=reply")  # every file of chat/
    lake = tmp_path / "lake"
    result = qaq("curate", folder, "--lake", lake, *TINY_FLAGS, "--budget", "1", "--strategy", "random")
    assert result.returncode == 0, result.stderr
    texts = sorted(Lake(lake).scan(RAW_SAMPLES).collect()["instruction"])
    assert texts == ["Add a and b.", "Negate x.", "Square x."]
    # A changed mapping reads the file again; an unchanged one does not.
    assert "samples_in=0 " in qaq("curate", folder, "--lake", lake, *TINY_FLAGS).stdout
    (folder / "odd.csv.fields").write_text("instruction=Solution\nresponse=Task\n")
    again = qaq("curate", folder, "--lake", lake, *TINY_FLAGS)
    assert "samples_in=1 " in again.stdout, again.stdout
    (folder / "odd.csv.fields").write_text("question=Task")
    bad = qaq("curate", folder, "--lake", lake, *TINY_FLAGS)
    assert bad.returncode == 1 and "odd.csv.fields: 'question=Task' is not ROLE=FIELD" in bad.stderr
