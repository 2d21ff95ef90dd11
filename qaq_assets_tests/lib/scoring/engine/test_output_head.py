"""The head's log-softmax-and-gather: the GPU's fused reduction equals the CPU's blocked one."""

import pytest
import torch

from qaq_assets.lib.scoring.engine.output_head import (
    OutputHead,
    target_logprobs_blocked,
    target_logprobs_fused,
    target_logprobs_vocab_blocked,
)
from qaq_assets_tests.helpers import HAS_CXX


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_and_blocked_reductions_agree_with_log_softmax(softcap, dtype):
    torch.manual_seed(0)
    logits = (torch.randn(37, 1000) * 8).to(dtype)
    targets = torch.randint(0, 1000, (37,))
    scores = logits.float() if softcap is None else torch.tanh(logits.float() / softcap) * softcap
    expected = torch.log_softmax(scores, dim=-1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(target_logprobs_fused(logits, targets, softcap), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(target_logprobs_blocked(logits, targets, softcap, 5), expected, atol=1e-5, rtol=0)


def test_the_compiled_fused_head_scores_like_the_blocked_one(tiny_model):
    model = tiny_model.model
    torch.manual_seed(1)
    hidden = torch.randn(300, model.config.hidden_size)
    targets = torch.randint(0, model.config.vocab_size, (300,))
    blocked = OutputHead(model, reduction="blocked", chunk_elements=64 * model.config.vocab_size, head="logits")
    fused = OutputHead(
        model, compile=True, reduction="fused", chunk_elements=64 * model.config.vocab_size, head="logits"
    )
    assert (blocked.reduction, fused.compiled) == ("blocked", HAS_CXX)
    with torch.inference_mode():
        torch.testing.assert_close(fused.target_logprobs(hidden, targets), blocked.target_logprobs(hidden, targets))
    assert OutputHead(model, head="logits").reduction == "blocked"  # the CPU's default
    assert OutputHead(model).head == "vocab-blocks"  # the CPU's default head


@pytest.mark.skipif(not HAS_CXX, reason="compiling needs a C++ compiler on CPU")
def test_the_compiled_head_serves_every_chunk_with_one_graph_specialised_to_the_vocabulary(tiny_model):
    model = tiny_model.model
    head = OutputHead(model, compile=True, reduction="fused", head="logits")
    assert head.compiled
    vocab = model.config.vocab_size
    with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (64, 44, 300, 2):
            logits = torch.randn(rows, vocab)
            head._fused(logits, torch.zeros(rows, dtype=torch.long), head.softcap)
        # The width is a constant of the graph: another one is a new graph.
        with pytest.raises(Exception, match="[Rr]ecompil"):
            head._fused(torch.randn(5, vocab + 1), torch.zeros(5, dtype=torch.long), head.softcap)


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab_block", [1, 7, 256, 1000, 4096])
def test_vocabulary_blocks_give_the_log_softmax_of_the_whole_matmul(softcap, dtype, vocab_block):
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(37, 24).to(dtype), torch.randn(1000, 24).to(dtype), torch.randn(1000).to(dtype)
    # Targets in the first and last column, and at block edges.
    targets = torch.cat(
        [torch.tensor([0, 999, min(vocab_block - 1, 999), min(vocab_block, 999)]), torch.randint(0, 1000, (33,))]
    )
    logits = torch.nn.functional.linear(hidden, weight, bias)
    blocked = target_logprobs_vocab_blocked(hidden, weight, bias, targets, softcap, vocab_block)
    whole = target_logprobs_fused(logits, targets, softcap)
    torch.testing.assert_close(blocked, whole, atol=1e-5, rtol=0)


def test_the_vocab_blocks_head_scores_like_the_logits_head_without_a_logits_tensor(tiny_model):
    model = tiny_model.model
    vocab = model.config.vocab_size
    torch.manual_seed(2)
    hidden, targets = torch.randn(300, model.config.hidden_size), torch.randint(0, vocab, (300,))
    logits_head = OutputHead(model, head="logits")
    blocks_head = OutputHead(model, head="vocab-blocks", vocab_block=vocab // 3, chunk_elements=64 * (vocab // 3))
    assert blocks_head.chunk_rows == 64 and blocks_head.vocab_block == vocab // 3
    seen = []
    original = torch.nn.functional.linear

    def recording(input, weight, bias=None):
        seen.append(tuple(weight.shape))
        return original(input, weight, bias)

    with torch.inference_mode():
        expected = logits_head.target_logprobs(hidden, targets)
        torch.nn.functional.linear = recording
        try:
            got = blocks_head.target_logprobs(hidden, targets)
        finally:
            torch.nn.functional.linear = original
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert seen and max(rows for rows, _ in seen) <= vocab // 3 + 1  # never the whole vocabulary
    with pytest.raises(ValueError, match="head must be one of"):
        OutputHead(model, head="cut")
