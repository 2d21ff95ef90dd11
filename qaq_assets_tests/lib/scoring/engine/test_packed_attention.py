"""Packed attention: the block mask is the document-causal mask, and one FlexAttention call over
the stream equals SDPA per sequence."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from qaq_assets.lib.scoring.engine import packed_attention as packed
from qaq_assets.lib.scoring.engine.packed_attention import (
    BLOCK_ROWS,
    PackedAttention,
    PackedStream,
    block_mask_on,
    document_blocks,
    flex_packed,
    padded_length,
    stream_bounds,
    varlen_packed,
)

# Short and long sequences: some span several blocks (full blocks), some share one.
LENGTHS = [100, 60, 300, 7, 1, 129, 700, 128, 40]


def starts_of(lengths):
    return np.concatenate(([0], np.cumsum(lengths)[:-1]))


def allowed_elements(lengths):
    """The document-causal mask element by element, padding rows a document of their own."""
    rows = padded_length(sum(lengths))
    documents = np.repeat(np.arange(len(lengths) + 1), [*lengths, rows - sum(lengths)])
    query, key = np.arange(rows)[:, None], np.arange(rows)[None, :]
    return (documents[:, None] == documents[None, :]) & (key <= query)


def test_the_block_mask_marks_exactly_the_blocks_the_element_mask_needs():
    allowed = allowed_elements(LENGTHS)
    blocks = document_blocks(starts_of(LENGTHS), sum(LENGTHS))
    count = blocks.rows // BLOCK_ROWS
    tiles = allowed.reshape(count, BLOCK_ROWS, count, BLOCK_ROWS).transpose(0, 2, 1, 3)
    any_allowed, all_allowed = tiles.any(axis=(2, 3)), tiles.all(axis=(2, 3))
    for query_block in range(count):
        partial = set(blocks.partial_indices[query_block, : blocks.partial_counts[query_block]])
        full = set(blocks.full_indices[query_block, : blocks.full_counts[query_block]])
        assert full == set(np.flatnonzero(all_allowed[query_block]))
        assert partial == set(np.flatnonzero(any_allowed[query_block] & ~all_allowed[query_block]))
    assert blocks.full_counts.sum() > 0  # the 700-token sequence fills whole blocks


def per_sequence_attention(query, key, value, lengths, scale):
    outputs, start = [], 0
    for length in lengths:
        rows = slice(start, start + length)
        start += length
        output = F.scaled_dot_product_attention(
            *(tensor[rows].transpose(0, 1)[None] for tensor in (query, key, value)),
            is_causal=True,
            scale=scale,
            enable_gqa=True,
        )
        outputs.append(output[0].transpose(0, 1).flatten(1))
    return torch.cat(outputs)


@pytest.mark.filterwarnings("ignore:.*without torch.compile")
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_one_call_over_the_packed_stream_equals_attention_per_sequence(dtype, tolerance):
    torch.manual_seed(0)
    blocks = document_blocks(starts_of(LENGTHS), sum(LENGTHS))
    query = torch.randn(blocks.rows, 4, 16, dtype=dtype)
    key, value = (torch.randn(blocks.rows, 2, 16, dtype=dtype) for _ in range(2))
    stream = PackedStream(torch.empty(0), max(LENGTHS), block_mask_on(blocks, torch.device("cpu")))
    stream = flex_packed(flex_attention, query, key, value, stream, 0.25)
    assert stream.shape == (blocks.rows, 64)
    expected = per_sequence_attention(query.float(), key.float(), value.float(), LENGTHS, 0.25)
    torch.testing.assert_close(stream[: sum(LENGTHS)].float(), expected, atol=tolerance, rtol=tolerance)


def test_a_compiler_failure_leaves_no_packed_kernel_and_says_why(monkeypatch):
    def no_compiler(function, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\ndetail")

        return fails

    monkeypatch.setattr(packed.torch, "compile", no_compiler)
    attention = PackedAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert attention.kernel is None
    assert attention.reasons == ["flex, compiled: RuntimeError: InductorError: CppCompileError: C++ compile error"]


@pytest.mark.filterwarnings("ignore:.*without torch.compile")
def test_eager_flex_attention_serves_as_the_packed_kernel_when_nothing_is_compiled():
    attention = PackedAttention(False, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert attention.kernel == "flex, eager" and attention.needs_mask


def reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=None, **options):
    """torch's FlashAttention variable-length kernel, as SDPA sequence by sequence (CUDA-only in torch,
    so the CPU tests check the project's call against this stand-in); records how it was called."""
    calls.append({"bounds": cu_seq_q.tolist(), "longest": max_q, "key_heads": key.shape[1], **options})
    assert torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k
    assert options.get("window_size") == (-1, 0) or options.get("is_causal")
    groups = query.shape[1] // key.shape[1]
    assert groups == 1 or options.get("enable_gqa")
    bounds = cu_seq_q.tolist()
    outputs = [
        F.scaled_dot_product_attention(
            *(rows[a:b].transpose(0, 1)[None] for rows in (query, key, value)),
            is_causal=True,
            scale=scale,
            enable_gqa=groups > 1,
        )[0].transpose(0, 1)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)) <= max_q
    return torch.cat(outputs)


