"""Batched two-pass scoring: per-token log-probs of Q and A in both orders.

One causal pass over [Q;A] gives log p(Q) and log p(A|Q); one over [A;Q] gives log p(A)
and log p(Q|A). Sequences of all samples are length-sorted into groups of similar
length (right padding, so positions are unaffected), and groups are packed into forward
passes under a token budget; only span positions go through the output head, in chunks,
so a 150k-token vocabulary never materialises a whole batch of full-vocabulary log-softmax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qaq_assets.lib.scoring.engine.fused_decoder import fused_decoder_for
from qaq_assets.lib.scoring.engine.templates import OrderLayout, TemplateLayouts, encode
from qaq_assets.lib.settings import FORWARDS

log = logging.getLogger(__name__)

TRUNCATION_POLICY = "truncate-answer-tail-v1"
QUERY_FIRST, ANSWER_FIRST = 0, 1
MIN_ANSWER_TOKENS = 16
# One block of fp32 logits for the CPU log-sum-exp: small enough to stay in a core's L2.
REDUCE_BLOCK_BYTES = 1 << 20
HEAD_CHUNK_BYTES = 30 << 20
# The CPU's best budget (measured: larger passes gained nothing); GPUs get theirs from free memory.
CPU_BATCH_TOKENS = 4096
MAX_BATCH_TOKENS = 1 << 18
MIN_CUDA_BATCH_TOKENS = 1 << 14
# Share of a card's free memory a pass's activations may take (weights are already resident).
ACTIVATION_MEMORY_SHARE = 0.5


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
    the token budget it ended with (lower than asked after an out-of-memory back-off)."""

    passes: int = 0
    real_tokens: int = 0
    padding_tokens: int = 0
    batch_tokens: int = 0


class ScoredPairs(list):
    """Each pair's :class:`PairLogprobs`, in order, with the :class:`PassStats` that produced them."""

    def __init__(self, logprobs: list[PairLogprobs], stats: PassStats):
        super().__init__(logprobs)
        self.stats = stats


