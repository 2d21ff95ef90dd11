"""Scoring exactness, batching, truncation and out-of-memory back-off on a tiny random Llama."""

import numpy as np
import pytest
import torch

from qaq_assets.lib.scoring.engine.passes import plan_batches, plan_passes
from qaq_assets.lib.scoring.engine.scorer import MIN_ANSWER_TOKENS, PairScorer, fit_to_tokens, tokenize_pairs
from qaq_assets.lib.scoring.engine.templates import build_layouts, encode
from qaq_assets_tests.helpers import CODE_PAIRS


def manual_logprobs(model, ids: list[int], start: int) -> np.ndarray:
    """Token-by-token: one full forward, log-softmax over the whole vocabulary, read each target."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return np.array([logprobs[t - 1, ids[t]].item() for t in range(start, len(ids))])


@pytest.fixture(params=["plain", "chat"])
def scorer(request, tiny_model):
    layouts = build_layouts(request.param, tiny_model.tokenizer)
    return PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id, batch_tokens=4096)


def pairs_for(tiny_model, scorer, pairs=CODE_PAIRS):
    queries, answers = zip(*pairs, strict=True)
    return tokenize_pairs(tiny_model.tokenizer, scorer.layouts, queries, answers, 4096)


def test_spans_are_the_same_tokens_in_both_orders_and_exclude_the_template(tiny_model, scorer):
    tokens = pairs_for(tiny_model, scorer)[0]
    assert list(tokens.query_ids) == encode(tiny_model.tokenizer, CODE_PAIRS[0][0])
    qa, aq = scorer.sequences([tokens])
    assert tuple(qa.ids[qa.first[0] : qa.first[1]]) == tokens.query_ids == tuple(aq.ids[aq.second[0] : aq.second[1]])
    assert tuple(qa.ids[qa.second[0] : qa.second[1]]) == tokens.answer_ids == tuple(aq.ids[aq.first[0] : aq.first[1]])
    assert qa.first[0] == len(scorer.layouts.query_first.prefix) >= 1


def test_nll_query_from_the_joint_pass_equals_scoring_the_query_alone(tiny_model, scorer):
    tokens = pairs_for(tiny_model, scorer)
    result = scorer.score(tokens)
    prefix = list(scorer.layouts.query_first.prefix)
    for pair, scores in zip(tokens, result, strict=True):
        alone = manual_logprobs(tiny_model.model, prefix + list(pair.query_ids), len(prefix))
        np.testing.assert_allclose(scores.query, alone, atol=1e-5)


def test_nll_query_given_answer_matches_a_manual_token_by_token_computation(tiny_model, scorer):
    tokens = pairs_for(tiny_model, scorer)
    result = scorer.score(tokens)
    layout = scorer.layouts.answer_first
    for pair, scores in zip(tokens, result, strict=True):
        ids = list(layout.prefix) + list(pair.answer_ids) + list(layout.middle) + list(pair.query_ids)
        manual = manual_logprobs(tiny_model.model, ids, len(ids) - len(pair.query_ids))
        np.testing.assert_allclose(scores.query_given_answer, manual, atol=1e-5)
        answer_alone = manual_logprobs(
            tiny_model.model, list(layout.prefix) + list(pair.answer_ids), len(layout.prefix)
        )
        np.testing.assert_allclose(scores.answer, answer_alone, atol=1e-5)


def test_batched_equals_unbatched_in_float32(tiny_model, scorer):
    tokens = pairs_for(tiny_model, scorer)
    lengths = [len(s.ids) for s in scorer.sequences(tokens)]
    # Several length groups share a pass: attention per group, everything else over the pass.
    assert any(len(groups) > 1 for groups in plan_passes(lengths, scorer.batch_tokens, scorer.max_batch_size))
    batched = scorer.score(tokens)
    assert batched.stats.passes < 2 * len(tokens)
    assert batched.stats.real_tokens == sum(lengths) and 0 <= batched.stats.padding_tokens < sum(lengths)
    for pair, together in zip(tokens, batched, strict=True):
        alone = PairScorer(tiny_model.model, scorer.layouts, tiny_model.tokenizer.pad_token_id).score([pair])[0]
        for field in ("query", "answer_given_query", "answer", "query_given_answer"):
            np.testing.assert_allclose(getattr(together, field), getattr(alone, field), atol=1e-4)


@pytest.mark.parametrize("block_rows", [None, 3])
def test_chunked_output_head_gives_the_same_logprobs(tiny_model, scorer, block_rows):
    tokens = pairs_for(tiny_model, scorer)[:3]
    reference = scorer.score(tokens)
    chunked = PairScorer(
        tiny_model.model, scorer.layouts, tiny_model.tokenizer.pad_token_id, head_chunk_elements=7 * 320, head="logits"
    )
    # Blocks of 3 rows in chunks of 7: the last block of every chunk is partial.
    chunked.head.block_rows = block_rows or 7
    for a, b in zip(reference, chunked.score(tokens), strict=True):
        np.testing.assert_allclose(a.answer_given_query, b.answer_given_query, atol=1e-6)


def test_batches_are_length_sorted_under_the_token_budget_and_padding_cap():
    lengths = [5, 100, 7, 98, 6, 99, 50]
    assert plan_batches(lengths, batch_tokens=200, max_batch_size=8) == [[1, 5], [3], [6], [2], [4], [0]]
    assert plan_batches(lengths, batch_tokens=200, max_batch_size=8, max_padding=1.0) == [[1, 5], [3, 6], [2, 4, 0]]
    lengths = [(i * 37) % 300 + 20 for i in range(500)]
    batches = plan_batches(lengths, batch_tokens=4096, max_batch_size=64)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) * width <= 4096 and len(batch) <= 64
        assert sum(lengths[i] for i in batch) >= 0.95 * len(batch) * width


def test_passes_pack_whole_groups_under_the_token_budget():
    lengths = [5, 100, 7, 98, 6, 99, 50]
    # Groups [[1, 5], [3], [6], [2], [4], [0]] pad to 200, 98, 50, 7, 6, 5 tokens.
    assert plan_passes(lengths, batch_tokens=200, max_batch_size=8) == [[[1, 5]], [[3], [6], [2], [4], [0]]]
    lengths = [(i * 37) % 300 + 20 for i in range(500)]
    groups = plan_batches(lengths, batch_tokens=4096, max_batch_size=64)
    passes = plan_passes(lengths, batch_tokens=4096, max_batch_size=64)
    assert [group for groups_of_pass in passes for group in groups_of_pass] == groups
    padded = [sum(len(g) * max(lengths[i] for i in g) for g in groups_of_pass) for groups_of_pass in passes]
    assert max(padded) <= 4096
    # Packing leaves each pass short of the budget by less than the next pass's first group.
    for tokens, next_pass in zip(padded, passes[1:], strict=False):
        assert tokens + len(next_pass[0]) * max(lengths[i] for i in next_pass[0]) > 4096


class OutOfMemoryAbove:
    """Wraps a scorer's forward and raises like CUDA does when a pass holds more than ``limit`` tokens."""

    def __init__(self, hidden_rows, limit):
        self.hidden_rows, self.limit, self.refused = hidden_rows, limit, 0

    def __call__(self, device_pass):
        if device_pass.rows > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.hidden_rows(device_pass)


