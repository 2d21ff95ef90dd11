"""Scoring backends: where the forward passes of a shard's chunks run.

A backend turns an ordered stream of chunks (queries, answers) into an ordered stream of
scored chunks. The driver (the Dagster step) keeps the cache lookups and the Delta commits,
so every backend shares the cache, the schema and the resume semantics.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from qaq_assets.lib.scoring.backends.chunk_overlap import overlapped
from qaq_assets.lib.scoring.config import ScoringConfig
from qaq_assets.lib.scoring.engine.cpu_heap import keep_heap_warm
from qaq_assets.lib.scoring.engine.models import LoadedModel, ModelSpec, load_model
from qaq_assets.lib.scoring.engine.scorer import PairLogprobs, PairScorer, PairTokens, tokenize_pairs
from qaq_assets.lib.scoring.engine.templates import build_layouts

_DEFAULTS = ScoringConfig()  # the declared defaults


@dataclass(frozen=True)
class ScorerOptions:
    """How a loaded model scores: the same options for every backend and replica."""

    template: str = _DEFAULTS.template
    batch_tokens: int = _DEFAULTS.batch_tokens
    max_batch_size: int = _DEFAULTS.max_batch_size
    max_sequence_tokens: int = _DEFAULTS.max_sequence_tokens
    forward: str = _DEFAULTS.forward
    attention: str = _DEFAULTS.attention
    head: str = _DEFAULTS.head

    def scorer(self, loaded: LoadedModel) -> PairScorer:
        return PairScorer(
            loaded.model,
            build_layouts(self.template, loaded.tokenizer),
            pad_token_id=loaded.tokenizer.pad_token_id,
            batch_tokens=self.batch_tokens,
            max_batch_size=self.max_batch_size,
            forward=self.forward,
            attention=self.attention,
            head=self.head,
        )

    def max_sequence_tokens_for(self, loaded: LoadedModel) -> int:
        """The longest sequence scored with ``loaded``: the setting, capped by its positions."""
        return min(self.max_sequence_tokens, loaded.max_positions)


@dataclass(frozen=True)
class ScorerIdentity:
    """What a score depends on: it keys the cache and is stored with every row."""

    model_key: str
    model_id: str
    weights_sha256: str
    dtype: str
    fingerprint: str
    template_version: str
    # The sequence limit as configured (the model's positions cap it, a function of its
    # fingerprint): a longer limit cuts fewer answers, so it keys the cache too.
    max_sequence_tokens: int

    def score_key(self) -> dict:
        """The score-key columns of the rows this identity writes (besides the text hashes)."""
        return {
            "model_fingerprint": self.fingerprint,
            "template_version": self.template_version,
            "max_sequence_tokens": self.max_sequence_tokens,
        }


@dataclass
class ScoredChunk:
    tokens: list[PairTokens]
    logprobs: list[PairLogprobs]
    forward_calls: int
    real_tokens: int
    padding_tokens: int
    batch_tokens: int = 0  # what the chunk's passes ended with
    replica: str = ""  # which worker scored it, where there are several


Chunk = tuple[list[str], list[str]]
OnPass = Callable[[int, int], None]


class ScoringBackend(Protocol):
    identity: ScorerIdentity
    on_gpu: bool  # sets the automatic commit size (see shard_scoring.chunk_samples)

    def score_chunks(self, chunks: Iterable[Chunk], on_pass: OnPass | None = None) -> Iterator[ScoredChunk]:
        """Score each (queries, answers) chunk; results come back in the chunks' order.
        ``on_pass(sequences, tokens)`` reports each forward pass where the backend sees them."""
        ...

    def describe_forward(self) -> str:
        """Which forward pass scores (see :meth:`PairScorer.describe_forward`)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (remote replicas); the loaded local model stays cached."""
        ...


def identity_of(loaded: LoadedModel, scorer: PairScorer, max_sequence_tokens: int) -> ScorerIdentity:
    """What ``scorer`` over ``loaded`` produces, with the configured sequence limit."""
    return ScorerIdentity(
        model_key=loaded.spec.key,
        model_id=loaded.model_id,
        weights_sha256=loaded.weights_sha256,
        dtype=loaded.dtype_name,
        fingerprint=loaded.fingerprint,
        template_version=scorer.layouts.version,
        max_sequence_tokens=max_sequence_tokens,
    )


def prepare_worker(device: torch.device) -> None:
    """Once per scoring process: a warm CPU heap for activations (see :mod:`cpu_heap`)."""
    if device.type == "cpu":
        keep_heap_warm()


class LocalBackend:
    """In-process scoring with an already loaded model (the default).

    ``overlap`` (default: on a GPU) scores the next chunk while the caller commits this one
    (:mod:`chunk_overlap`); a CPU's cores are all busy scoring, so there chunks run in turn."""

    def __init__(self, loaded: LoadedModel, scorer: PairScorer, options: ScorerOptions, overlap: bool | None = None):
        self.loaded, self.scorer = loaded, scorer
        self.max_sequence_tokens = options.max_sequence_tokens_for(loaded)
        self.identity = identity_of(loaded, scorer, options.max_sequence_tokens)
        self.on_gpu = loaded.device.type == "cuda"
        self.overlap = self.on_gpu if overlap is None else overlap
        # After an out-of-memory back-off, later chunks start from the lower batch_tokens.
        self.batch_tokens: int | None = None
        prepare_worker(loaded.device)

    def score_chunks(self, chunks: Iterable[Chunk], on_pass: OnPass | None = None) -> Iterator[ScoredChunk]:
        if self.overlap:
            yield from overlapped(chunks, self._tokenize, self._score, on_pass)
            return
        for chunk in chunks:
            yield self._score(self._tokenize(chunk), on_pass)

    def _tokenize(self, chunk: Chunk) -> list[PairTokens]:
        queries, answers = chunk
        return tokenize_pairs(self.loaded.tokenizer, self.scorer.layouts, queries, answers, self.max_sequence_tokens)

    def _score(self, tokens: list[PairTokens], on_pass: OnPass | None) -> ScoredChunk:
        """The same scoring for every backend: Ray actors and pool workers are local backends."""
        device = self.loaded.device
        # Streams, events and allocations that name no device go to this model's GPU.
        with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
            scored = self.scorer.score(tokens, on_pass, self.batch_tokens)
        self.batch_tokens = scored.stats.batch_tokens
        return ScoredChunk(
            tokens=tokens,
            logprobs=list(scored),
            forward_calls=scored.stats.passes,
            real_tokens=scored.stats.real_tokens,
            padding_tokens=scored.stats.padding_tokens,
            batch_tokens=scored.stats.batch_tokens,
        )

    def describe_forward(self) -> str:
        return self.scorer.describe_forward()

    def close(self) -> None:
        pass  # the model stays in the process-wide cache for the next partition


