"""The cache of converted GGUF models: what it stores loads back identically, and a bad entry is
never trusted."""

import pytest
import torch
from safetensors import safe_open

from qaq_assets.lib.scoring.engine.converted_models import (
    CACHE_ENV,
    WEIGHTS_FILE,
    cache_root,
    entry_dir,
    load_converted,
    save_converted,
)
from qaq_assets.lib.scoring.engine.fused_decoder import FusedDecoder
from qaq_assets.lib.scoring.engine.models import build_random_model, byte_level_tokenizer

SHA = "ab" * 32
TEXT = "def f(x):\n    return x ** 2  # ünïcode\n\tend"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "models"))
    return tmp_path / "models"


def assert_same_model(expected, actual):
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert expected_state.keys() == actual_state.keys()
    for name, tensor in expected_state.items():
        assert torch.equal(tensor, actual_state[name]), name


def test_a_stored_model_loads_back_bit_identical(tiny_model, cache):
    entry = save_converted(SHA, tiny_model.model, tiny_model.tokenizer)
    assert entry == entry_dir(cache, SHA) and (entry / WEIGHTS_FILE).is_file()
    # Whole entries only: nothing half-written is left beside it.
    assert [path.name for path in cache.iterdir()] == [entry.name]
    model, tokenizer = load_converted(SHA, torch.float32)
    assert_same_model(tiny_model.model, model)
    assert tokenizer(TEXT)["input_ids"] == tiny_model.tokenizer(TEXT)["input_ids"]
    assert load_converted("cd" * 32, torch.float32) is None


def test_an_unreadable_entry_is_removed_not_trusted(tiny_model, cache, caplog):
    entry = save_converted(SHA, tiny_model.model, tiny_model.tokenizer)
    (entry / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    assert load_converted(SHA, torch.float32) is None
    assert not entry.exists()
    assert "unreadable" in caplog.text
    # The next save stores a good entry again.
    save_converted(SHA, tiny_model.model, tiny_model.tokenizer)
    assert_same_model(tiny_model.model, load_converted(SHA, torch.float32)[0])


def test_a_second_writer_of_the_same_entry_keeps_the_first(tiny_model, cache):
    first = save_converted(SHA, tiny_model.model, tiny_model.tokenizer)
    written = (first / WEIGHTS_FILE).stat().st_mtime_ns
    assert save_converted(SHA, tiny_model.model, tiny_model.tokenizer) == first
    assert (first / WEIGHTS_FILE).stat().st_mtime_ns == written
    assert [path.name for path in cache.iterdir()] == [first.name]


def test_the_cache_can_be_turned_off_or_moved(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None
    assert save_converted(SHA, tiny_model.model, tiny_model.tokenizer) is None
    assert load_converted(SHA, torch.float32) is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "qaq-assets" / "models"


def test_an_unwritable_cache_is_skipped_with_a_warning(tiny_model, monkeypatch, tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv(CACHE_ENV, str(blocked / "models"))
    assert save_converted(SHA, tiny_model.model, tiny_model.tokenizer) is None
    assert "cannot cache" in caplog.text
    assert load_converted(SHA, torch.float32) is None


def test_tied_weights_are_stored_once_and_fused_projections_as_their_own_tensors(cache):
    model = build_random_model("tiny-llama", seed=3)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    # The fused forward rebinds q/k/v and gate/up as views into one matrix per layer.
    FusedDecoder(model)
    entry = save_converted(SHA, model, byte_level_tokenizer())
    loaded, _ = load_converted(SHA, torch.float32)
    assert_same_model(model, loaded)
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    with safe_open(str(entry / WEIGHTS_FILE), framework="pt") as stored:
        assert "lm_head.weight" not in stored.keys()
