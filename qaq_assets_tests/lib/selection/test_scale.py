"""Curation at scale: features stored once at ingest, near-duplicates from stored band keys,
text-free curated versions that still export byte-identically, older lakes still curating."""

import glob
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from qaq_assets.benchmarks.scale import write_shard
from qaq_assets.lib.ingest.codecheck import check_code
from qaq_assets.lib.ingest.decontamination import load_benchmarks
from qaq_assets.lib.ingest.features import sample_features, signature_array
from qaq_assets.lib.ingest.record_fields import text_sha
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.reports.export import export_curated
from qaq_assets.lib.selection import curation
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.curation import CurationError, _with_features
from qaq_assets.lib.selection.dedup import MAX_PAIRS, minhash, near_duplicate_twins, near_duplicates
from qaq_assets.lib.store.tables import (
    CURATED_SUBSET,
    CURATION_RUNS,
    QAQ_SCORES,
    RAW_SAMPLES,
    SAMPLE_FEATURES,
    TEXT_COLUMNS,
)
from qaq_assets_tests.helpers import CODE_PAIRS, REPO, graph, materialize_all, write_jsonl

DATA = REPO / "data"
BUDGET = {"ops": {"curated_subset": {"config": {"budget": 0.25}}}}


def test_stored_features_equal_a_recomputation(lake, tmp_path, make_shard):
    materialize_all(lake, [make_shard("one", CODE_PAIRS)])
    stored = lake.scan(SAMPLE_FEATURES).collect().sort("row_index")
    raw = lake.scan(RAW_SAMPLES).collect().sort("row_index")
    assert stored.select("row_index", "sample_id").equals(raw.select("row_index", "sample_id"))
    assert stored["query_sha"].to_list() == [text_sha(t) for t in raw["instruction"]]
    assert stored["answer_sha"].to_list() == [text_sha(t) for t in raw["response"]]
    checks = [check_code(q, a) for q, a in zip(raw["instruction"], raw["response"], strict=True)]
    assert stored["code_status"].to_list() == [check.status for check in checks]
    assert stored["answer_language"].to_list() == [check.language for check in checks]
    texts = (raw["instruction"] + "\n" + raw["response"]).to_list()
    signatures = signature_array(stored["minhash"].to_list())
    for text, signature in zip(texts, signatures, strict=True):
        assert (signature == minhash(text).hashvalues).all()  # datasketch's own MinHash, bit for bit
    recomputed = sample_features(raw, load_benchmarks(("humaneval",)))  # the default decontamination
    assert stored.equals(recomputed.select(stored.columns))


def _canonical(paths: list[Path]) -> pl.DataFrame:
    frames = [read_shard(path, path.name.split(".")[0]).samples for path in paths]
    return pl.concat(frames).sort("shard", "row_index").unique("sample_id", keep="first", maintain_order=True)


@pytest.mark.parametrize("data", ["shards", "heldout", "planted"])
def test_band_key_near_duplicates_equal_the_lsh_index(data, tmp_path):
    if data == "planted":  # 4% exact or one-word-changed copies, as the scale bench plants them
        paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
        for seed, path in enumerate(paths):
            write_shard(path, 300, seed)
    else:
        paths = [Path(p) for p in sorted(glob.glob(str(DATA / data / "*.jsonl")))]
    canonical = _canonical(paths)
    texts = (canonical["instruction"] + "\n" + canonical["response"]).to_list()
    features = sample_features(canonical).with_columns(position=pl.int_range(pl.len()))
    signatures = signature_array(features["minhash"].to_list())
    found = 0
    for threshold in (0.85, 0.7, 0.5):
        expected = near_duplicates(texts, threshold)
        for max_pairs in (MAX_PAIRS, 0):  # every pair at once, and each sample in order
            found_here = near_duplicate_twins(features, lambda positions: signatures[positions], threshold, max_pairs)
            assert found_here == expected
        found += len(expected)
    assert found > 0  # the comparison saw near-duplicates, not only their absence


