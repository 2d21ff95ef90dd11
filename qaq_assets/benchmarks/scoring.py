"""``qaq bench scoring``: the project's scorer against the naive reference, same samples,
same model, one process. Prints tokens/s, speedup and MFU (achieved FLOP rate over a
measured matmul rate); the equality check raises on a mismatch.

Needs only torch, transformers, tokenizers and numpy (a bare CUDA machine has no polars,
deltalake or dagster): JSONL shards are read with the plain reader."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qaq_assets.lib.errors import one_line
from qaq_assets.lib.ingest.record_fields import read_pairs, sample_id_for
from qaq_assets.lib.scoring.backends.local import prepare_worker
from qaq_assets.lib.scoring.engine.models import LoadedModel, load_model, resolve_dtype
from qaq_assets.lib.scoring.engine.reference import mean_nlls, naive_pair_logprobs
from qaq_assets.lib.scoring.engine.scorer import (
    PairScorer,
    PairTokens,
    activation_bytes_per_token,
    tokenize_pairs,
)
from qaq_assets.lib.scoring.engine.templates import build_layouts

QUANTITIES = ("nll_query", "nll_answer_given_query", "nll_answer", "nll_query_given_answer")
# Same precision: the two computations must agree to float32 rounding of a mean.
EXACT_TOLERANCE = 1e-3
# bf16 vs fp32 weights change per-token NLLs by ~0.03 nats here (rank correlation 0.999).
REDUCED_PRECISION_TOLERANCE = 0.15
# The scorer in a reduced dtype may sit this many times as far from float32 as the naive loop
# in that dtype does.
DTYPE_DRIFT_ALLOWANCE = 2.0
# --lengths long: tokens per pair (query + answer) log-normal with this median and 95th
# percentile, capped (and never under the floor): real code answers run to thousands of tokens.
LONG_MEDIAN_TOKENS, LONG_P95_TOKENS, LONG_MAX_TOKENS, LONG_MIN_TOKENS = 1024, 4096, 8192, 64
LONG_QUERY_SHARE = 0.1


class BenchMismatch(AssertionError):
    """The project's scorer and the naive reference disagree beyond tolerance."""


def check_equal(reference: np.ndarray, candidate: np.ndarray, tolerance: float, label: str) -> float:
    """Max absolute difference of the four mean NLLs; raises :class:`BenchMismatch` beyond ``tolerance``."""
    if reference.shape != candidate.shape:
        raise BenchMismatch(f"{label}: shapes differ {reference.shape} vs {candidate.shape}")
    if not np.isfinite(candidate).all():
        sample, quantity = np.argwhere(~np.isfinite(candidate))[0]
        raise BenchMismatch(f"{label}: {QUANTITIES[quantity]} of sample {sample} is {candidate[sample, quantity]}")
    difference = np.abs(reference - candidate)
    worst = float(difference.max()) if difference.size else 0.0
    if worst > tolerance:
        sample, quantity = np.unravel_index(int(np.argmax(difference)), difference.shape)
        raise BenchMismatch(
            f"{label}: {QUANTITIES[quantity]} of sample {sample} differs by {worst:.5f} nats/token "
            f"(reference {reference[sample, quantity]:.5f}, scorer {candidate[sample, quantity]:.5f}; "
            f"tolerance {tolerance})"
        )
    return worst


def matmul_size(device: torch.device) -> int:
    """The square matmul that sets the bench's peak: 8192 on a GPU (model FLOPs utilisation), 2048 on a CPU."""
    return 8192 if device.type == "cuda" else 2048