# Parts of a chunk a replica on a GPU scores one ahead of the next part's tokenising.
REPLICA_PARTS_ON_GPU = 4


def split_chunk(chunk: Chunk, parts: int) -> list[Chunk]:
    """``chunk`` cut into at most ``parts`` contiguous, non-empty parts of near-equal size."""
    queries, answers = chunk
    bounds = [round(i * len(queries) / parts) for i in range(parts + 1)]
    return [(queries[a:b], answers[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def merge_scored(parts: list[ScoredChunk]) -> ScoredChunk:
    """One :class:`ScoredChunk` of consecutive parts, in order; batch_tokens is the last part's."""
    return ScoredChunk(
        tokens=[pair for part in parts for pair in part.tokens],
        logprobs=[pair for part in parts for pair in part.logprobs],
        forward_calls=sum(part.forward_calls for part in parts),
        real_tokens=sum(part.real_tokens for part in parts),
        padding_tokens=sum(part.padding_tokens for part in parts),
        batch_tokens=parts[-1].batch_tokens if parts else 0,
    )


class ScoringReplica(LocalBackend):
    """A local backend that loads its own model: one replica in a worker process (a Ray
    actor, or a device pool's worker), driven one chunk at a time.

    Driven so, a GPU would idle while each chunk is tokenised: there the chunk is cut into
    ``parts`` (:data:`REPLICA_PARTS_ON_GPU`), each tokenised while the one before it scores
    (:mod:`chunk_overlap`), so only the first part's tokenising is exposed."""

    def __init__(self, spec: ModelSpec, device: str, dtype: str, options: ScorerOptions, threads: int):
        torch.set_num_threads(threads)
        loaded = load_model(spec, device=device, dtype=dtype)
        # The pool or Ray keeps the next chunk queued; overlap happens within a chunk (score).
        super().__init__(loaded, options.scorer(loaded), options, overlap=False)
        self.parts = REPLICA_PARTS_ON_GPU if self.on_gpu else 1

    def replica_identity(self) -> ScorerIdentity:
        """The identity (a method: Ray calls methods of its actors, never attributes)."""
        return self.identity

    def node_id(self) -> str:
        """The Ray node this replica runs on ("" outside Ray)."""
        try:
            import ray
        except ImportError:
            return ""
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def score(self, chunk: Chunk, replica: str = "") -> ScoredChunk:
        parts = split_chunk(chunk, self.parts)
        if len(parts) > 1:
            scored = merge_scored(list(overlapped(parts, self._tokenize, self._score)))
        else:
            [scored] = self.score_chunks([chunk])
        scored.replica = replica
        return scored


def local_devices(device: str, visible_gpus: int | None = None) -> list[str]:
    """The devices local scoring spreads over: every visible GPU for ``auto`` and ``cuda``
    (``auto`` is the CPU where there is none), else the one device named."""
    visible_gpus = torch.cuda.device_count() if visible_gpus is None else visible_gpus
    if device in ("auto", "cuda") and visible_gpus > 0:
        return [f"cuda:{index}" for index in range(visible_gpus)]
    return ["cpu" if device == "auto" else device]


class DeferredLocalBackend:
    """A local backend whose model is loaded for the first chunk that needs scoring: a shard
    whose samples are all in the cache never loads (nor compiles) it. The identity, which keys
    the cache, comes from the model's files and tokenizer (:func:`models.identify`)."""

    NOT_RUN = "not run: every sample was already scored"

    def __init__(self, identity: ScorerIdentity, load: Callable[[], ScoringBackend], on_gpu: bool = False):
        self.identity, self.on_gpu = identity, on_gpu
        self._load = load
        self._backend: ScoringBackend | None = None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def _ready(self) -> ScoringBackend:
        if self._backend is None:
            backend = self._load()
            if backend.identity != self.identity:
                raise RuntimeError(f"the loaded model is {backend.identity}, not the identified {self.identity}")
            self._backend = backend
        return self._backend

    def score_chunks(self, chunks: Iterable[Chunk], on_pass: OnPass | None = None) -> Iterator[ScoredChunk]:
        remaining = iter(chunks)
        first = next(remaining, None)
        if first is not None:
            # Loaded for the first chunk; the backend then sees the whole stream (a pool keeps
            # every worker busy).
            yield from self._ready().score_chunks(itertools.chain([first], remaining), on_pass)

    def describe_forward(self) -> str:
        return self._backend.describe_forward() if self._backend is not None else self.NOT_RUN

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