def test_out_of_memory_halves_the_batch_budget_and_loses_nothing(tiny_model, scorer):
    tokens = pairs_for(tiny_model, scorer)
    expected = scorer.score(tokens)
    backing_off = PairScorer(tiny_model.model, scorer.layouts, tiny_model.tokenizer.pad_token_id, batch_tokens=100_000)
    backing_off.hidden_rows = OutOfMemoryAbove(backing_off.hidden_rows, limit=600)
    result = backing_off.score(tokens)
    assert backing_off.hidden_rows.refused >= 1
    # The back-off is the call's own: the result says where it ended, the scorer keeps its setting.
    assert result.stats.batch_tokens < 100_000 and backing_off.batch_tokens == 100_000
    refused = backing_off.hidden_rows.refused
    again = backing_off.score(tokens, batch_tokens=result.stats.batch_tokens)
    assert backing_off.hidden_rows.refused == refused and again.stats.batch_tokens == result.stats.batch_tokens
    for a, b in zip(expected, result, strict=True):
        np.testing.assert_allclose(a.query_given_answer, b.query_given_answer, atol=1e-4)


def test_a_single_sequence_that_does_not_fit_raises(tiny_model, scorer):
    failing = PairScorer(tiny_model.model, scorer.layouts, tiny_model.tokenizer.pad_token_id)
    failing.hidden_rows = OutOfMemoryAbove(failing.hidden_rows, limit=1)
    with pytest.raises(torch.OutOfMemoryError):
        failing.score(pairs_for(tiny_model, scorer)[:1])


