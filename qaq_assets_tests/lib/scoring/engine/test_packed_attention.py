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
    so the CPU tests check the project's call against this stand-in); records how it was called.
    Grouped key/value heads are grouped, as FlashAttention does."""
    calls.append({"bounds": cu_seq_q.tolist(), "longest": max_q, "key_heads": key.shape[1], "scale": scale, **options})
    assert torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k
    assert options.get("window_size") == (-1, 0) or options.get("is_causal")
    bounds = cu_seq_q.tolist()
    outputs = [
        F.scaled_dot_product_attention(
            *(rows[a:b].transpose(0, 1)[None] for rows in (query, key, value)),
            is_causal=True,
            scale=scale,
            enable_gqa=query.shape[1] != key.shape[1],
        )[0].transpose(0, 1)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)) <= max_q
    return torch.cat(outputs)


calls = []


def first_release_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    """The first release's signature: is_causal, and a fixed scale of head_dim ** -0.5."""
    return reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=is_causal)


def middle_release_varlen(
    query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None, window_size=(-1, -1)
):
    """Later: a scale and a window, grouped heads taken as they are (no enable_gqa)."""
    return reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size)


def new_release_varlen(
    query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False
):
    """The newest: grouped heads must be flagged."""
    if query.shape[1] != key.shape[1] and not enable_gqa:
        raise ValueError("Expect query and key/value to have the same number of heads. Try setting enable_gqa=True")
    return reference_varlen(
        query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size, enable_gqa=enable_gqa
    )


@functools.wraps(middle_release_varlen)  # no enable_gqa
def ungrouped_release_varlen(query, key, value, *args, **options):
    """A build whose kernel refuses grouped heads, and has no flag to ask for them."""
    if query.shape[1] != key.shape[1]:
        raise RuntimeError("Number of heads in key/value must equal the query's")
    return middle_release_varlen(query, key, value, *args, **options)


RELEASES = {
    "first": first_release_varlen,
    "middle": middle_release_varlen,
    "new": new_release_varlen,
}


@pytest.mark.parametrize("repeat_key_heads", [False, True], ids=["grouped", "repeated"])
@pytest.mark.parametrize("release", RELEASES)
def test_the_varlen_call_passes_the_streams_bounds_causally_and_scaled_in_each_release(
    release, repeat_key_heads, monkeypatch
):
    from torch.nn.attention import varlen

    monkeypatch.setattr(varlen, "varlen_attn", RELEASES[release])
    calls.clear()
    torch.manual_seed(0)
    starts, real = starts_of(LENGTHS), sum(LENGTHS)
    rows = padded_length(real)
    query = torch.randn(rows, 4, 16)
    key, value = (torch.randn(rows, 2, 16) for _ in range(2))
    bounds = stream_bounds(starts, real)
    assert bounds.tolist() == [*starts.tolist(), real, rows]  # the padding tail is a sequence of its own
    scale = 0.2  # not head_dim ** -0.5, which the first release fixes
    stream = PackedStream(torch.from_numpy(bounds), max(LENGTHS))
    output = varlen_packed(query, key, value, stream, scale, repeat_key_heads=repeat_key_heads)
    expected = per_sequence_attention(query, key, value, [*LENGTHS, rows - real], scale)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    [call] = calls
    assert call["bounds"] == bounds.tolist() and call["longest"] == max(LENGTHS)
    assert call["scale"] == (None if release == "first" else scale)
    # Grouped heads: flagged where the release can be told, repeated only where asked and it cannot.
    assert call["key_heads"] == (4 if repeat_key_heads and release != "new" else 2)
    assert call.get("enable_gqa", False) == (release == "new")


def test_grouped_heads_are_repeated_only_where_the_release_cannot_be_told_of_them(monkeypatch):
    from torch.nn.attention import varlen

    for release, expected in [
        (new_release_varlen, [packed.VARLEN]),
        (middle_release_varlen, [packed.VARLEN, packed.VARLEN_REPEATED]),
        (first_release_varlen, [packed.VARLEN, packed.VARLEN_REPEATED]),
    ]:
        monkeypatch.setattr(varlen, "varlen_attn", release)
        assert packed.varlen_kernels((4, 2, 16)) == expected
        assert packed.varlen_kernels((4, 4, 16)) == [packed.VARLEN]


@pytest.mark.filterwarnings("ignore:.*without torch.compile")
def test_a_kernel_that_refuses_grouped_heads_gets_them_repeated(monkeypatch):
    from torch.nn.attention import varlen

    monkeypatch.setattr(packed, "_varlen_available", lambda device: True)
    monkeypatch.setattr(varlen, "varlen_attn", ungrouped_release_varlen)
    attention = PackedAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert attention.kernel == packed.VARLEN_REPEATED
    assert attention.reasons == ["flash varlen: RuntimeError: Number of heads in key/value must equal the query's"]
    monkeypatch.setattr(varlen, "varlen_attn", middle_release_varlen)
    assert PackedAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16)).kernel == packed.VARLEN


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
