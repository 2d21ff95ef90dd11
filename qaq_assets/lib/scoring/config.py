"""Scoring's settings: which models, in which template and dtype, on which devices, in what passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qaq_assets.lib.model_specs import DEFAULT_MODEL_SPEC, ModelSpec, parse_model_specs
from qaq_assets.lib.setting_fields import SCORING, Bounds, check_fields, setting

TEMPLATES = ("auto", "chat", "plain")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# fused: our forward with compiled element-wise steps; fused-eager: the same, uncompiled;
# reference: the model's own Hugging Face forward. Unsupported models always use reference.
FORWARDS = ("fused", "fused-eager", "reference")
# packed: one token stream per pass, one attention call over it; padded: length groups, attention
# per group; auto: packed on CUDA where a packed kernel checks out, else padded.
ATTENTIONS = ("auto", "packed", "padded")
# logits: each chunk of rows through the whole output matrix, then its log-softmax;
# vocab-blocks: no [tokens, vocabulary] tensor, the vocabulary in blocks (online log-sum-exp);
# auto: vocab-blocks on CPU (measured faster there), logits on CUDA (until measured there).
HEADS = ("auto", "logits", "vocab-blocks")
BACKENDS = ("local", "ray")
# The scorer needs room for the template and at least a few tokens of each side.
MIN_SEQUENCE_TOKENS = 64
MAX_SEQUENCE_TOKENS = 1 << 20  # past any model's context


@dataclass(frozen=True)
class ScoringConfig:
    GROUP: ClassVar[str] = SCORING

    models: list[str] = setting(
        [DEFAULT_MODEL_SPEC],
        "model specs, strong first: KEY=SPEC or SPEC (smollm2-135m, "
        "gemma3-270m, a model directory, a .gguf file, random:ARCH[:SEED], hf:ORG/NAME)",
        flag="--model",
        required=True,
    )
    template: str = setting(
        "auto", "prompt template: chat, plain, or auto (chat when the tokenizer has one)", choices=TEMPLATES
    )
    device: str = setting(
        "auto",
        "auto (every visible CUDA GPU, one model replica each; else cpu), cpu, cuda (all GPUs) or cuda:N",
        pattern=r"auto|cpu|cuda(:[0-9]+)?",
    )
    dtype: str = setting(
        "auto",
        "auto (bf16 on CUDA and on CPUs with native bf16, else fp32), float32, bfloat16 or float16",
        choices=DTYPES,
    )
    forward: str = setting(
        "fused",
        "scoring forward pass: fused (Llama/Qwen2: fused projections, compiled "
        "element-wise steps), fused-eager (the same, uncompiled) or reference (the model's own)",
        choices=FORWARDS,
    )
    attention: str = setting(
        "auto",
        "pass layout: packed (sequences back to back, one variable-length attention call), "
        "padded (length groups, attention per group), or auto (packed on CUDA, padded on CPU)",
        choices=ATTENTIONS,
    )
    head: str = setting(
        "auto",
        "output head: logits (chunks of rows through the whole vocabulary, then log-softmax), "
        "vocab-blocks (no [tokens, vocabulary] logits: vocabulary blocks, an online log-sum-exp), "
        "or auto (vocab-blocks on CPU, logits on CUDA)",
        choices=HEADS,
    )
    batch_tokens: int = setting(
        0,
        "tokens per forward pass; 0 = auto (4,096 on CPU; on CUDA sized from the "
        "card's free memory and the model's width and vocabulary)",
        bounds=Bounds(0, 1 << 24),
    )
    max_batch_size: int = setting(
        0,
        "sequences per attention group at most; 0 = auto: 1 on CPU (each sequence attends alone, "
        "so a sample's scores do not depend on the samples beside it, bf16 included), 64 on CUDA",
        bounds=Bounds(0, 1 << 16),
    )
    max_sequence_tokens: int = setting(
        2048,
        "longest sequence in tokens, template included; answers are cut first",
        bounds=Bounds(MIN_SEQUENCE_TOKENS, MAX_SEQUENCE_TOKENS),
    )
    commit_every: int = setting(
        0,
        "samples per score-cache commit (what a killed run can lose); 0 = auto: 256 on CPU, 2,048 on "
        "a GPU (several full passes per chunk)",
        bounds=Bounds(0, 1 << 24),
    )
    keep_token_logprobs: bool = setting(
        False,
        "keep every token's log-prob in score_cache (a score added later needs no rescoring; about 4x the "
        "input for short records); off: each span's sum only, the same scores, and qaq explain scores a "
        "sample's token view on demand",
    )
    backend: str = setting(
        "local", "where forward passes run: local (this process) or ray (a pool of replicas)", choices=BACKENDS
    )
    ray_address: str = setting("", "Ray cluster address; empty starts a local Ray")
    ray_replicas: int = setting(0, "model replicas on Ray; 0 = one per GPU", bounds=Bounds(0, 4096))

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def model_specs(self) -> list[ModelSpec]:
        return parse_model_specs(self.models)
