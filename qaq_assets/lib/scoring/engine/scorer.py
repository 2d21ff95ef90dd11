"""Batched two-pass scoring: per-token log-probs of Q and A in both orders.

One causal pass over [Q;A] gives log p(Q) and log p(A|Q); one over [A;Q] gives log p(A)
and log p(Q|A). The sequences of all samples go into forward passes of at most ``batch_tokens`` tokens,
packed into one stream or in padded length groups (:mod:`passes`); only the rows that
predict a scored token go through the output head (:mod:`output_head`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qaq_assets.lib.scoring.config import ATTENTIONS, FORWARDS
from qaq_assets.lib.scoring.engine.fused_decoder import fused_decoder_for
from qaq_assets.lib.scoring.engine.output_head import OutputHead
from qaq_assets.lib.scoring.engine.pass_transfer import DevicePass, PendingLogprobs, send
from qaq_assets.lib.scoring.engine.passes import (
    PACKED,
    PADDED,
    HostPass,
    PlannedPass,
    ScoredSequence,
    lay_out,
    plan,
)
from qaq_assets.lib.scoring.engine.templates import OrderLayout, TemplateLayouts, encode_each

log = logging.getLogger(__name__)

TRUNCATION_POLICY = "truncate-answer-tail-v1"
QUERY_FIRST, ANSWER_FIRST = 0, 1
MIN_ANSWER_TOKENS = 16
CUDA_MAX_BATCH_SIZE = 64
# The CPU's best batch_tokens (measured: larger passes gained nothing); GPUs get theirs from free memory.
CPU_BATCH_TOKENS = 4096
MAX_BATCH_TOKENS = 1 << 18
MIN_CUDA_BATCH_TOKENS = 1 << 14
# Share of a card's free memory a pass's activations may take (weights are already resident).
ACTIVATION_MEMORY_SHARE = 0.5
# Compiled GPU kernels index with int32 while every tensor they touch has fewer elements than
# this; a pass past it would recompile them mid-run for int64 indexing (and run them slower).
INT32_INDEXED_ELEMENTS = 2**31 - 1


@dataclass(frozen=True)
class PairTokens:
    query_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    query_truncated: bool = False
    answer_truncated: bool = False


@dataclass
class PairLogprobs:
    query: np.ndarray  # log p(Q) token by token, from [Q;A]
    answer_given_query: np.ndarray  # log p(A|Q), from [Q;A]
    answer: np.ndarray  # log p(A), from [A;Q]
    query_given_answer: np.ndarray  # log p(Q|A), from [A;Q]
    # log p(end of the answer's turn | Q, A), from [Q;A]: low for an answer cut off mid-way.
    answer_end: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))


@dataclass(frozen=True)
class PassStats:
    """What one :meth:`PairScorer.score` call ran: forward passes, real and padding tokens, and
    the batch_tokens it ended with (lower than asked after an out-of-memory back-off)."""

    passes: int = 0
    real_tokens: int = 0
    padding_tokens: int = 0
    batch_tokens: int = 0


class ScoredPairs(list):
    """Each pair's :class:`PairLogprobs`, in order, with the :class:`PassStats` that produced them."""

    def __init__(self, logprobs: list[PairLogprobs], stats: PassStats):
        super().__init__(logprobs)
        self.stats = stats