def test_a_curated_version_stores_decisions_not_text_and_exports_identically_later(lake, tmp_path):
    shard = write_jsonl(tmp_path / "one.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    materialize_all(lake, [shard])
    first = lake.version(CURATED_SUBSET)
    assert not set(TEXT_COLUMNS) & set(lake.scan(CURATED_SUBSET).collect_schema().names())
    before = {fmt: tmp_path / f"v1.{fmt}" for fmt in ("messages-jsonl", "alpaca-jsonl", "parquet")}
    for fmt, out in before.items():
        export_curated(lake, out, fmt, version=first)

    # The same file lands again with changed text (an update), and a newer curation follows.
    changed = [{"instruction": q + " Please.", "response": a} for q, a in CODE_PAIRS]
    write_jsonl(shard, changed)
    materialize_all(lake, [shard], budget=0.5)
    assert lake.version(CURATED_SUBSET) > first
    for fmt, out in before.items():
        again = tmp_path / f"again.{fmt}"
        export_curated(lake, again, fmt, version=first)
        assert again.read_bytes() == out.read_bytes(), fmt
    latest = tmp_path / "latest.jsonl"
    export_curated(lake, latest, "messages-jsonl")
    assert json.loads(latest.read_text().splitlines()[0])["messages"][0]["content"].endswith(" Please.")


def test_a_lake_from_the_previous_release_still_exports_and_curates(lake, tmp_path):
    shard = write_jsonl(tmp_path / "one.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    materialize_all(lake, [shard])
    fresh = lake.scan(CURATED_SUBSET).collect().drop("curation_id").sort("row_index")
    # What the previous release left: text in curated_subset, no sample_features table.
    raw = lake.scan(RAW_SAMPLES).collect().select("shard", "row_index", *TEXT_COLUMNS).drop("original")
    old_rows = lake.scan(CURATED_SUBSET).collect().join(raw, on=["shard", "row_index"])
    old_version = lake.overwrite(CURATED_SUBSET, old_rows.with_columns(curation_id=pl.lit("old-release")))
    lineage = lake.scan(CURATION_RUNS).collect()  # its own curation, recorded as that release did
    lake.append(CURATION_RUNS, lineage.with_columns(curation_id=pl.lit("old-release"), curated_version=old_version))
    shutil.rmtree(lake.uri(SAMPLE_FEATURES))
    # That version keeps its own text (its lineage is the curation whose id its rows carry).
    out = tmp_path / "old.jsonl"
    assert export_curated(lake, out, "messages-jsonl", version=old_version) == 3
    # A new curation (nothing re-ingested) computes the missing features from the text, with the
    # same decisions as on the fresh lake.
    resources, (*_, curated) = graph(lake)
    assert dg.materialize([curated], resources=resources, run_config=BUDGET).success
    again = lake.scan(CURATED_SUBSET).collect().drop("curation_id").sort("row_index")
    assert again.select(fresh.columns).equals(fresh)


def test_features_reach_their_rows_as_a_left_join_would():
    canonical = pl.DataFrame(
        {"shard": ["b", "a", "a", "b", "c"], "row_index": [0, 2, 0, 5, 1], "sample_id": ["s1", "s2", "s3", "s4", "s5"]}
    )
    # Shuffled, with rows of a shard curation does not ask for, and none for ("c", 1).
    features = pl.DataFrame(
        {
            "shard": ["a", "z", "b", "a", "b", "a"],
            "row_index": [0, 0, 5, 2, 0, 1],
            "code_status": ["valid", "stub", "no_code", "cut_off", "valid", "stub"],
            "band_keys": [[1], [2], [3], [4], [5], [6]],
        }
    )
    expected = canonical.join(features, on=["shard", "row_index"], how="left", maintain_order="left")
    assert _with_features(canonical, features).equals(expected)
    # The shard and row are joined as one integer: a row number it cannot hold is refused.
    with pytest.raises(CurationError, match="2\\^32"):
        _with_features(canonical.with_columns(row_index=pl.lit(2**32, pl.Int64)), features)


def test_a_rule_that_returns_its_rows_reordered_is_refused_not_paired_with_other_samples(lake, tmp_path, monkeypatch):
    shard = write_jsonl(tmp_path / "one.jsonl", [{"instruction": q, "response": a} for q, a in CODE_PAIRS])
    materialize_all(lake, [shard])
    model_key = lake.scan(QAQ_SCORES).select("model_key").unique().collect().item()
    rule = curation.select
    monkeypatch.setattr(curation, "select", lambda *args: rule(*args).reverse())
    with pytest.raises(CurationError, match="out of the candidates' order"):
        curation.curate(lake, [model_key], SelectionConfig(), "reordered")


def test_stable_decisions_keep_a_rows_earlier_decision_only_for_the_same_sample(lake):
    def rows(shard_rows, sample_ids, decisions, codes):
        frame = pl.DataFrame(
            {
                "shard": [shard for shard, _ in shard_rows],
                "row_index": [row for _, row in shard_rows],
                "sample_id": sample_ids,
                "decision": decisions,
                "reason_code": codes,
                "reason": [f"{code or 'old'}: why" for code in codes],
            }
        )
        return CURATED_SUBSET.conform(frame, optional=tuple(CURATED_SUBSET.schema))

    earlier = rows([("a", 0), ("a", 1), ("b", 0)], ["s0", "s1", "s2"], ["keep", "keep", "drop"], ["in", None, "low"])
    lake.overwrite(CURATED_SUBSET, earlier)
    now = rows(
        [("b", 0), ("a", 1), ("a", 0), ("c", 0)],  # in another order; ("a", 0) holds another text now
        ["s2", "s1", "s0-edited", "s3"],
        ["keep", "drop", "drop", "keep"],
        ["in", "high", "high", "in"],
    )
    kept = curation._keep_earlier_decisions(lake, now)
    assert kept["sample_id"].to_list() == now["sample_id"].to_list()
    assert kept["decision"].to_list() == ["drop", "keep", "drop", "keep"]
    # A version written before reason codes existed has none: the new code stands beside the old decision.
    assert kept["reason_code"].to_list() == ["low", "high", "high", "in"]
    assert kept["reason"].to_list() == ["low: why", "old: why", "high: why", "in: why"]


def test_signatures_are_read_a_file_at_a_time_in_groups_of_whole_files():
    ranges = pl.DataFrame(
        {
            "path": ["one", "two", "three", "four", "lost-stats"],
            "first_shard": ["s00", "s05", "s10", "s11", None],
            "last_shard": ["s04", "s09", "s10", "s11", None],
        }
    )
    wanted = pl.Series([f"s{i:02d}" for i in (1, 3, 5, 6, 9, 10, 11, 20, 21, 22)])
    groups = [group.to_list() for group in curation.shards_by_file(wanted, ranges, at_least=2)]
    # A file's shards stay together; single-shard files join until a group has two; shards no
    # file's statistics place come last, two at a time.
    assert groups == [["s01", "s03"], ["s05", "s06", "s09"], ["s10", "s11"], ["s20", "s21"], ["s22"]]
