"""The head's log-softmax-and-gather: the GPU's fused reduction equals the CPU's blocked one."""

import pytest
import torch

from qaq_assets.lib.scoring.engine.output_head import OutputHead, target_logprobs_blocked, target_logprobs_fused
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
    blocked = OutputHead(model, reduction="blocked", chunk_elements=64 * model.config.vocab_size)
    fused = OutputHead(model, compile=True, reduction="fused", chunk_elements=64 * model.config.vocab_size)
    assert (blocked.reduction, fused.compiled) == ("blocked", HAS_CXX)
    with torch.inference_mode():
        torch.testing.assert_close(fused.target_logprobs(hidden, targets), blocked.target_logprobs(hidden, targets))
    assert OutputHead(model).reduction == "blocked"  # the CPU's default


@pytest.mark.skipif(not HAS_CXX, reason="compiling needs a C++ compiler on CPU")
def test_the_compiled_head_serves_every_chunk_with_one_graph_specialised_to_the_vocabulary(tiny_model):
    model = tiny_model.model
    head = OutputHead(model, compile=True, reduction="fused")
    assert head.compiled
    vocab = model.config.vocab_size
    with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (64, 44, 300, 2):
            logits = torch.randn(rows, vocab)
            head._fused(logits, torch.zeros(rows, dtype=torch.long), head.softcap)
        # The width is a constant of the graph: another one is a new graph.
        with pytest.raises(Exception, match="[Rr]ecompil"):
            head._fused(torch.randn(5, vocab + 1), torch.zeros(5, dtype=torch.long), head.softcap)
