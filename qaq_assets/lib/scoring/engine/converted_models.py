"""A disk cache of GGUF models converted to transformers' own format.

transformers dequantises a GGUF file in Python on every load, and parses it three times
(config, tokenizer, weights): seconds for the bundled 135M model, in
every process that scores (each Dagster run, each CLI call). The converted float32
weights, config and tokenizer are saved once, under the GGUF's sha256 and the
transformers version that converted them; later loads read them back in a fraction of that,
bit-identical. The cache is only a cache: an unreadable entry is removed and the GGUF
loaded again.

``QAQ_MODEL_CACHE`` sets the directory (default ``~/.cache/qaq-assets/models``, or under
``XDG_CACHE_HOME``); ``QAQ_MODEL_CACHE=off`` turns it off. An entry takes 4 bytes per
parameter (about 540 MB for SmolLM2-135M).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CACHE_ENV = "QAQ_MODEL_CACHE"
WEIGHTS_FILE = "model.safetensors"


def cache_root() -> Path | None:
    """Where converted models live, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qaq-assets" / "models"


def entry_dir(root: Path, weights_sha256: str) -> Path:
    import transformers

    # A new transformers may convert a GGUF differently: its own entry, never a stale one.
    return root / f"{weights_sha256}-transformers-{transformers.__version__}"


def load_converted(weights_sha256: str, dtype: torch.dtype):
    """``(model, tokenizer)`` from the cache, or None when it holds no readable entry."""
    root = cache_root()
    if root is None:
        return None
    directory = entry_dir(root, weights_sha256)
    if not directory.is_dir():
        return None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype)
    except Exception as error:  # noqa: BLE001 - whatever is wrong with a cache entry, the GGUF is the truth
        log.warning("converted model %s is unreadable (%s); removing it and loading the GGUF", directory, error)
        shutil.rmtree(directory, ignore_errors=True)
        return None
    return model, tokenizer


def load_converted_tokenizer(weights_sha256: str):
    """The cached tokenizer of the GGUF with that sha256, or None (no entry, or unreadable)."""
    root = cache_root()
    directory = entry_dir(root, weights_sha256) if root is not None else None
    if directory is None or not directory.is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception:  # noqa: BLE001 - the full load will notice and repair the entry
        return None


def save_converted(weights_sha256: str, model: torch.nn.Module, tokenizer) -> Path | None:
    """Store ``model`` and ``tokenizer`` (loaded from the GGUF with that sha256); returns the
    entry, or None when the cache is off or cannot be written (scoring goes on regardless)."""
    root = cache_root()
    if root is None:
        return None
    from safetensors.torch import save_file

    directory = entry_dir(root, weights_sha256)
    staging = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed into place: a reader sees a whole entry or none.
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".writing-"))
        config = copy.deepcopy(model.config)
        # The stored weights are plain float32 tensors, not a GGUF to dequantise.
        config.__dict__.pop("quantization_config", None)
        config.save_pretrained(staging)
        save_file(_tensors_to_save(model), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        # mkdtemp makes the directory private; the cache may be shared by the users of a machine.
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        staging.rename(directory)
    except Exception as error:  # noqa: BLE001 - a cache that cannot be written must not stop scoring
        if directory.is_dir():
            return directory  # another process stored the same entry first
        log.warning("cannot cache the converted model in %s: %s", root, error)
        return None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _tensors_to_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once: tied weights under their first name (transformers
    ties them again on load), and any tensor that views part of a larger storage copied out, as
    safetensors stores whole storages only."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        whole = tensor.untyped_storage().nbytes() == tensor.nbytes
        tensors[name] = tensor.detach() if whole else tensor.detach().clone()
    return tensors
