"""Causal attention over a packed token stream: many sequences back to back, no padding.

Per-group SDPA calls (one per length bucket) leave a GPU waiting on the host: each call
costs hundreds of microseconds of CPU to dispatch, and a pass has dozens. Here a pass is
one stream of sequences laid end to end, and attention is one kernel call per layer in
which a token sees the earlier tokens of its own sequence only: FlashAttention's
variable-length kernel given the sequences' bounds, or FlexAttention with a document mask
(see :class:`PackedAttention` for which runs where).

FlexAttention's block mask is built on the host from the sequences' start rows (numpy, no device
work, no sync): for each 128-row query block, the key blocks it needs are those from the
block holding the start of its first sequence up to itself; a key block that lies wholly
in the past of one sequence holding the whole query block is *full* (no mask evaluated),
the rest are *partial* (the mask function decides per element).
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from qaq_assets.lib.errors import one_line
from qaq_assets.lib.scoring.engine.host_to_device import to_device

log = logging.getLogger(__name__)

# FlexAttention's tile: a packed stream is padded to a multiple of it.
BLOCK_ROWS = 128

# The packed kernels, by the names PackedAttention reports.
VARLEN = "flash varlen"
VARLEN_REPEATED = "flash varlen, key/value heads repeated"


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


def block_mask_on(blocks: DocumentBlocks, device: torch.device) -> BlockMask:
    """``blocks`` as FlexAttention's :class:`BlockMask` on ``device``."""
    documents = to_device(blocks.documents, device)

    def same_document_causal(batch, head, query_row, key_row):
        return (documents[query_row] == documents[key_row]) & (query_row >= key_row)

    return BlockMask.from_kv_blocks(
        to_device(blocks.partial_counts, device)[None, None],
        to_device(blocks.partial_indices, device)[None, None],
        to_device(blocks.full_counts, device)[None, None],
        to_device(blocks.full_indices, device)[None, None],
        BLOCK_SIZE=BLOCK_ROWS,
        mask_mod=same_document_causal,
        seq_lengths=(blocks.rows, blocks.rows),
    )


@dataclass(frozen=True)
class PackedStream:
    """A packed pass's sequences as the attention kernels take them, on the device."""

    cumulative_lengths: torch.Tensor  # (sequences + 1,) int32: row where each sequence starts, then the end
    longest: int  # the longest sequence's length (a host number: no sync to learn it)
    mask: BlockMask | None = None  # FlexAttention's document mask, where that kernel runs


def stream_bounds(starts: np.ndarray, real_tokens: int) -> np.ndarray:
    """Every sequence's start row, the padding tail's start where there is one, and the end."""
    rows = padded_length(real_tokens)
    bounds = np.append(np.asarray(starts, dtype=np.int64), real_tokens)
    return (np.append(bounds, rows) if rows > real_tokens else bounds).astype(np.int32)


def packed_stream(
    starts: np.ndarray, real_tokens: int, longest: int, device: torch.device, with_mask: bool
) -> PackedStream:
    """A packed pass's :class:`PackedStream` on ``device``; FlexAttention's mask ``with_mask``."""
    mask = block_mask_on(document_blocks(starts, real_tokens), device) if with_mask else None
    bounds = to_device(stream_bounds(starts, real_tokens), device)
    # The padding tail is a sequence too.
    return PackedStream(bounds, max(longest, padded_length(real_tokens) - real_tokens), mask)


