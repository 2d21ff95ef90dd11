"""Packed attention: the block mask is the document-causal mask, and one FlexAttention call over
the stream equals SDPA per sequence."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from qaq_assets.lib.scoring.engine import packed_attention as packed
from qaq_assets.lib.scoring.engine.packed_attention import (
    BLOCK_ROWS,
    FlexAttention,
    block_mask_on,
    document_blocks,
    packed_attention,
    padded_length,
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
    mask = block_mask_on(blocks, torch.device("cpu"))
    stream = packed_attention(flex_attention, query, key, value, mask, 0.25)
    assert stream.shape == (blocks.rows, 64)
    expected = per_sequence_attention(query.float(), key.float(), value.float(), LENGTHS, 0.25)
    torch.testing.assert_close(stream[: sum(LENGTHS)].float(), expected, atol=tolerance, rtol=tolerance)


def test_a_compiler_failure_leaves_flex_attention_uncompiled(monkeypatch):
    def no_compiler(function, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\ndetail")

        return fails

    monkeypatch.setattr(packed.torch, "compile", no_compiler)
    attention = FlexAttention(True, torch.float32, torch.device("cpu"), (4, 2, 16))
    assert not attention.compiled and attention.attend is flex_attention
    assert attention.compile_error == "RuntimeError: InductorError: CppCompileError: C++ compile error"