def fit_to_budget(query_ids: list[int], answer_ids: list[int], budget: int) -> PairTokens:
    """Apply the truncation policy: cut the answer's tail first; cut the query only when it
    alone leaves fewer than ``MIN_ANSWER_TOKENS`` for the answer. Both cuts are flagged."""
    if budget < 2:
        raise ValueError(f"token budget {budget} leaves no room for a query and an answer")
    query_truncated = answer_truncated = False
    answer_room = max(min(MIN_ANSWER_TOKENS, budget // 2), 1)
    if len(query_ids) + min(len(answer_ids), answer_room) > budget:
        query_ids, query_truncated = query_ids[: budget - min(len(answer_ids), answer_room)], True
    if len(query_ids) + len(answer_ids) > budget:
        answer_ids, answer_truncated = answer_ids[: budget - len(query_ids)], True
    return PairTokens(tuple(query_ids), tuple(answer_ids), query_truncated, answer_truncated)


def tokenize_pairs(
    tokenizer, layouts: TemplateLayouts, queries: Sequence[str], answers: Sequence[str], max_sequence_tokens: int
) -> list[PairTokens]:
    """Tokenise each segment alone and fit the pair into ``max_sequence_tokens`` with the template."""
    budget = max_sequence_tokens - layouts.overhead
    return [
        fit_to_budget(encode(tokenizer, q), encode(tokenizer, a), budget) for q, a in zip(queries, answers, strict=True)
    ]


@dataclass(frozen=True)
class _Sequence:
    pair: int
    order: int
    ids: tuple[int, ...]
    first: tuple[int, int]  # [start, end) of the first segment
    second: tuple[int, int]
    end: tuple[int, int]  # the scored end after the second segment (may be empty)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self.first, self.second, self.end


def _build_sequence(pair_index: int, order: int, layout: OrderLayout, first: tuple, second: tuple) -> _Sequence:
    start_first = len(layout.prefix)
    start_second = start_first + len(first) + len(layout.middle)
    start_end = start_second + len(second)
    return _Sequence(
        pair=pair_index,
        order=order,
        ids=layout.prefix + first + layout.middle + second + layout.end,
        first=(start_first, start_first + len(first)),
        second=(start_second, start_end),
        end=(start_end, start_end + len(layout.end)),
    )


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
    """Forward passes, each a list of groups from :func:`plan_batches` whose padded tokens
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


def auto_batch_tokens(model: torch.nn.Module, device: torch.device, free_bytes: int | None = None) -> int:
    """Tokens per forward pass for ``model`` on ``device``: the CPU's 4,096, or on CUDA what half
    the card's free memory holds of one layer's live activations per token (residual stream and
    norm, fused QKV, attention output, fused gate/up and SwiGLU), as a power of two in
    [16,384, 262,144]. The OOM back-off still halves it if a pass does not fit."""
    if device.type != "cuda":
        return CPU_BATCH_TOKENS
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    config = model.config
    width = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or width // heads
    key_width = getattr(config, "num_key_value_heads", heads) * head_dim
    intermediate = getattr(config, "intermediate_size", 4 * width)
    element = next(model.parameters()).element_size()
    per_token = element * (4 * width + (heads * head_dim + 2 * key_width) + 3 * intermediate)
    fitting = int(free_bytes * ACTIVATION_MEMORY_SHARE / per_token)
    power = 1 << max(fitting, 1).bit_length() - 1
    return max(MIN_CUDA_BATCH_TOKENS, min(MAX_BATCH_TOKENS, power))


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class PairScorer:
    """Score (query, answer) token pairs with one causal LM in two passes per pair."""

    def __init__(
        self,
        model: torch.nn.Module,
        layouts: TemplateLayouts,
        pad_token_id: int,
        batch_tokens: int = 0,
        max_batch_size: int = 64,
        head_chunk_elements: int | None = None,
        forward: str = "fused",
    ):
        self.model = model
        self.layouts = layouts
        self.pad_token_id = pad_token_id
        self.device = next(model.parameters()).device
        # 0: sized for the device (see auto_batch_tokens).
        self.batch_tokens = batch_tokens or auto_batch_tokens(model, self.device)
        self.max_batch_size = max_batch_size
        self.head = model.get_output_embeddings()
        # Default: logits chunks of just under 32 MiB, the largest block glibc still serves from
        # the warm heap (larger ones are fresh mmap pages, page-faulted on every chunk).
        self.head_chunk_elements = head_chunk_elements or HEAD_CHUNK_BYTES // self.head.weight.element_size()
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, model.base_model_prefix)
        if forward not in FORWARDS:
            raise ValueError(f"forward must be one of {FORWARDS}, not {forward!r}")
        self.fused = fused_decoder_for(model) if forward != "reference" else None
        self.forward = forward if self.fused is not None else "reference"
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        vocab = self.head.weight.shape[0]
        # Rows per fp32 log-sum-exp block; None: whole head chunks (GPUs want few, large kernels).
        self.reduce_block_rows = None if self.device.type == "cuda" else max(1, REDUCE_BLOCK_BYTES // (4 * vocab))

    def sequences(self, pairs: Sequence[PairTokens]) -> list[_Sequence]:
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
        sequences per pair). ``batch_tokens`` overrides the scorer's budget for this call (a caller
        passes back ``stats.batch_tokens`` after an out-of-memory back-off, so the next call does
        not run out of memory again); the scorer's own setting never changes."""
        sequences = self.sequences(pairs)
        spans: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        lengths = [len(s.ids) for s in sequences]
        budget = batch_tokens or self.batch_tokens
        passes = real = padded = 0
        pending = plan_passes(lengths, budget, self.max_batch_size)
        while pending:
            groups = pending.pop(0)
            # The pass's sequences in order: _forward returns their results in this order.
            members = [i for group in groups for i in group]
            try:
                results, pass_padded = self._forward([[sequences[i] for i in group] for group in groups])
            except (RuntimeError, torch.OutOfMemoryError) as error:
                if not _is_out_of_memory(error) or len(members) == 1:
                    raise
                self._release_memory()
                budget = max(budget // 2, 1)
                log.warning("out of memory on a pass of %d sequences; batch token budget now %d", len(members), budget)
                remaining = members + [i for planned in pending for group in planned for i in group]
                replanned = plan_passes([lengths[i] for i in remaining], budget, self.max_batch_size)
                pending = [[[remaining[j] for j in group] for group in planned] for planned in replanned]
                continue
            for index, result in zip(members, results, strict=True):
                spans[(sequences[index].pair, sequences[index].order)] = result
            pass_real = sum(lengths[i] for i in members)
            passes, real, padded = passes + 1, real + pass_real, padded + pass_padded
            if on_pass is not None:
                on_pass(len(members), pass_real)
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
        return ScoredPairs(logprobs, PassStats(passes, real, padded - real, budget))

    def describe_forward(self) -> str:
        """Which forward pass scores, e.g. ``fused, compiled`` or ``reference``."""
        if self.fused is None:
            return "reference"
        kernels = self.fused.kernels(compile=self.forward == "fused")
        if kernels.compiled:
            return "fused, compiled element-wise steps"
        return f"fused, eager element-wise steps ({kernels.compile_error or 'not compiled'})"

    def hidden_rows(self, groups: list[torch.Tensor]) -> torch.Tensor:
        """The decoder's last hidden states for right-padded groups of ``input_ids``, as token
        rows: group after group, each flattened."""
        if self.fused is not None:
            return self.fused.rows(groups, compile=self.forward == "fused")
        return torch.cat(
            [self.decoder(input_ids=ids, use_cache=False).last_hidden_state.flatten(0, 1) for ids in groups]
        )

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _forward(self, groups: list[list[_Sequence]]) -> tuple[list[tuple[np.ndarray, ...]], int]:
        """One forward pass over ``groups``: each sequence's span log-probs (first, second, end),
        in order, and the pass's padded token count."""
        group_ids, targets = [], []
        offset = 0
        for group in groups:
            width = max(len(s.ids) for s in group)
            input_ids = torch.full((len(group), width), self.pad_token_id, dtype=torch.long)
            for row, sequence in enumerate(group):
                input_ids[row, : len(sequence.ids)] = torch.tensor(sequence.ids)
                for start, end in sequence.spans:
                    # Targets as token rows of the whole pass (see :meth:`hidden_rows`).
                    targets.extend(range(offset + row * width + start, offset + row * width + end))
            group_ids.append(input_ids.to(self.device))
            offset += input_ids.numel()
        # No attention mask: padding is on the right, so causal attention already keeps every
        # real token from seeing it, and SDPA takes its faster is_causal path.
        hidden = self.hidden_rows(group_ids)
        target_rows = torch.tensor(targets, device=self.device)
        token_ids = torch.cat([ids.view(-1) for ids in group_ids])
        # A token at position t is predicted by the hidden state at t - 1.
        logprobs = self._target_logprobs(hidden[target_rows - 1], token_ids[target_rows])
        logprobs = logprobs.float().cpu().numpy()

        results, offset = [], 0
        padded = sum(ids.numel() for ids in group_ids)
        for sequence in (s for group in groups for s in group):
            spans = []
            for start, end in sequence.spans:
                spans.append(logprobs[offset : offset + end - start])
                offset += end - start
            results.append(tuple(spans))
        return results, padded

    def _target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) for each row of ``hidden``: the head runs on ``head_chunk_elements``-sized
        chunks; on CPU the fp32 log-sum-exp then walks each chunk in cache-sized blocks, in place,
        which took the head from 348 to 144 ms per 2048 tokens here (exactly equal results)."""
        vocab = self.head.weight.shape[0]
        chunk = max(1, self.head_chunk_elements // vocab)
        block = self.reduce_block_rows or chunk
        result = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            logits = self.head(hidden[start : start + chunk])
            for offset in range(0, logits.shape[0], block):
                # A fresh fp32 block (or, in fp32, the block itself) that the steps below overwrite.
                scores = logits[offset : offset + block].float()
                rows = slice(start + offset, start + offset + scores.shape[0])
                if self.softcap:
                    scores.div_(self.softcap).tanh_().mul_(self.softcap)
                picked = scores.gather(1, targets[rows, None]).squeeze(1)
                peak = scores.amax(dim=-1, keepdim=True)
                log_normaliser = scores.sub_(peak).exp_().sum(dim=-1).log_().add_(peak.squeeze(1))
                result[rows] = picked - log_normaliser
        return result