def matmul_gflops(
    dtype: torch.dtype, device: torch.device, size: int = 2048, seconds: float = 1.0, windows: int = 5
) -> float:
    """Sustained GFLOP/s of a square matmul in ``dtype`` on ``device`` (the roofline for the bench):
    the best of ``windows`` equal windows, so that other work on a shared machine in one of them
    does not lower the peak (and raise the MFU measured against it)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    synchronize(device)
    best = 0.0
    for _ in range(windows):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            torch.matmul(a, b)
            synchronize(device)
            runs += 1
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - start) / 1e9)
    return best


@dataclass
class BenchResult:
    samples: int
    content_tokens: int
    naive_tokens_per_second: float
    scorer_seconds: float
    scorer_forward_tokens: int
    padding_fraction: float
    parameters: int
    matmul_gflops: float
    scorer_dtype: str
    attention_flops: float
    matmul_size: int = 2048
    forward: str = ""

    @property
    def attention_gflops(self) -> float:
        """Achieved rate counting the causal attention's FLOPs too (2 x parameters x tokens leaves them out)."""
        return (2 * self.parameters * self.scorer_forward_tokens + self.attention_flops) / self.scorer_seconds / 1e9

    @property
    def speedup(self) -> float:
        return self.tokens_per_second / self.naive_tokens_per_second

    @property
    def tokens_per_second(self) -> float:
        return self.content_tokens / self.scorer_seconds

    @property
    def achieved_gflops(self) -> float:
        return 2 * self.parameters * self.scorer_forward_tokens / self.scorer_seconds / 1e9

    @property
    def fraction_of_matmul_peak(self) -> float:
        return self.achieved_gflops / self.matmul_gflops


