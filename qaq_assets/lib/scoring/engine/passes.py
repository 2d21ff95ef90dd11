"""Forward passes, planned and laid out on the host.

A pass is a set of sequences under a token budget, laid out one of two ways:

- **padded groups**: sequences of similar length, right-padded into (count, length)
  groups; attention runs per group (the CPU's layout: SDPA's dense kernels want it);
- **packed**: sequences back to back in one stream, padded only to a whole number of
  attention blocks; attention is one call over the stream (see :mod:`packed_attention`).

Either way the pass is handed over as flat numpy arrays (token ids, positions, the rows
whose hidden state predicts each scored token, and those tokens), built with vectorised
numpy so that preparing the next pass costs little next to running this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qaq_assets.lib.scoring.engine.packed_attention import BLOCK_ROWS, padded_length

PADDED, PACKED = "padded", "packed"


@dataclass(frozen=True)
class ScoredSequence:
    """One order of one pair: its token ids and the [start, end) spans whose log-probs are wanted."""

    pair: int
    order: int
    ids: np.ndarray  # int64
    first: tuple[int, int]
    second: tuple[int, int]
    end: tuple[int, int]  # the scored end after the second segment (may be empty)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self.first, self.second, self.end


@dataclass(frozen=True)
class PlannedPass:
    """Which sequences a pass scores, in result order; ``groups`` for padded passes, None when packed."""

    members: list[int]
    groups: list[list[int]] | None = None


def plan_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch_size: int, max_padding: float = 0.05
) -> list[list[int]]:
    """Group indices into batches of similar length: padded size within ``batch_tokens``, and
    padding within ``max_padding`` of the batch (a batch of one has none)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        if current:
            # Sorted descending, so the first member sets the batch's padded length.
            padded = (len(current) + 1) * lengths[current[0]]
            if (
                padded > batch_tokens
                or len(current) >= max_batch_size
                or real + lengths[index] < (1 - max_padding) * padded
            ):
                batches.append(current)
                current, real = [], 0
        current.append(index)
        real += lengths[index]
    if current:
        batches.append(current)
    return batches


def plan_passes(
    lengths: Sequence[int], batch_tokens: int, max_batch_size: int, max_padding: float = 0.05
) -> list[list[list[int]]]:
    """Padded passes, each a list of groups from :func:`plan_batches` whose padded tokens
    together stay within ``batch_tokens``. Attention runs per group; the rest of the model
    sees the whole pass, so small groups of rare lengths still make wide matmuls."""
    passes: list[list[list[int]]] = []
    current: list[list[int]] = []
    tokens = 0
    for group in plan_batches(lengths, batch_tokens, max_batch_size, max_padding):
        padded = len(group) * max(lengths[i] for i in group)
        if current and tokens + padded > batch_tokens:
            passes.append(current)
            current, tokens = [], 0
        current.append(group)
        tokens += padded
    if current:
        passes.append(current)
    return passes


def plan_packed(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Packed passes: sequences longest first, each pass filled up to ``batch_tokens`` rows
    (its real tokens padded to whole attention blocks); a sequence longer than the budget
    goes alone."""
    order = np.lexsort((np.arange(len(lengths)), -np.asarray(lengths, dtype=np.int64)))
    totals = np.cumsum(np.asarray(lengths, dtype=np.int64)[order])
    # Padded to whole blocks, a pass fits the budget when its real tokens fit this.
    room = batch_tokens // BLOCK_ROWS * BLOCK_ROWS
    passes, start, done = [], 0, 0
    while start < len(order):
        end = max(start + 1, int(np.searchsorted(totals, done + room, side="right")))
        passes.append(order[start:end].tolist())
        done, start = int(totals[end - 1]), end
    return passes


def plan(layout: str, lengths: Sequence[int], batch_tokens: int, max_batch_size: int) -> list[PlannedPass]:
    """The passes that score sequences of ``lengths`` in ``layout``."""
    if layout == PACKED:
        return [PlannedPass(members) for members in plan_packed(lengths, batch_tokens)]
    return [
        PlannedPass([i for group in groups for i in group], groups)
        for groups in plan_passes(lengths, batch_tokens, max_batch_size)
    ]


@dataclass
class HostPass:
    """A pass as flat host arrays, ready to copy to the device."""

    planned: PlannedPass
    input_ids: np.ndarray  # (rows,) int64, the pass's every row, padding included
    positions: np.ndarray  # (rows,) int64, each row's position within its sequence
    predictor_rows: np.ndarray  # (targets,) int64: the row whose hidden state predicts each target
    target_ids: np.ndarray  # (targets,) int64
    span_ends: np.ndarray  # (3 x sequences,) cumulative ends of every span's targets, in order
    real_tokens: int
    shapes: list[tuple[int, int]] | None = None  # padded: (count, length) per group
    starts: np.ndarray | None = None  # packed: each sequence's first row
    longest: int = 0  # the longest sequence

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]

    def split(self, logprobs: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """The pass's target log-probs cut into (first, second, end) per sequence, in order."""
        spans = np.split(logprobs, self.span_ends[:-1])
        return [tuple(spans[i : i + 3]) for i in range(0, len(spans), 3)]


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Every integer of every [start, end) range, range after range."""
    lengths = ends - starts
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(lengths.sum())


def _targets(sequences: list[ScoredSequence], bases: np.ndarray, input_ids: np.ndarray):
    spans = np.array([span for s in sequences for span in s.spans], dtype=np.int64).reshape(-1, 3, 2)
    starts = (spans[:, :, 0] + bases[:, None]).ravel()
    ends = (spans[:, :, 1] + bases[:, None]).ravel()
    target_rows = _ranges(starts, ends)
    # A token at row t is predicted by the hidden state at row t - 1 (spans never start at 0).
    return target_rows - 1, input_ids[target_rows], np.cumsum(ends - starts)


def lay_out(planned: PlannedPass, sequences: Sequence[ScoredSequence], pad_token_id: int) -> HostPass:
    """``planned`` as flat arrays: packed when it has no groups, else padded group by group."""
    members = [sequences[i] for i in planned.members]
    lengths = np.array([s.ids.shape[0] for s in members], dtype=np.int64)
    real = int(lengths.sum())
    if planned.groups is None:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        rows = padded_length(real)
        input_ids = np.full(rows, pad_token_id, dtype=np.int64)
        input_ids[:real] = np.concatenate([s.ids for s in members])
        positions = np.zeros(rows, dtype=np.int64)
        positions[:real] = np.arange(real) - np.repeat(starts, lengths)
        predictors, targets, span_ends = _targets(members, starts, input_ids)
        return HostPass(
            planned,
            input_ids,
            positions,
            predictors,
            targets,
            span_ends,
            real,
            starts=starts,
            longest=int(lengths.max()),
        )
    parts, shapes, bases, offset = [], [], [], 0
    for group in planned.groups:
        width = max(sequences[i].ids.shape[0] for i in group)
        block = np.full((len(group), width), pad_token_id, dtype=np.int64)
        for row, index in enumerate(group):
            block[row, : sequences[index].ids.shape[0]] = sequences[index].ids
            bases.append(offset + row * width)
        parts.append(block.ravel())
        shapes.append((len(group), width))
        offset += block.size
    input_ids = np.concatenate(parts)
    positions = np.concatenate([np.tile(np.arange(length), count) for count, length in shapes])
    predictors, targets, span_ends = _targets(members, np.array(bases, dtype=np.int64), input_ids)
    return HostPass(
        planned, input_ids, positions, predictors, targets, span_ends, real, shapes=shapes, longest=int(lengths.max())
    )
