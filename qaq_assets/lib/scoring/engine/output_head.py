"""log p(target) from the last hidden states: the output head and its log-softmax, gathered.

Only the rows whose next token is scored go through the head, in chunks, so a 150k-token
vocabulary never materialises a whole pass of logits. The float32 log-sum-exp is where
the two devices differ:

- CPU: each chunk is walked in cache-sized blocks, in place (cast, max, subtract, exp,
  sum), which keeps the fp32 block in a core's L2.
- CUDA: those five steps are five kernels over the whole chunk, each a round trip through
  memory (on an H200 they took 29.6 ms of a 0.5B model's head, whose matmul takes 6.2).
  There one compiled ``gather - logsumexp`` reads the bf16 logits once and reduces in
  float32: the same numbers (max difference 0 there) in 9.0 ms. ``F.cross_entropy`` on
  bf16 logits would be faster still but reduces in bf16 (0.03 nats off): not used.

``vocab-blocks`` (the ``head`` setting) never holds a row's whole vocabulary: each chunk of
rows meets the vocabulary in blocks, one matmul per block, with an online float32 log-sum-exp
(the scheme of cut-cross-entropy and Liger's fused linear cross-entropy, in eager torch). Its
memory is rows x block instead of rows x vocabulary, so a chunk holds many more rows for
less memory. The target's logit is read from its own block, the number the whole matmul gives.
"""

from __future__ import annotations

import logging

import torch

from qaq_assets.lib.errors import one_line
from qaq_assets.lib.scoring.config import HEADS

log = logging.getLogger(__name__)

# CPU: logits chunks of just under 32 MiB, the largest block glibc still serves from the warm
# heap (larger ones are fresh mmap pages, page-faulted on every chunk), reduced in 1 MiB blocks.
CPU_CHUNK_BYTES = 30 << 20
CPU_BLOCK_BYTES = 1 << 20
# CUDA: chunks wide enough that the head's matmul, not its launch, sets the pace.
CUDA_CHUNK_BYTES = 1 << 30
# The fused reduction is compiled on an example of a chunk's rows, at most this many.
MAX_COMPILE_EXAMPLE_ROWS = 4096
# vocab-blocks: vocabulary columns per block and the logits one block of rows holds, by device.
# CPU: 2,048 x 2,048 (measured faster than wider blocks or more rows at once, and than the
# logits head, on a Qwen2-0.5B-shaped head: `qaq bench head`). CUDA: wide
# matmuls, 16,384 rows a block (768 MiB in bf16 and fp32, under the logits head's 1 GiB).
CPU_VOCAB_BLOCK, CPU_VOCAB_BLOCKS_CHUNK_ELEMENTS = 2048, 1 << 22
CUDA_VOCAB_BLOCK, CUDA_VOCAB_BLOCKS_CHUNK_ELEMENTS = 8192, 1 << 27


def target_logprobs_fused(logits: torch.Tensor, targets: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """log_softmax(logits)[row, target] in float32, as one reduction over each row."""
    scores = logits.float()
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    return scores.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(scores, dim=-1)


def target_logprobs_blocked(
    logits: torch.Tensor, targets: torch.Tensor, softcap: float | None, block_rows: int
) -> torch.Tensor:
    """As :func:`target_logprobs_fused`, in blocks of ``block_rows`` rows, each reduced in place."""
    result = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    for offset in range(0, logits.shape[0], block_rows):
        rows = slice(offset, offset + block_rows)
        # A fresh fp32 block (or, in fp32, the block itself) that the steps below overwrite.
        scores = logits[rows].float()
        if softcap:
            scores.div_(softcap).tanh_().mul_(softcap)
        picked = scores.gather(1, targets[rows, None]).squeeze(1)
        peak = scores.amax(dim=-1, keepdim=True)
        result[rows] = picked - scores.sub_(peak).exp_().sum(dim=-1).log_().add_(peak.squeeze(1))
    return result


def target_logprobs_vocab_blocked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    softcap: float | None,
    vocab_block: int,
) -> torch.Tensor:
    """log_softmax(hidden @ weight.T + bias)[row, target] in float32, without the
    ``[rows, vocabulary]`` logits: ``vocab_block`` columns at a time, with a running maximum
    and a running sum of exponentials rescaled to it."""
    rows, vocab = hidden.shape[0], weight.shape[0]
    options = {"dtype": torch.float32, "device": hidden.device}
    picked = torch.zeros(rows, **options)
    running_max = torch.full((rows,), float("-inf"), **options)
    running_sum = torch.zeros(rows, **options)
    for start in range(0, vocab, vocab_block):
        end = min(start + vocab_block, vocab)
        block_bias = None if bias is None else bias[start:end]
        # A fresh block (fp32 after the cast, or already) that the steps below overwrite.
        scores = torch.nn.functional.linear(hidden, weight[start:end], block_bias).float()
        if softcap:
            scores.div_(softcap).tanh_().mul_(softcap)
        offset = targets - start
        # No data-dependent indexing: a GPU never waits on the host between blocks.
        inside = (offset >= 0) & (offset < end - start)
        candidate = scores.gather(1, offset.clamp(0, end - start - 1)[:, None]).squeeze(1)
        picked = torch.where(inside, candidate, picked)
        new_max = torch.maximum(running_max, scores.amax(dim=1))
        block_sum = scores.sub_(new_max[:, None]).exp_().sum(dim=1)
        running_sum = running_sum * torch.exp(running_max - new_max) + block_sum
        running_max = new_max
    return picked - running_max - running_sum.log()