def load_bench_pairs(paths: list[Path], samples: int) -> tuple[list[str], list[str]]:
    """Up to ``samples`` distinct pairs from JSONL shards, repeated when the shards hold fewer
    (the bench wants a GPU-sized batch from the small sample data)."""
    seen: set[str] = set()
    queries, answers = [], []
    for path in paths:
        for query, answer in read_pairs(path):
            if (sample_id := sample_id_for(query, answer)) not in seen:
                seen.add(sample_id)
                queries.append(query)
                answers.append(answer)
    if not queries:
        raise ValueError(f"no samples in {paths}")
    repeats = -(-samples // len(queries))
    return (queries * repeats)[:samples], (answers * repeats)[:samples]


def long_pairs(tokenizer, samples: int, longest: int, seed: int = 0) -> list[PairTokens]:
    """``samples`` pairs of random ordinary tokens of the tokenizer's vocabulary, their lengths
    log-normal (median ``LONG_MEDIAN_TOKENS``, 95th percentile ``LONG_P95_TOKENS``), capped at
    ``min(LONG_MAX_TOKENS, longest)``; a tenth of each pair (at least 16 tokens) is the query."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    ordinary = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    sigma = np.log(LONG_P95_TOKENS / LONG_MEDIAN_TOKENS) / 1.6449  # the normal's 95th percentile
    totals = np.exp(rng.normal(np.log(LONG_MEDIAN_TOKENS), sigma, samples))
    totals = np.clip(totals.round().astype(int), LONG_MIN_TOKENS, min(LONG_MAX_TOKENS, longest))
    pairs = []
    for total in totals:
        query = max(16, int(total * LONG_QUERY_SHARE))
        ids = rng.choice(ordinary, int(total)).tolist()
        pairs.append(PairTokens(tuple(ids[:query]), tuple(ids[query:])))
    return pairs


def run_bench(
    loaded: LoadedModel,
    queries: list[str],
    answers: list[str],
    scorer_dtype: torch.dtype,
    template: str = "auto",
    batch_tokens: int = 0,
    forward: str = "fused",
    attention: str = "auto",
    head: str = "auto",
    naive_samples: int = 48,
    exact_check_samples: int = 8,
    profile_samples: int = 0,
    lengths: str = "data",
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Time the naive reference (``loaded``: float32, as peers load models) on the first
    ``naive_samples`` and the scorer in ``scorer_dtype`` on all; the speedup compares rates.
    With ``profile_samples``, the scorer's busiest operations over that many pairs, untimed.
    ``lengths``: ``data`` (the texts given) or ``long`` (as many random-token pairs of
    :func:`long_pairs`' lengths)."""
    if loaded.dtype != torch.float32:
        raise ValueError("the reference model must be loaded in float32")
    prepare_worker(loaded.device)
    reference_model = loaded.model
    production_model = (
        reference_model if scorer_dtype == torch.float32 else copy.deepcopy(reference_model).to(scorer_dtype)
    )
    dtype_name = str(scorer_dtype).removeprefix("torch.")
    layouts = build_layouts(template, loaded.tokenizer)
    pairs = _bench_pairs(loaded, layouts, queries, answers, lengths, log)
    content_tokens = sum(len(p.query_ids) + len(p.answer_ids) for p in pairs)
    pad = loaded.tokenizer.pad_token_id

    naive_pairs = pairs[: max(1, min(naive_samples, len(pairs)))]
    naive_tokens = sum(len(p.query_ids) + len(p.answer_ids) for p in naive_pairs)
    naive_pair_logprobs(reference_model, layouts, naive_pairs[0])  # warm-up: first-call allocations
    synchronize(loaded.device)
    start = time.perf_counter()
    naive = mean_nlls([naive_pair_logprobs(reference_model, layouts, pair) for pair in naive_pairs])
    naive_seconds = time.perf_counter() - start
    log(
        f"naive (1 sample/pass, 4 passes, float32) over {len(naive_pairs)} samples: {naive_seconds:.1f}s, "
        f"{naive_tokens / naive_seconds:.0f} tokens/s"
    )

    scorer = PairScorer(
        production_model, layouts, pad, batch_tokens=batch_tokens, forward=forward, attention=attention, head=head
    )
    start = time.perf_counter()
    scorer.score(pairs[: min(4, len(pairs))])  # warm-up: kernel compilation, first-call allocations
    synchronize(loaded.device)
    warmup_seconds = time.perf_counter() - start
    log(f"scorer warm-up ({scorer.describe_forward()}): {warmup_seconds:.1f}s, once per process")
    on_cuda = loaded.device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(loaded.device)
        resident = torch.cuda.memory_allocated(loaded.device)
    start = time.perf_counter()
    result = scorer.score(pairs)
    synchronize(loaded.device)
    scorer_seconds = time.perf_counter() - start
    scored, stats = mean_nlls(result), result.stats
    log(
        f"scorer (batched, 2 passes, {dtype_name}): {scorer_seconds:.1f}s, "
        f"{content_tokens / scorer_seconds:.0f} tokens/s, {stats.passes} forward passes"
    )
    if on_cuda:
        peak = torch.cuda.max_memory_allocated(loaded.device) - resident
        modelled = activation_bytes_per_token(production_model) * stats.batch_tokens
        log(
            f"memory: passes of {stats.batch_tokens} tokens peaked at {peak / 2**30:.2f} GiB over the "
            f"resident {resident / 2**30:.2f} GiB; the budget's model says {modelled / 2**30:.2f} GiB "
            f"(measured/modelled {peak / max(modelled, 1):.2f})"
        )
    if profile_samples:
        try:
            lines = profile_lines(scorer, pairs[:profile_samples], loaded.device)
        except Exception as error:  # noqa: BLE001 - a profiler that cannot run (no CUPTI) must not cost the figures
            lines = [f"profile unavailable: {one_line(error)}"]
        for line in lines:
            log(line)

    exact_scorer = PairScorer(
        reference_model, layouts, pad, batch_tokens=batch_tokens, forward=forward, attention=attention, head=head
    )
    log(_equality_line(exact_scorer, production_model, layouts, naive_pairs, naive, scored, exact_check_samples))

    size = matmul_size(loaded.device)
    peak = matmul_gflops(scorer_dtype, loaded.device, size=size)
    return BenchResult(
        samples=len(pairs),
        content_tokens=content_tokens,
        naive_tokens_per_second=naive_tokens / naive_seconds,
        scorer_seconds=scorer_seconds,
        scorer_forward_tokens=stats.real_tokens,
        padding_fraction=stats.padding_tokens / max(stats.padding_tokens + stats.real_tokens, 1),
        parameters=loaded.parameters,
        matmul_gflops=peak,
        scorer_dtype=dtype_name,
        attention_flops=causal_attention_flops(
            production_model.config, [s.ids.shape[0] for s in scorer.sequences(pairs)]
        ),
        matmul_size=size,
        forward=scorer.describe_forward(),
    )


def _bench_pairs(
    loaded: LoadedModel, layouts, queries: list[str], answers: list[str], lengths: str, log: Callable[[str], None]
) -> list[PairTokens]:
    """The pairs the bench scores: the texts tokenised, or random-token pairs of long lengths."""
    start = time.perf_counter()
    if lengths == "long":
        pairs = long_pairs(loaded.tokenizer, len(queries), loaded.max_positions - layouts.overhead)
        made = (
            f"random tokens, lengths log-normal (median {LONG_MEDIAN_TOKENS:,}, p95 {LONG_P95_TOKENS:,}, "
            f"max {LONG_MAX_TOKENS:,} per pair)"
        )
    else:
        pairs = tokenize_pairs(loaded.tokenizer, layouts, queries, answers, 2048)
        made = "tokenised"
    tokenize_seconds = max(time.perf_counter() - start, 1e-9)
    content_tokens = sum(len(p.query_ids) + len(p.answer_ids) for p in pairs)
    longest = max(len(p.query_ids) + len(p.answer_ids) for p in pairs)
    log(
        f"{len(pairs)} samples, {content_tokens} query+answer tokens (longest pair {longest}), template "
        f"{layouts.version}; {made} at {len(pairs) / tokenize_seconds:.0f} pairs/s on {os.cpu_count()} cores "
        "(untimed below)"
    )
    return pairs


def _equality_line(
    exact_scorer: PairScorer,
    production_model,
    layouts,
    naive_pairs: list[PairTokens],
    naive: np.ndarray,
    scored: np.ndarray,
    exact_check_samples: int,
) -> str:
    """Check the scorers against the naive loop (raises on a mismatch) and say by how much they
    differ: float32 exactly, the production dtype within what the dtype alone costs."""
    dtype_name = str(next(production_model.parameters()).dtype).removeprefix("torch.")
    exact_pairs = naive_pairs[:exact_check_samples]
    exact = mean_nlls(exact_scorer.score(exact_pairs))
    exact_diff = check_equal(naive[: len(exact_pairs)], exact, EXACT_TOLERANCE, "float32 scorer vs naive")
    if dtype_name == "float32":
        tolerance, drift_note = EXACT_TOLERANCE, ""
    else:
        # What the dtype alone costs: the naive loop itself in the scorer's dtype. Deep random
        # models amplify rounding, so the allowance grows with that drift, never below the floor.
        dtype_drift = float(
            np.abs(mean_nlls([naive_pair_logprobs(production_model, layouts, p) for p in naive_pairs]) - naive).max()
        )
        tolerance = max(REDUCED_PRECISION_TOLERANCE, DTYPE_DRIFT_ALLOWANCE * dtype_drift)
        drift_note = f"; naive {dtype_name} vs naive float32 max |diff| {dtype_drift:.3f}"
    production_diff = check_equal(naive, scored[: len(naive_pairs)], tolerance, f"{dtype_name} scorer vs naive float32")
    return (
        f"equality: float32 max |diff| {exact_diff:.2e} nats/token over {len(exact_pairs)} samples "
        f"(tolerance {EXACT_TOLERANCE}); {dtype_name} max |diff| {production_diff:.3f} over {len(naive_pairs)} "
        f"(tolerance {tolerance:.3f}){drift_note}"
    )


def profile_lines(scorer: PairScorer, pairs: list[PairTokens], device: torch.device, rows: int = 15) -> list[str]:
    """Where one ``score(pairs)`` spends its time: torch.profiler's busiest operations, by
    time on the device (on a GPU, kernels; on a CPU, the operators), so that one run on a
    lent GPU also says what to fix when a figure falls short."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        scorer.score(pairs)
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=60)
    return [f"profile of {len(pairs)} pairs ({sort_by}):", *table.strip().splitlines()]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: a CUDA timing counts only work that has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def causal_attention_flops(config, sequence_lengths: list[int]) -> float:
    """Multiply-adds of QK^T and PV under a causal mask, all layers, for these sequences."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    causal_pairs = sum(length * (length + 1) / 2 for length in sequence_lengths)
    return 2 * 2 * config.num_hidden_layers * heads * head_dim * causal_pairs


def report_lines(result: BenchResult) -> list[str]:
    return [
        f"forward: {result.forward}",
        f"padding: {100 * result.padding_fraction:.1f}% of batch tokens",
        f"achieved: {result.achieved_gflops:.0f} GFLOP/s (2 x {result.parameters / 1e6:.1f}M params x "
        f"{result.scorer_forward_tokens} forward tokens / {result.scorer_seconds:.1f}s); "
        f"{result.scorer_dtype} matmul peak here: {result.matmul_gflops:.0f} GFLOP/s",
        f"with causal attention's FLOPs counted too: {result.attention_gflops:.0f} GFLOP/s "
        f"({result.attention_gflops / result.matmul_gflops:.2f} of peak)",
        f"mfu={result.fraction_of_matmul_peak:.3f} (2 x params x forward tokens/s over the measured "
        f"{result.matmul_size}^3 {result.scorer_dtype} matmul rate, {result.matmul_gflops / 1000:.1f} TFLOP/s)",
        f"speedup_vs_naive={result.speedup:.2f} tokens_per_s={result.tokens_per_second:.1f} "
        f"fraction_of_matmul_peak={result.fraction_of_matmul_peak:.3f}",
    ]


def main(
    settings,
    paths: list[Path],
    samples: int,
    naive_samples: int,
    tokenizer_dir: str | None,
    profile_samples: int = 0,
    lengths: str = "data",
) -> list[str]:
    """Bench each of ``settings.models`` in turn (one at a time in memory); each block of output
    ends with its contract line, or with a ``SPEC failed: cause`` line. Returns the specs that failed: one
    shape that fails (out of memory, a mismatch) leaves the others measured in the same call."""
    queries, answers = load_bench_pairs(paths, samples)
    failed = []
    for spec in settings.models:
        try:
            bench_model(settings, spec, queries, answers, naive_samples, tokenizer_dir, profile_samples, lengths)
        except Exception as error:  # noqa: BLE001 - reported, and the command's exit status says so
            print(f"{spec} failed: {one_line(error)}", flush=True)
            failed.append(spec)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return failed


def bench_model(
    settings,
    spec: str,
    queries: list[str],
    answers: list[str],
    naive_samples: int,
    tokenizer_dir: str | None,
    profile_samples: int = 0,
    lengths: str = "data",
) -> BenchResult:
    """Load ``spec`` in float32, bench it against its naive reference and print the report."""
    loaded = load_model(spec, device=settings.device, dtype="float32", tokenizer_dir=tokenizer_dir)
    scorer_dtype = resolve_dtype(settings.dtype, loaded.device)
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {describe_device(loaded.device)}; model {loaded.model_id} "
        f"({loaded.parameters / 1e6:.1f}M params), scorer dtype {scorer_dtype}",
        flush=True,
    )
    result = run_bench(
        loaded,
        queries,
        answers,
        scorer_dtype,
        template=settings.template,
        batch_tokens=settings.batch_tokens,
        forward=settings.forward,
        attention=settings.attention,
        head=settings.head,
        naive_samples=naive_samples,
        profile_samples=profile_samples,
        lengths=lengths,
        log=lambda line: print(line, flush=True),
    )
    for line in report_lines(result):
        print(line, flush=True)
    return result


def describe_device(device: torch.device) -> str:
    """``device``, with the card's name on CUDA (figures are per card)."""
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
