"""Causal attention over a packed token stream: many sequences back to back, no padding.

Per-group SDPA calls (one per length bucket) leave a GPU waiting on the host: each call
costs hundreds of microseconds of CPU to dispatch, and a pass has dozens. Here a pass is
one stream of sequences laid end to end, and attention is one FlexAttention call with a
document mask: a token sees the earlier tokens of its own sequence only.

The block mask is built on the host from the sequences' start rows (numpy, no device
work, no sync): for each 128-row query block, the key blocks it needs are those from the
block holding the start of its first sequence up to itself; a key block that lies wholly
in the past of one sequence holding the whole query block is *full* (no mask evaluated),
the rest are *partial* (the mask function decides per element).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

log = logging.getLogger(__name__)

# FlexAttention's tile: a packed stream is padded to a multiple of it.
BLOCK_ROWS = 128


def padded_length(tokens: int) -> int:
    """Rows of a packed stream of ``tokens`` real tokens: a whole number of blocks."""
    return -(-tokens // BLOCK_ROWS) * BLOCK_ROWS


def document_of_rows(starts: np.ndarray, rows: int) -> np.ndarray:
    """The sequence each of ``rows`` belongs to, from the sequences' start rows (ascending,
    the first 0). Rows past the last sequence's end form one more document of padding."""
    return np.searchsorted(starts, np.arange(rows), side="right") - 1


@dataclass(frozen=True)
class DocumentBlocks:
    """A block-sparse causal document mask, as host arrays (see :func:`document_blocks`)."""

    partial_counts: np.ndarray  # (query blocks,) int32
    partial_indices: np.ndarray  # (query blocks, key blocks) int32, partial ones first
    full_counts: np.ndarray
    full_indices: np.ndarray
    documents: np.ndarray  # (rows,) int32: the document of each row

    @property
    def rows(self) -> int:
        return self.documents.shape[0]


def document_blocks(starts: np.ndarray, real_tokens: int) -> DocumentBlocks:
    """The mask of a stream whose sequences start at ``starts`` and end at ``real_tokens``;
    the stream is :func:`padded_length` rows, and padding rows attend to padding only.

    Sequences are contiguous, so each query block ``i`` needs the key blocks from the one
    holding the start of its first row's sequence (``first``) up to ``i``; of those, the
    blocks from the one holding the start of its last row's sequence (rounded up: ``full``)
    to ``i - 1`` lie wholly inside that sequence's past. Both are ranges: built by arithmetic,
    in time linear in the mask's size."""
    rows = padded_length(real_tokens)
    bounds = np.append(np.asarray(starts, dtype=np.int64), real_tokens)
    documents = document_of_rows(bounds, rows)
    blocks = rows // BLOCK_ROWS
    # int32 throughout: FlexAttention's index type, and half the bytes to write per pass.
    query = np.arange(blocks, dtype=np.int32)
    first = (bounds[documents[query * BLOCK_ROWS]] // BLOCK_ROWS).astype(np.int32)
    last_start = bounds[documents[query * BLOCK_ROWS + BLOCK_ROWS - 1]]
    full_from = np.minimum(-(-last_start // BLOCK_ROWS), query).astype(np.int32)  # empty at the diagonal
    leading = full_from - first  # partial blocks before the full ones; the diagonal block follows
    column = query[None, :]
    return DocumentBlocks(
        partial_counts=leading + 1,
        partial_indices=np.where(column < leading[:, None], first[:, None] + column, query[:, None]),
        full_counts=query - full_from,
        full_indices=np.where(column < (query - full_from)[:, None], full_from[:, None] + column, 0).astype(np.int32),
        documents=documents.astype(np.int32),
    )


def block_mask_on(blocks: DocumentBlocks, device: torch.device, pin: bool = False) -> BlockMask:
    """``blocks`` as FlexAttention's :class:`BlockMask` on ``device`` (copies are
    asynchronous from pinned memory when ``pin``)."""

    def moved(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if pin:
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=pin)

    documents = moved(blocks.documents)

    def same_document_causal(batch, head, query_row, key_row):
        return (documents[query_row] == documents[key_row]) & (query_row >= key_row)

    return BlockMask.from_kv_blocks(
        moved(blocks.partial_counts)[None, None],
        moved(blocks.partial_indices)[None, None],
        moved(blocks.full_counts)[None, None],
        moved(blocks.full_indices)[None, None],
        BLOCK_SIZE=BLOCK_ROWS,
        mask_mod=same_document_causal,
        seq_lengths=(blocks.rows, blocks.rows),
    )


def packed_attention(
    attend, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: BlockMask, scale: float
) -> torch.Tensor:
    """Attention of (rows, heads, head_dim) query/key/value rows under ``mask`` with ``attend``
    (FlexAttention, compiled or not); returns (rows, query heads * head_dim)."""

    def heads(rows: torch.Tensor) -> torch.Tensor:
        return rows.transpose(0, 1)[None]

    output = attend(
        heads(query),
        heads(key),
        heads(value),
        block_mask=mask,
        scale=scale,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return output[0].transpose(0, 1).flatten(1)


class FlexAttention:
    """FlexAttention for ``heads`` = (query heads, key/value heads, head_dim), compiled for
    the device when ``compile`` (eager FlexAttention materialises every score: a check, not
    a way to run); where compiling fails, ``compile_error`` says why and the scorer attends
    per length group instead. Compiled with dynamic shapes: one graph serves every pass."""

    def __init__(self, compile: bool, dtype: torch.dtype, device: torch.device, heads: tuple[int, int, int]):
        self.attend = flex_attention
        self.compile_error: str | None = None
        self.compiled = compile and self._try_compile(dtype, device, heads)

    def _try_compile(self, dtype: torch.dtype, device: torch.device, heads: tuple[int, int, int]) -> bool:
        query_heads, key_heads, head_dim = heads
        attend = torch.compile(flex_attention, dynamic=True)
        try:
            with torch.inference_mode():
                # Two streams of different lengths: one graph must serve both.
                for lengths in ((100, 60), (130, 200, 7)):
                    starts = np.cumsum((0, *lengths[:-1]))
                    blocks = document_blocks(starts, sum(lengths))
                    query = torch.randn(blocks.rows, query_heads, head_dim, dtype=dtype, device=device)
                    key = torch.randn(blocks.rows, key_heads, head_dim, dtype=dtype, device=device)
                    packed_attention(attend, query, key, key, block_mask_on(blocks, device), head_dim**-0.5)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: attend per group
            self.compile_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            log.warning("packed attention is unavailable: compiling FlexAttention failed (%s)", self.compile_error)
            return False
        self.attend = attend
        return True
