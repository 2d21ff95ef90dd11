"""Random models: real shapes for GPU benchmarks, vocabularies that fit their tokenizer."""

import pytest
import torch

from qaq_assets.lib.scoring.engine.models import build_random_model, random_architecture, random_weights_id


@pytest.mark.parametrize(
    "architecture, billions", [("qwen2-0.5b", 0.494), ("qwen2-1.5b", 1.544), ("llama-6.7b", 6.741)]
)
def test_random_models_of_real_shapes_have_their_models_parameter_counts(architecture, billions):
    chosen = random_architecture(architecture)
    _, model_class = chosen.classes()
    with torch.device("meta"):  # shapes only: nothing allocated
        model = model_class(chosen.config())
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=1e-3)


def test_a_random_models_vocabulary_widens_to_fit_its_tokenizer_and_its_identity_follows():
    assert build_random_model("tiny-llama", 0, vocab_at_least=500).config.vocab_size == 500
    assert build_random_model("tiny-llama", 0, vocab_at_least=10).config.vocab_size == 320
    cpu = torch.device("cpu")
    assert random_weights_id("tiny-llama", 0, cpu) != random_weights_id("tiny-llama", 0, cpu, vocab_at_least=500)
    # Real shapes are identified without building them: by shape, seed and the device they are built on.
    assert random_weights_id("qwen2-0.5b", 0, cpu) != random_weights_id("qwen2-0.5b", 1, cpu)
    assert random_weights_id("qwen2-0.5b", 0, cpu) != random_weights_id("qwen2-0.5b", 0, torch.device("cuda"))
