"""Scoring with packed passes equals padded passes and the naive reference; passes are pipelined."""

import copy

import numpy as np
import pytest
import torch

from qaq_assets.lib.scoring.engine import packed_attention
from qaq_assets.lib.scoring.engine.host_to_device import pins
from qaq_assets.lib.scoring.engine.pass_transfer import PendingLogprobs
from qaq_assets.lib.scoring.engine.passes import lay_out, plan
from qaq_assets.lib.scoring.engine.reference import mean_nlls, naive_pair_logprobs
from qaq_assets.lib.scoring.engine.scorer import PairScorer, tokenize_pairs
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets_tests.helpers import CODE_PAIRS

pytestmark = pytest.mark.filterwarnings("ignore:.*without torch.compile")


@pytest.fixture
def layouts(tiny_model):
    return build_layouts("chat", tiny_model.tokenizer)


@pytest.fixture
def pairs(tiny_model, layouts):
    queries, answers = zip(*CODE_PAIRS, strict=True)
    # Lengths from a few dozen to several hundred tokens: sequences share attention blocks and span them.
    queries = [query * (1 + i % 4) for i, query in enumerate(queries)]
    answers = [answer * (1 + i % 5) for i, answer in enumerate(answers)]
    return tokenize_pairs(tiny_model.tokenizer, layouts, queries, answers, 2048)


def scorer_for(model, layouts, pad, **options):
    # fused-eager: eager FlexAttention, the packed path's check on a machine where it does not compile.
    return PairScorer(model, layouts, pad, forward="fused-eager", **options)


def test_packed_passes_score_like_padded_passes_and_the_naive_reference(tiny_model, layouts, pairs):
    pad = tiny_model.tokenizer.pad_token_id
    packed = scorer_for(tiny_model.model, layouts, pad, attention="packed", batch_tokens=1024)
    padded = scorer_for(tiny_model.model, layouts, pad, attention="padded", batch_tokens=1024)
    assert (packed.layout, padded.layout) == ("packed", "padded")
    assert packed.describe_forward().endswith("packed attention (flex, eager), vocab-blocks head")
    packed_scores, padded_scores = packed.score(pairs), padded.score(pairs)
    assert packed_scores.stats.passes > 1 and packed_scores.stats.real_tokens == padded_scores.stats.real_tokens
    for a, b in zip(packed_scores, padded_scores, strict=True):
        for field in ("query", "answer_given_query", "answer", "query_given_answer", "answer_end"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-5)
    naive = mean_nlls([naive_pair_logprobs(tiny_model.model, layouts, pair) for pair in pairs])
    np.testing.assert_allclose(mean_nlls(packed_scores), naive, atol=1e-5)


def test_packed_passes_agree_with_padded_passes_in_bf16(tiny_model, layouts, pairs):
    model = copy.deepcopy(tiny_model.model).to(torch.bfloat16)
    pad = tiny_model.tokenizer.pad_token_id
    packed = mean_nlls(scorer_for(model, layouts, pad, attention="packed").score(pairs))
    padded = mean_nlls(scorer_for(model, layouts, pad, attention="padded").score(pairs))
    # Mean NLLs of bf16 activations: the two attention kernels round differently.
    np.testing.assert_allclose(packed, padded, atol=0.05)


def test_packed_layout_needs_the_fused_forward_and_a_compiled_flex_attention(tiny_model, layouts, monkeypatch):
    pad = tiny_model.tokenizer.pad_token_id
    assert PairScorer(tiny_model.model, layouts, pad, forward="reference", attention="packed").layout == "padded"
    assert PairScorer(tiny_model.model, layouts, pad).layout == "padded"  # auto on CPU

    def no_compiler(function, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("no compiler")

        return fails

    monkeypatch.setattr(packed_attention.torch, "compile", no_compiler)
    fresh = copy.deepcopy(tiny_model.model)  # a decoder of its own, not yet probed
    scorer = PairScorer(fresh, layouts, pad, forward="fused", attention="packed")
    assert scorer.layout == "padded" and scorer.describe_forward().endswith("padded attention, vocab-blocks head")
    with pytest.raises(ValueError, match="attention must be one of"):
        PairScorer(tiny_model.model, layouts, pad, attention="dense")


def test_the_next_pass_is_launched_before_the_previous_results_are_read(tiny_model, layouts, pairs, monkeypatch):
    events = []
    launch, wait = PairScorer._launch, PendingLogprobs.wait

    def launching(self, host):
        events.append(("launch", tuple(host.planned.members)))
        return launch(self, host)

    def waiting(self):
        events.append(("wait", tuple(self.host.planned.members)))
        return wait(self)

    monkeypatch.setattr(PairScorer, "_launch", launching)
    monkeypatch.setattr(PendingLogprobs, "wait", waiting)
    passes = []
    scorer = scorer_for(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id, attention="packed")
    result = scorer.score(pairs, on_pass=lambda sequences, tokens: passes.append(sequences), batch_tokens=512)
    launched = [members for kind, members in events if kind == "launch"]
    assert len(launched) == result.stats.passes >= 3 and sum(passes) == 2 * len(pairs)
    expected = [("launch", launched[0])]
    for previous, following in zip(launched, launched[1:], strict=False):
        expected += [("launch", following), ("wait", previous)]
    assert events == expected + [("wait", launched[-1])]


def test_out_of_memory_in_a_packed_pass_backs_off_after_reading_the_pass_in_flight(tiny_model, layouts, pairs):
    pad = tiny_model.tokenizer.pad_token_id
    expected = scorer_for(tiny_model.model, layouts, pad, attention="packed").score(pairs)
    backing_off = scorer_for(tiny_model.model, layouts, pad, attention="packed", batch_tokens=2048)
    hidden_rows, launched = backing_off.hidden_rows, []

    def out_of_memory_above(device_pass):
        launched.append(device_pass.rows)
        if len(launched) == 2:  # the first pass is still in flight
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return hidden_rows(device_pass)

    backing_off.hidden_rows = out_of_memory_above
    result = backing_off.score(pairs)
    assert result.stats.batch_tokens == 1024 and max(launched[2:]) <= 1024 < launched[1]
    for a, b in zip(expected, result, strict=True):
        np.testing.assert_allclose(a.query_given_answer, b.query_given_answer, atol=1e-5)


def test_results_come_back_through_pinned_memory_only_on_cuda():
    assert not pins(torch.device("cpu"))
    assert pins(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_passes_copy_through_pinned_memory(tiny_model, layouts, pairs):
    model = copy.deepcopy(tiny_model.model).cuda()
    scorer = PairScorer(model, layouts, tiny_model.tokenizer.pad_token_id, attention="packed")
    sequences = scorer.sequences(pairs[:2])
    [planned] = plan(scorer.layout, [s.ids.shape[0] for s in sequences], 4096, 64)
    pending = scorer._launch(lay_out(planned, sequences, tiny_model.tokenizer.pad_token_id))
    assert pending._buffer.is_pinned() and len(pending.wait()) == 4
