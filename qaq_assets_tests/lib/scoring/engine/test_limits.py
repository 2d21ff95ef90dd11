"""Limits: over-long samples follow the recorded truncation policy; models that cannot load
say what to do."""

import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.local import LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.engine.models import ModelLoadError, ModelSpec, load_model
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets_tests.helpers import rows_of, write_jsonl


def test_over_long_samples_are_truncated_and_flagged_per_row(lake, tmp_path, tiny_model):
    path = write_jsonl(
        tmp_path / "long.jsonl",
        [
            {"instruction": "short question", "response": "y" * 5000},
            {"instruction": "q" * 5000, "response": "short answer"},
            {"instruction": "fits", "response": "fine"},
        ],
    )
    layouts = build_layouts("plain", tiny_model.tokenizer)
    scorer = PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id)
    result = score_shard(
        lake,
        read_shard(path, "long").samples,
        "long",
        LocalBackend(tiny_model, scorer, ScorerOptions(max_sequence_tokens=512)),
    )
    rows = {r["n_query_tokens"]: r for r in rows_of(lake, result).iter_rows(named=True)}
    # The query keeps room for the whole 12-token answer (under the 16-token floor).
    long_answer, long_query, fits = rows[14], rows[512 - layouts.overhead - len("short answer")], rows[4]
    assert (long_answer["answer_truncated"], long_answer["query_truncated"]) == (True, False)
    assert long_answer["n_answer_tokens"] == 512 - layouts.overhead - 14
    assert (long_query["answer_truncated"], long_query["query_truncated"]) == (False, True)
    assert not (fits["answer_truncated"] or fits["query_truncated"])
    assert {r["truncation_policy"] for r in rows.values()} == {"truncate-answer-tail-v1"}


@pytest.mark.parametrize(
    "spec, hint",
    [
        ("nonexistent/dir", "is not a bundled alias"),
        ("random:no-such-arch", "unknown random architecture"),
    ],
)
def test_a_model_that_cannot_load_says_what_to_do(spec, hint):
    with pytest.raises(ModelLoadError, match=hint):
        load_model(spec)


def test_a_directory_without_weights_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="no weight files"):
        load_model(str(tmp_path))


def test_cuda_requested_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model("random:tiny-llama", device="cuda")


def test_model_keys_are_validated():
    assert ModelSpec.parse("strong=/models/deepseek-coder").key == "strong"
    assert ModelSpec.parse("/models/Qwen3-0.6B").key == "Qwen3-0.6B"
    with pytest.raises(ValueError, match="model key"):
        ModelSpec.parse("bad key|x=random:tiny-llama")


def test_gemma_alias_says_how_to_install_it_when_missing(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("gemma3_270m") else real_find_spec(name, *a),
    )
    with pytest.raises(ModelLoadError, match="make setup-gemma"):
        load_model("gemma3-270m")