def test_truncation_cuts_the_answer_tail_first_and_flags_it():
    fitted = fit_to_tokens(list(range(10)), list(range(100, 200)), content_tokens=50)
    assert fitted.query_ids == tuple(range(10)) and fitted.answer_ids == tuple(range(100, 140))
    assert (fitted.query_truncated, fitted.answer_truncated) == (False, True)
    long_query = fit_to_tokens(list(range(100)), list(range(100, 200)), content_tokens=50)
    assert len(long_query.query_ids) == 50 - MIN_ANSWER_TOKENS and len(long_query.answer_ids) == MIN_ANSWER_TOKENS
    assert (long_query.query_truncated, long_query.answer_truncated) == (True, True)
    short = fit_to_tokens([1, 2], [3], content_tokens=50)
    assert (short.query_truncated, short.answer_truncated) == (False, False)


def test_truncated_pairs_are_scored_over_their_kept_tokens(tiny_model, scorer):
    [tokens] = tokenize_pairs(tiny_model.tokenizer, scorer.layouts, ["q" * 40], ["a" * 400], 300)
    assert tokens.answer_truncated and len(tokens.query_ids) + len(tokens.answer_ids) + scorer.layouts.overhead <= 300
    [scores] = scorer.score([tokens])
    assert len(scores.answer_given_query) == len(tokens.answer_ids)


def test_document_start_and_auto_template(tiny_model):
    from qaq_assets.lib.scoring.engine.templates import build_layouts, document_start_id

    tokenizer = tiny_model.tokenizer
    # The byte-level tokenizer adds no BOS itself: documents open with its end-of-text token.
    assert document_start_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert build_layouts("auto", tokenizer).version == "chat-v2"
    template = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        assert build_layouts("auto", tokenizer).version == "plain-v2"
        with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
            build_layouts("chat", tokenizer)
    finally:
        tokenizer.chat_template = template


def test_the_end_of_the_answers_turn_is_scored_after_q_and_a(tiny_model, scorer):
    layout = scorer.layouts.query_first
    tokenizer = tiny_model.tokenizer
    expected_end = "<|im_end|>" if scorer.layouts.version.startswith("chat") else "<|endoftext|>"
    assert [tokenizer.convert_ids_to_tokens(i) for i in layout.end] == [expected_end]
    assert scorer.layouts.answer_first.end == ()  # the reverse order scores no end
    reverse = scorer.layouts.answer_first
    assert scorer.layouts.overhead == max(
        len(layout.prefix) + len(layout.middle) + 1, len(reverse.prefix) + len(reverse.middle)
    )
    tokens = pairs_for(tiny_model, scorer)[:3]
    for pair, scores in zip(tokens, scorer.score(tokens), strict=True):
        ids = [*layout.prefix, *pair.query_ids, *layout.middle, *pair.answer_ids, *layout.end]
        np.testing.assert_allclose(scores.answer_end, manual_logprobs(tiny_model.model, ids, len(ids) - 1), atol=1e-5)