class OutputHead:
    """The model's output head, applied to the rows that predict a scored token.

    ``head``: ``logits`` (each chunk's logits, then a row reduction: ``reduction``),
    ``vocab-blocks`` (no logits tensor, see :func:`target_logprobs_vocab_blocked`), or
    ``auto``: vocab-blocks on CPU, logits on CUDA.
    ``reduction``: ``blocked`` (the CPU's) or ``fused`` (compiled when ``compile``; eager
    where compiling fails, with ``compile_error`` saying why). Default: by device."""

    def __init__(
        self,
        model: torch.nn.Module,
        compile: bool = True,
        reduction: str | None = None,
        chunk_elements: int | None = None,
        head: str = "auto",
        vocab_block: int | None = None,
    ):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        self.linear = model.get_output_embeddings()
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        weight = self.linear.weight
        self.vocab = weight.shape[0]
        self.reduction = reduction or ("fused" if weight.device.type == "cuda" else "blocked")
        if self.reduction not in ("blocked", "fused"):
            raise ValueError(f"reduction must be blocked or fused, not {self.reduction!r}")
        on_cuda = weight.device.type == "cuda"
        if head == "auto":
            head = "logits" if on_cuda else "vocab-blocks"
        self.head = head
        self.vocab_block = min(vocab_block or (CUDA_VOCAB_BLOCK if on_cuda else CPU_VOCAB_BLOCK), self.vocab)
        if head == "vocab-blocks":
            default_elements = CUDA_VOCAB_BLOCKS_CHUNK_ELEMENTS if on_cuda else CPU_VOCAB_BLOCKS_CHUNK_ELEMENTS
        else:
            chunk_bytes = CUDA_CHUNK_BYTES if self.reduction == "fused" else CPU_CHUNK_BYTES
            default_elements = chunk_bytes // weight.element_size()
        self.chunk_elements = chunk_elements or default_elements
        self.block_rows = max(1, CPU_BLOCK_BYTES // (4 * self.vocab))
        self.compile_error: str | None = None
        self._fused = target_logprobs_fused
        self.compiled = (
            head == "logits"
            and self.reduction == "fused"
            and compile
            and self._try_compile(weight.dtype, weight.device)
        )

    def _try_compile(self, dtype: torch.dtype, device: torch.device) -> bool:
        # The row count is dynamic (one graph serves every chunk), the vocabulary width static:
        # the reduction's loop is then generated for this model's width, as it was measured.
        # The example is chunk-sized: from a few rows, a GPU compile would split each row's
        # reduction across blocks (right for three rows, not for thousands) and keep that.
        fused = torch.compile(target_logprobs_fused)
        rows = min(self.chunk_rows, MAX_COMPILE_EXAMPLE_ROWS)
        try:
            with torch.inference_mode():
                logits = torch.randn(rows, self.vocab, dtype=dtype, device=device)
                targets = torch.zeros(rows, dtype=torch.long, device=device)
                torch._dynamo.mark_dynamic(logits, 0)
                torch._dynamo.mark_dynamic(targets, 0)
                fused(logits, targets, self.softcap)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: stay eager
            self.compile_error = one_line(error)
            log.warning("the head's log-softmax runs eagerly: compiling it failed (%s)", self.compile_error)
            return False
        self._fused = fused
        return True

    @property
    def chunk_rows(self) -> int:
        """Rows that go through the head at once: as many as ``chunk_elements`` logits hold (of
        the vocabulary, or of one vocabulary block)."""
        width = self.vocab_block if self.head == "vocab-blocks" else self.vocab
        return max(1, self.chunk_elements // width)

    def target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(``targets[i]``) from ``hidden[i]``, float32."""
        chunk = self.chunk_rows
        result = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            if self.head == "vocab-blocks":
                result[rows] = target_logprobs_vocab_blocked(
                    hidden[rows], self.linear.weight, self.linear.bias, targets[rows], self.softcap, self.vocab_block
                )
                continue
            logits = self.linear(hidden[rows])
            if self.reduction == "fused":
                result[rows] = self._fused(logits, targets[rows], self.softcap)
            else:
                result[rows] = target_logprobs_blocked(logits, targets[rows], self.softcap, self.block_rows)
        return result