def fit_to_tokens(query_ids: list[int], answer_ids: list[int], content_tokens: int) -> PairTokens:
    """Apply the truncation policy: cut the answer's tail first; cut the query only when it
    alone leaves fewer than ``MIN_ANSWER_TOKENS`` for the answer. Both cuts are flagged."""
    if content_tokens < 2:
        raise ValueError(f"{content_tokens} tokens leave no room for a query and an answer")
    query_truncated = answer_truncated = False
    answer_room = max(min(MIN_ANSWER_TOKENS, content_tokens // 2), 1)
    if len(query_ids) + min(len(answer_ids), answer_room) > content_tokens:
        query_ids, query_truncated = query_ids[: content_tokens - min(len(answer_ids), answer_room)], True
    if len(query_ids) + len(answer_ids) > content_tokens:
        answer_ids, answer_truncated = answer_ids[: content_tokens - len(query_ids)], True
    return PairTokens(tuple(query_ids), tuple(answer_ids), query_truncated, answer_truncated)


def tokenize_pairs(
    tokenizer, layouts: TemplateLayouts, queries: Sequence[str], answers: Sequence[str], max_sequence_tokens: int
) -> list[PairTokens]:
    """Tokenise each segment alone and fit the pair into ``max_sequence_tokens`` with the template."""
    if len(queries) != len(answers):
        raise ValueError(f"{len(queries)} queries but {len(answers)} answers")
    content_tokens = max_sequence_tokens - layouts.overhead
    query_ids, answer_ids = encode_each(tokenizer, queries), encode_each(tokenizer, answers)
    return [fit_to_tokens(q, a, content_tokens) for q, a in zip(query_ids, answer_ids, strict=True)]


def _build_sequence(pair_index: int, order: int, layout: OrderLayout, first: tuple, second: tuple) -> ScoredSequence:
    start_first = len(layout.prefix)
    start_second = start_first + len(first) + len(layout.middle)
    start_end = start_second + len(second)
    return ScoredSequence(
        pair=pair_index,
        order=order,
        ids=np.array(layout.prefix + first + layout.middle + second + layout.end, dtype=np.int64),
        first=(start_first, start_first + len(first)),
        second=(start_second, start_end),
        end=(start_end, start_end + len(layout.end)),
    )


def _activation_widths(config) -> tuple[int, int, int]:
    """(residual width, fused QKV width, MLP width) of a decoder config."""
    width = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or width // heads
    qkv_width = heads * head_dim + 2 * getattr(config, "num_key_value_heads", heads) * head_dim
    return width, qkv_width, getattr(config, "intermediate_size", 4 * width)


def activation_bytes_per_token(model: torch.nn.Module) -> int:
    """batch_tokens' memory model: one layer's live activations per token (residual stream and
    norm, fused QKV, attention output, fused gate/up and SwiGLU), in the model's dtype."""
    width, qkv_width, intermediate = _activation_widths(model.config)
    return next(model.parameters()).element_size() * (4 * width + qkv_width + 3 * intermediate)


def auto_batch_tokens(model: torch.nn.Module, device: torch.device, free_bytes: int | None = None) -> int:
    """Tokens per forward pass for ``model`` on ``device``: the CPU's 4,096, or on CUDA what half
    the card's free memory holds of :func:`activation_bytes_per_token`, as a power of two in
    [16,384, 262,144], lowered to a multiple of 1,024 where the widest activation (fused
    gate/up, or fused QKV) would pass int32 indexing. The OOM back-off still halves it if a
    pass does not fit."""
    if device.type != "cuda":
        return CPU_BATCH_TOKENS
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    width, qkv_width, intermediate = _activation_widths(model.config)
    fitting = int(free_bytes * ACTIVATION_MEMORY_SHARE / activation_bytes_per_token(model))
    power = 1 << max(fitting, 1).bit_length() - 1
    int32_indexable = INT32_INDEXED_ELEMENTS // max(2 * intermediate, qkv_width, width)
    return max(MIN_CUDA_BATCH_TOKENS, min(MAX_BATCH_TOKENS, power, int32_indexable // 1024 * 1024))


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class PairScorer:
    """Score (query, answer) token pairs with one causal LM in two passes per pair.

    ``attention``: ``packed`` (one stream per pass, one attention call over it; needs the
    fused forward and a packed kernel, see :class:`PackedAttention`), ``padded`` (length
    groups, attention per group), or ``auto``: packed on CUDA where a kernel holds, padded
    elsewhere. Passes are pipelined: the host lays out and launches pass n + 1 before it
    reads pass n's results, so a GPU never waits on the host between them."""

    def __init__(
        self,
        model: torch.nn.Module,
        layouts: TemplateLayouts,
        pad_token_id: int,
        batch_tokens: int = 0,
        max_batch_size: int = 0,
        head_chunk_elements: int | None = None,
        forward: str = "fused",
        attention: str = "auto",
        head: str = "auto",
    ):
        self.model = model
        self.layouts = layouts
        self.pad_token_id = pad_token_id
        self.device = next(model.parameters()).device
        # 0: sized for the device (see auto_batch_tokens).
        self.batch_tokens = batch_tokens or auto_batch_tokens(model, self.device)
        # 0: by device. On CPU the matmuls give each row the same bits whatever rows share the
        # call, so attention alone could make a sample's bf16 scores depend on its neighbours
        # (padding to a group's length moves the kernel's blocking): one sequence per group
        # removes that, measured at no cost there. CUDA's GEMMs pick kernels by shape anyway.
        self.max_batch_size = max_batch_size or (CUDA_MAX_BATCH_SIZE if self.device.type == "cuda" else 1)
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, model.base_model_prefix)
        if forward not in FORWARDS:
            raise ValueError(f"forward must be one of {FORWARDS}, not {forward!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
        self.fused = fused_decoder_for(model) if forward != "reference" else None
        self.forward = forward if self.fused is not None else "reference"
        self.compile = self.forward == "fused"
        self.head = OutputHead(model, compile=self.compile, chunk_elements=head_chunk_elements, head=head)
        self.attention = attention
        self._layout: str | None = None

    @property
    def layout(self) -> str:
        """The pass layout this scorer uses (see the class's ``attention``), settled on first use."""
        if self._layout is None:
            self._layout = self._resolve_layout()
        return self._layout

    def _resolve_layout(self) -> str:
        wants_packed = self.attention == PACKED or (self.attention == "auto" and self.device.type == "cuda")
        if not wants_packed:
            return PADDED
        if self.fused is None:
            log.info("packed attention needs the fused forward; %s attends per length group", self.forward)
            return PADDED
        if self.fused.packed_attention(self.compile).kernel is None:
            return PADDED
        return PACKED

    def sequences(self, pairs: Sequence[PairTokens]) -> list[ScoredSequence]:
        query_first, answer_first = self.layouts.query_first, self.layouts.answer_first
        sequences = []
        for i, pair in enumerate(pairs):
            sequences.append(_build_sequence(i, QUERY_FIRST, query_first, pair.query_ids, pair.answer_ids))
            sequences.append(_build_sequence(i, ANSWER_FIRST, answer_first, pair.answer_ids, pair.query_ids))
        return sequences

    def score(
        self,
        pairs: Sequence[PairTokens],
        on_pass: Callable[[int, int], None] | None = None,
        batch_tokens: int | None = None,
    ) -> ScoredPairs:
        """Log-probs of every pair, with the statistics of the passes that computed them.

        ``on_pass(sequences, tokens)`` is called after each forward pass with what it scored (two
        sequences per pair). ``batch_tokens`` overrides the scorer's own for this call (a caller
        passes back ``stats.batch_tokens`` after an out-of-memory back-off, so the next call does
        not run out of memory again); the scorer's own setting never changes."""
        sequences = self.sequences(pairs)
        spans: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        lengths = [s.ids.shape[0] for s in sequences]
        batch_tokens = batch_tokens or self.batch_tokens
        counts = {"passes": 0, "real": 0, "rows": 0}

        def collect(pending: PendingLogprobs) -> None:
            members = pending.host.planned.members
            for index, result in zip(members, pending.wait(), strict=True):
                spans[(sequences[index].pair, sequences[index].order)] = result
            counts["passes"] += 1
            counts["real"] += pending.host.real_tokens
            counts["rows"] += pending.host.rows
            if on_pass is not None:
                on_pass(len(members), pending.host.real_tokens)

        queue = deque(plan(self.layout, lengths, batch_tokens, self.max_batch_size))
        in_flight: PendingLogprobs | None = None
        while queue:
            planned = queue.popleft()
            try:
                launched = self._launch(lay_out(planned, sequences, self.pad_token_id))
            except (RuntimeError, torch.OutOfMemoryError) as error:
                if not _is_out_of_memory(error) or len(planned.members) == 1:
                    raise
                if in_flight is not None:
                    collect(in_flight)
                    in_flight = None
                self._release_memory()
                batch_tokens = max(batch_tokens // 2, 1)
                log.warning(
                    "out of memory on a pass of %d sequences; batch_tokens now %d", len(planned.members), batch_tokens
                )
                remaining = planned.members + [i for later in queue for i in later.members]
                replanned = plan(self.layout, [lengths[i] for i in remaining], batch_tokens, self.max_batch_size)
                queue = deque(_renumber(p, remaining) for p in replanned)
                continue
            # The device now has this pass queued behind the previous one: read the previous one.
            if in_flight is not None:
                collect(in_flight)
            in_flight = launched
        if in_flight is not None:
            collect(in_flight)
        logprobs = [
            PairLogprobs(
                query=spans[(i, QUERY_FIRST)][0],
                answer_given_query=spans[(i, QUERY_FIRST)][1],
                answer=spans[(i, ANSWER_FIRST)][0],
                query_given_answer=spans[(i, ANSWER_FIRST)][1],
                answer_end=spans[(i, QUERY_FIRST)][2],
            )
            for i in range(len(pairs))
        ]
        stats = PassStats(counts["passes"], counts["real"], counts["rows"] - counts["real"], batch_tokens)
        return ScoredPairs(logprobs, stats)

    def describe_forward(self) -> str:
        """Which forward pass scores, e.g. ``fused, compiled element-wise steps, packed attention``."""
        head = f"{self.head.head} head"
        if self.fused is None:
            return f"reference, {head}"
        kernels = self.fused.kernels(compile=self.compile)
        steps = (
            "compiled element-wise steps"
            if kernels.compiled
            else f"eager element-wise steps ({kernels.compile_error or 'not compiled'})"
        )
        if self.layout == PACKED:
            kernel = self.fused.packed_attention(self.compile).kernel
            return f"fused, {steps}, packed attention ({kernel}), {head}"
        return f"fused, {steps}, padded attention, {head}"

    def hidden_rows(self, device_pass: DevicePass) -> torch.Tensor:
        """The decoder's last hidden state of every row of ``device_pass``."""
        if self.fused is not None:
            return self.fused.rows(
                device_pass.input_ids, device_pass.positions, device_pass.shapes, device_pass.stream, self.compile
            )
        rows, start = [], 0
        for count, length in device_pass.shapes:
            input_ids = device_pass.input_ids[start : start + count * length].view(count, length)
            rows.append(self.decoder(input_ids=input_ids, use_cache=False).last_hidden_state.flatten(0, 1))
            start += count * length
        return torch.cat(rows)

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _launch(self, host: HostPass) -> PendingLogprobs:
        """Queue one forward pass and the copy of its log-probs back to the host."""
        packed = self.fused.packed_attention(self.compile) if host.starts is not None else None
        device_pass = send(host, self.device, packed)
        # Padded groups need no attention mask: padding is on the right, so causal attention
        # already keeps every real token from seeing it.
        hidden = self.hidden_rows(device_pass)
        logprobs = self.head.target_logprobs(hidden[device_pass.predictor_rows], device_pass.target_ids)
        return PendingLogprobs(host, logprobs)


def _renumber(planned: PlannedPass, indices: list[int]) -> PlannedPass:
    """``planned``, made over positions in ``indices``, in terms of the indices themselves."""
    groups = None if planned.groups is None else [[indices[j] for j in group] for group in planned.groups]
    return PlannedPass([indices[j] for j in planned.members], groups)