def test_query_nll_covers_exactly_the_querys_own_tokens(tiny_model):
    """Unlike the QAQ authors' script (which starts NLL(Q) 11 characters late and counts the
    end-of-turn tokens after the query), the whole query and only the query is averaged."""
    layouts = build_layouts("chat", tiny_model.tokenizer)
    [pair] = tokenize_pairs(tiny_model.tokenizer, layouts, ["Reverse a string."], ["def r(s): return s[::-1]"], 512)
    [scores] = PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id).score([pair])
    assert tiny_model.tokenizer.decode(list(pair.query_ids)) == "Reverse a string."
    assert len(scores.query) == len(scores.query_given_answer) == len(pair.query_ids)
    prefix = tiny_model.tokenizer.decode(list(layouts.query_first.prefix))
    assert prefix.endswith("user\n") and "Reverse" not in prefix


def test_the_batch_budget_is_sized_from_the_cards_free_memory():
    from types import SimpleNamespace

    from qaq_assets.lib.scoring.engine.scorer import CPU_BATCH_TOKENS, MAX_BATCH_TOKENS, auto_batch_tokens

    def shaped(width, heads, key_heads, intermediate):
        config = SimpleNamespace(
            hidden_size=width, num_attention_heads=heads, num_key_value_heads=key_heads, intermediate_size=intermediate
        )
        return SimpleNamespace(config=config, parameters=lambda: iter([torch.zeros(1, dtype=torch.bfloat16)]))

    qwen_05b = shaped(896, 14, 2, 4864)  # 38,656 bytes of live activations per token in bf16
    cuda = torch.device("cuda")
    assert auto_batch_tokens(qwen_05b, torch.device("cpu")) == CPU_BATCH_TOKENS
    # An idle H200 holds 262,144 tokens' activations, but the fused gate/up output (9,728 wide) of a
    # pass that long has more elements than int32 indexes: 220,752 tokens at most, 220,160 in 1,024s.
    assert auto_batch_tokens(qwen_05b, cuda, free_bytes=130 << 30) == 220_160
    assert auto_batch_tokens(qwen_05b, cuda, free_bytes=4 << 30) == 1 << 15  # 55,563 fit: a power of two below
    tiny_mlp = shaped(896, 14, 2, 896)  # nothing wide: memory alone sets it
    assert auto_batch_tokens(tiny_mlp, cuda, free_bytes=130 << 30) == MAX_BATCH_TOKENS
    llama_67b = shaped(4096, 32, 32, 11008)
    assert auto_batch_tokens(llama_67b, cuda, free_bytes=8 << 30) == 1 << 15
    assert auto_batch_tokens(llama_67b, cuda, free_bytes=130 << 30) == 97_280  # 2**31 / 22,016 gate/up columns
    assert auto_batch_tokens(llama_67b, cuda, free_bytes=1 << 30) == 1 << 14  # never below 16,384: OOM back-off
    for model in (qwen_05b, llama_67b):
        tokens = auto_batch_tokens(model, cuda, free_bytes=1 << 40)
        assert tokens * 2 * model.config.intermediate_size < 2**31


def test_chat_nll_answer_is_conditioned_on_the_reverse_instruction(tiny_model):
    """Documented choice: two passes per sample, so under chat NLL(A) is scored after the system turn
    and the reverse instruction (IFD then agrees a little less with Cherry's than under plain)."""
    from qaq_assets.lib.scoring.engine.templates import REVERSE_INSTRUCTION

    layouts = build_layouts("chat", tiny_model.tokenizer)
    prefix = tiny_model.tokenizer.decode(list(layouts.answer_first.prefix))
    assert prefix.endswith(REVERSE_INSTRUCTION)
    # Under plain, nothing but the document start precedes the answer: NLL(A) is unconditional.
    assert len(build_layouts("plain", tiny_model.tokenizer).answer_first.prefix) == 1