def flex_packed(
    attend, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, stream: PackedStream, scale: float
) -> torch.Tensor:
    """Attention of (rows, heads, head_dim) query/key/value rows under the stream's document mask
    with ``attend`` (FlexAttention, compiled or not); returns (rows, query heads * head_dim)."""

    def heads(rows: torch.Tensor) -> torch.Tensor:
        return rows.transpose(0, 1)[None]

    output = attend(
        heads(query),
        heads(key),
        heads(value),
        block_mask=stream.mask,
        scale=scale,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return output[0].transpose(0, 1).flatten(1)


@functools.lru_cache(maxsize=4)
def _parameters_of(function) -> frozenset[str]:
    # Read once per function: the varlen call runs in every layer of every pass.
    return frozenset(inspect.signature(function).parameters)


def varlen_packed(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    stream: PackedStream,
    scale: float,
    repeat_key_heads: bool = False,
) -> torch.Tensor:
    """The same with FlashAttention's variable-length kernel (``torch.nn.attention.varlen``),
    whose arguments differ between torch releases: causal is ``window_size=(-1, 0)`` or
    ``is_causal=True``; the first release takes no ``scale`` (the query is scaled instead);
    grouped key/value heads are flagged with ``enable_gqa`` where it exists, else passed as
    they are (FlashAttention groups them itself) or, with ``repeat_key_heads``, repeated."""
    from torch.nn.attention import varlen

    parameters = _parameters_of(varlen.varlen_attn)
    options: dict = {}
    if "scale" in parameters:
        options["scale"] = scale
    else:
        # Its fixed scale is head_dim ** -0.5: fold the model's own into the query.
        query = query * (scale * query.shape[-1] ** 0.5)
    if "window_size" in parameters:
        options["window_size"] = (-1, 0)
    else:
        options["is_causal"] = True
    if key.shape[1] != query.shape[1]:
        if "enable_gqa" in parameters:
            options["enable_gqa"] = True
        elif repeat_key_heads:
            groups = query.shape[1] // key.shape[1]
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    bounds, longest = stream.cumulative_lengths, stream.longest
    output = varlen.varlen_attn(query, key, value, bounds, bounds, longest, longest, **options)
    return output.flatten(1)


def sequence_by_sequence(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bounds: np.ndarray, scale: float
) -> torch.Tensor:
    """SDPA on each sequence alone: what a packed kernel must reproduce (its probe's reference)."""
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        output = F.scaled_dot_product_attention(
            *(rows[start:end].transpose(0, 1)[None] for rows in (query, key, value)),
            is_causal=True,
            scale=scale,
            enable_gqa=query.shape[1] != key.shape[1],
        )
        outputs.append(output[0].transpose(0, 1).flatten(1))
    return torch.cat(outputs)


def _varlen_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        from torch.nn.attention import varlen  # noqa: F401
    except ImportError:
        return False
    return True


def varlen_kernels(heads: tuple[int, int, int]) -> list[str]:
    """The FlashAttention variable-length ways to attend for ``heads``, in order of preference:
    where the installed release has no ``enable_gqa``, grouped key/value heads are tried as they
    are, then repeated to one per query head."""
    from torch.nn.attention import varlen

    query_heads, key_heads, _ = heads
    if query_heads == key_heads or "enable_gqa" in _parameters_of(varlen.varlen_attn):
        return [VARLEN]
    return [VARLEN, VARLEN_REPEATED]


class PackedAttention:
    """The kernel that attends over a packed stream, for ``heads`` = (query heads, key/value
    heads, head_dim), chosen once per model and device by trying each on two small streams
    against :func:`sequence_by_sequence`:

    1. FlashAttention's variable-length kernel (CUDA builds of torch that have it): no
       compilation, one kernel per layer, every pass shape served as it comes (grouped
       key/value heads as :func:`varlen_kernels` says);
    2. FlexAttention with the document mask, compiled with dynamic shapes when ``compile``
       (eager FlexAttention materialises every score: a check on CPU, not a way to run).

    ``kernel`` is None where neither holds (``reasons`` says why): the scorer then attends
    per length group."""

    def __init__(self, compile: bool, dtype: torch.dtype, device: torch.device, heads: tuple[int, int, int]):
        self.kernel: str | None = None
        self.reasons: list[str] = []
        self._attend = None
        candidates: list[tuple[str, object]] = []
        if _varlen_available(device):
            candidates += [(kernel, None) for kernel in varlen_kernels(heads)]
        flex = ("flex, compiled", torch.compile(flex_attention, dynamic=True)) if compile else ("flex, eager", None)
        candidates.append(flex)
        for kernel, compiled in candidates:
            error = self._probe(kernel, compiled or flex_attention, dtype, device, heads)
            if error is None:
                self.kernel, self._attend = kernel, compiled or flex_attention
                return
            self.reasons.append(f"{kernel}: {error}")
        log.warning("packed attention is unavailable (%s); attending per length group", "; ".join(self.reasons))

    @property
    def needs_mask(self) -> bool:
        return _uses_mask(self.kernel)

    def __call__(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, stream: PackedStream, scale: float
    ) -> torch.Tensor:
        return _attend_packed(self.kernel, self._attend, query, key, value, stream, scale)

    def stream(self, starts: np.ndarray, real_tokens: int, longest: int, device: torch.device) -> PackedStream:
        """A packed pass's :class:`PackedStream` for this kernel (the mask only where it needs one)."""
        return packed_stream(starts, real_tokens, longest, device, self.needs_mask)

    @staticmethod
    def _probe(kernel: str, attend, dtype: torch.dtype, device: torch.device, heads) -> str | None:
        """Why ``kernel`` cannot attend over packed streams here, or None when it matches SDPA."""
        query_heads, key_heads, head_dim = heads
        tolerance = 1e-4 if dtype == torch.float32 else 3e-2
        try:
            with torch.inference_mode():
                # Two streams of different lengths: one kernel (one graph) must serve both.
                for lengths in ((100, 60), (130, 200, 7)):
                    starts, real = np.cumsum((0, *lengths[:-1])), sum(lengths)
                    rows = padded_length(real)
                    query = torch.randn(rows, query_heads, head_dim, dtype=dtype, device=device)
                    key, value = (torch.randn(rows, key_heads, head_dim, dtype=dtype, device=device) for _ in "kv")
                    stream = packed_stream(starts, real, max(lengths), device, _uses_mask(kernel))
                    output = _attend_packed(kernel, attend, query, key, value, stream, head_dim**-0.5)
                    bounds = stream_bounds(starts, real)
                    expected = sequence_by_sequence(query, key, value, bounds, head_dim**-0.5)
                    if not torch.allclose(output.float(), expected.float(), atol=tolerance, rtol=tolerance):
                        worst = (output.float() - expected.float()).abs().max().item()
                        return f"differs from attention per sequence by {worst:.3g}"
        except Exception as error:  # noqa: BLE001 - any failure means: try the next kernel
            return one_line(error)
        return None


def _uses_mask(kernel: str | None) -> bool:
    return kernel is not None and kernel.startswith("flex")


def _attend_packed(kernel: str, attend, query, key, value, stream: PackedStream, scale: float) -> torch.Tensor:
    if _uses_mask(kernel):
        return flex_packed(attend, query, key, value, stream, scale)
    return varlen_packed(query, key, value, stream, scale, repeat_key_heads=kernel == VARLEN_REPEATED)