calls = []


def old_release_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, is_causal=False, scale=None):
    """An earlier release's signature: is_causal, and no grouped key/value heads."""
    return reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, is_causal=is_causal)


def new_release_varlen(
    query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False
):
    return reference_varlen(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size, enable_gqa=enable_gqa
    )


@pytest.mark.parametrize("release", [old_release_varlen, new_release_varlen], ids=["is_causal", "window_size"])
def test_the_varlen_call_passes_the_streams_bounds_causally_in_either_release(release, monkeypatch):
    from torch.nn.attention import varlen

    monkeypatch.setattr(varlen, "varlen_attn", release)
    calls.clear()
    torch.manual_seed(0)
    starts, real = starts_of(LENGTHS), sum(LENGTHS)
    rows = padded_length(real)
    query = torch.randn(rows, 4, 16)
    key, value = (torch.randn(rows, 2, 16) for _ in range(2))
    bounds = stream_bounds(starts, real)
    assert bounds.tolist() == [*starts.tolist(), real, rows]  # the padding tail is a sequence of its own
    output = varlen_packed(query, key, value, PackedStream(torch.from_numpy(bounds), max(LENGTHS)), 0.25)
    expected = per_sequence_attention(query, key, value, [*LENGTHS, rows - real], 0.25)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    [call] = calls
    assert call["bounds"] == bounds.tolist() and call["longest"] == max(LENGTHS)
    # Grouped heads: passed as they are where the release takes them, repeated where it does not.
    assert call["key_heads"] == (2 if release is new_release_varlen else 4)


@pytest.mark.filterwarnings("ignore:.*without torch.compile")
def test_the_varlen_kernel_is_chosen_where_it_checks_equal_and_refused_where_it_does_not(monkeypatch):
    from torch.nn.attention import varlen

    monkeypatch.setattr(packed, "_varlen_available", lambda device: True)
    monkeypatch.setattr(varlen, "varlen_attn", new_release_varlen)
    attention = PackedAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert attention.kernel == "flash varlen" and not attention.needs_mask

    @functools.wraps(new_release_varlen)  # the same signature
    def off_by_one_row(*args, **options):
        return new_release_varlen(*args, **options).roll(1, dims=0)

    monkeypatch.setattr(varlen, "varlen_attn", off_by_one_row)
    monkeypatch.setattr(packed.torch, "compile", lambda function, **options: function)  # eager flex as the fallback
    fallback = PackedAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert fallback.kernel == "flex, compiled" and fallback.reasons[0].startswith("flash varlen: differs from")