def test_a_chunk_is_tokenised_in_one_batch_as_each_text_would_be_alone(tiny_model):
    tokenizer = tiny_model.tokenizer
    layouts = build_layouts("auto", tokenizer)
    queries = ["Reverse a string.", "", "Émoji 🚀 and\ttabs\r\n", "x" * 3000]
    answers = ["def r(s): return s[::-1]", "pass", "print('🚀')", "y"]
    pairs = tokenize_pairs(tokenizer, layouts, queries, answers, 1024)
    content_tokens = 1024 - layouts.overhead
    alone = zip(queries, answers, strict=True)
    expected = [fit_to_tokens(encode(tokenizer, q), encode(tokenizer, a), content_tokens) for q, a in alone]
    assert pairs == expected and pairs[3].query_truncated
    assert tokenize_pairs(tokenizer, layouts, [], [], 1024) == []
    with pytest.raises(ValueError, match="2 queries but 1 answers"):
        tokenize_pairs(tokenizer, layouts, queries[:2], answers[:1], 1024)


@pytest.mark.slow
# The CPU's defaults and CUDA's (each head also equals the other: test_output_head.py).
@pytest.mark.parametrize(("attention", "head"), [("padded", "vocab-blocks"), ("packed", "logits")])
def test_a_samples_scores_do_not_depend_on_the_fifty_samples_beside_it(tiny_model, attention, head):
    layouts = build_layouts("chat", tiny_model.tokenizer)
    pairs = [(f"{i}: {q}" * (1 + i % 3), a * (1 + i % 4)) for i, (q, a) in enumerate(CODE_PAIRS * 5)][:51]
    queries, answers = zip(*pairs, strict=True)
    tokens = tokenize_pairs(tiny_model.tokenizer, layouts, queries, answers, 2048)
    pad = tiny_model.tokenizer.pad_token_id

    def scorer():
        return PairScorer(
            tiny_model.model, layouts, pad, forward="fused-eager", attention=attention, batch_tokens=8192, head=head
        )

    together = scorer().score(tokens)
    assert together.stats.passes < len(tokens)  # the 51 share passes
    worst = 0.0
    one_at_a_time = scorer()
    for pair, shared in zip(tokens, together, strict=True):
        alone = one_at_a_time.score([pair])[0]
        for field in ("query", "answer_given_query", "answer", "query_given_answer", "answer_end"):
            worst = max(worst, float(np.abs(getattr(shared, field) - getattr(alone, field)).max()))
    assert worst <= 1e-5, worst  # float32, per token


def test_in_bfloat16_on_cpu_a_samples_scores_are_bit_identical_alone_and_among_others(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model.model).to(torch.bfloat16)
    layouts = build_layouts("chat", tiny_model.tokenizer)
    pairs = [(f"{i}: {q}" * (1 + i % 3), a * (1 + i % 4)) for i, (q, a) in enumerate(CODE_PAIRS * 3)][:24]
    queries, answers = zip(*pairs, strict=True)
    tokens = tokenize_pairs(tiny_model.tokenizer, layouts, queries, answers, 2048)
    scorer = PairScorer(model, layouts, tiny_model.tokenizer.pad_token_id, forward="fused-eager")
    assert scorer.max_batch_size == 1  # the CPU's default: each sequence attends alone
    together = scorer.score(tokens)
    assert together.stats.passes < len(tokens) and together.stats.padding_tokens == 0
    for pair, shared in zip(tokens, together, strict=True):
        alone = scorer.score([pair])[0]
        for field in ("query", "answer_given_query", "answer", "query_given_answer", "answer_end"):
            assert np.array_equal(getattr(shared, field), getattr(alone, field)), field
