"""The fused scoring forward reproduces the Hugging Face forward, and falls back where it cannot."""

import numpy as np
import pytest
import torch
from transformers import GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from qaq_assets.lib.scoring.engine import fused_decoder
from qaq_assets.lib.scoring.engine.fused_decoder import FusedDecoder, fused_decoder_for, unsupported_reason
from qaq_assets.lib.scoring.engine.models import RANDOM_ARCHITECTURES
from qaq_assets.lib.scoring.engine.scorer import PairScorer, PairTokens
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets_tests.helpers import HAS_CXX

# The test Llama's shape, with a third layer, an odd MLP width and a vocabulary of its own.
SHAPE = {**RANDOM_ARCHITECTURES["tiny-llama"].shape, "num_hidden_layers": 3, "intermediate_size": 96, "vocab_size": 300}


def random_model(model_class, config_class, seed=0, **overrides):
    torch.manual_seed(seed)
    model = model_class(config_class(**{**SHAPE, **overrides})).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            # Non-trivial everywhere, biases and norm weights included.
            parameter.normal_(0.0, 0.3)
    return model


def reference_hidden(model, input_ids):
    with torch.inference_mode():
        return model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state


MODELS = {
    "llama-gqa": lambda: random_model(LlamaForCausalLM, LlamaConfig),
    "llama-biased": lambda: random_model(LlamaForCausalLM, LlamaConfig, attention_bias=True, num_key_value_heads=4),
    "qwen2": lambda: random_model(Qwen2ForCausalLM, Qwen2Config),
}


@pytest.mark.parametrize("compile", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_forward_equals_the_hugging_face_forward_in_float32(name, compile):
    model = MODELS[name]()
    assert unsupported_reason(model) is None
    decoder = FusedDecoder(model)
    assert decoder.kernels(compile).compiled == (compile and HAS_CXX)
    for batch, length in ((3, 17), (1, 40), (5, 2)):
        input_ids = torch.randint(0, SHAPE["vocab_size"], (batch, length))
        expected = reference_hidden(model, input_ids)
        torch.testing.assert_close(decoder(input_ids, compile=compile), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_pass_over_several_groups_equals_each_group_alone(name):
    model = MODELS[name]()
    decoder = FusedDecoder(model)
    groups = [torch.randint(0, SHAPE["vocab_size"], shape) for shape in ((3, 17), (1, 40), (5, 2), (2, 17))]
    shapes = [tuple(ids.shape) for ids in groups]
    positions = torch.cat([torch.arange(length).repeat(count) for count, length in shapes])
    rows = decoder.rows(torch.cat([ids.reshape(-1) for ids in groups]), positions, shapes, None)
    assert rows.shape == (sum(ids.numel() for ids in groups), SHAPE["hidden_size"])
    expected = torch.cat([reference_hidden(model, ids).flatten(0, 1) for ids in groups])
    torch.testing.assert_close(rows, expected, atol=1e-5, rtol=1e-5)


def test_fusing_leaves_the_model_and_its_own_forward_unchanged():
    model = MODELS["qwen2"]()
    input_ids = torch.randint(0, SHAPE["vocab_size"], (2, 9))
    before = reference_hidden(model, input_ids)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fused_decoder_for(model)(input_ids, compile=False)
    assert fused_decoder_for(model) is fused_decoder_for(model)
    torch.testing.assert_close(reference_hidden(model, input_ids), before, atol=0, rtol=0)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    attention = model.model.layers[0].self_attn
    # The projections are views into one fused matrix: nothing is stored twice.
    assert attention.q_proj.weight.untyped_storage().data_ptr() == attention.v_proj.weight.untyped_storage().data_ptr()


def test_new_weights_after_fusing_are_picked_up():
    model = MODELS["llama-gqa"]()
    decoder = FusedDecoder(model)
    input_ids = torch.randint(0, SHAPE["vocab_size"], (2, 11))
    decoder(input_ids, compile=False)
    model.load_state_dict(MODELS["llama-gqa"]().state_dict() | {"model.norm.weight": torch.full((64,), 2.0)})
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.mul_(-1)
    torch.testing.assert_close(decoder(input_ids, compile=False), reference_hidden(model, input_ids))
    model.to(torch.float64)
    torch.testing.assert_close(decoder(input_ids, compile=False), reference_hidden(model, input_ids))


def test_unsupported_models_score_with_their_own_forward(tiny_model):
    gelu = random_model(LlamaForCausalLM, LlamaConfig, hidden_act="gelu")
    gemma = random_model(GemmaForCausalLM, GemmaConfig, head_dim=16)
    dynamic_rope = random_model(LlamaForCausalLM, LlamaConfig, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    assert "gelu" in unsupported_reason(gelu)
    assert "gemma" in unsupported_reason(gemma)
    assert "length-dependent rotary" in unsupported_reason(dynamic_rope)
    layouts = build_layouts("plain", tiny_model.tokenizer)
    for model in (gelu, gemma, dynamic_rope):
        assert fused_decoder_for(model) is None
        assert PairScorer(model, layouts, pad_token_id=0).forward == "reference"
    assert PairScorer(tiny_model.model, layouts, pad_token_id=0).forward == "fused"
    with pytest.raises(ValueError, match="forward must be one of"):
        PairScorer(tiny_model.model, layouts, pad_token_id=0, forward="fastest")


@pytest.mark.parametrize("forward", ["fused", "fused-eager"])
def test_scores_match_the_reference_forward(tiny_model, forward):
    layouts = build_layouts("chat", tiny_model.tokenizer)
    pairs = [(tuple(range(5, 30)), tuple(range(40, 90))), (tuple(range(7, 19)), tuple(range(100, 104)))]
    tokens = [PairTokens(query, answer) for query, answer in pairs]
    pad = tiny_model.tokenizer.pad_token_id
    expected = PairScorer(tiny_model.model, layouts, pad, forward="reference").score(tokens)
    actual = PairScorer(tiny_model.model, layouts, pad, forward=forward).score(tokens)
    for a, b in zip(expected, actual, strict=True):
        for field in ("query", "answer_given_query", "answer", "query_given_answer"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-5)


def test_a_compiler_failure_falls_back_to_eager_steps(monkeypatch):
    def no_compiler(function):
        def fails(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return fails

    monkeypatch.setattr(fused_decoder.torch, "compile", no_compiler)
    model = MODELS["llama-gqa"]()
    decoder = FusedDecoder(model)
    kernels = decoder.kernels(compile=True)
    assert not kernels.compiled
    assert kernels.compile_error == "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    input_ids = torch.randint(0, SHAPE["vocab_size"], (2, 7))
    torch.testing.assert_close(decoder(input_ids), reference_hidden(model, input_ids), atol=1e-5, rtol=1e-5)


def recording_compiler(examples):
    """A stand-in for torch.compile that runs eagerly and records each step's example rows."""

    def compile(function, **options):
        def run(*args, **kwargs):
            examples.append((function.__name__, args[0].shape[0]))
            return function(*args, **kwargs)

        return run

    return compile


def test_the_element_wise_steps_are_compiled_on_pass_sized_examples(monkeypatch):
    """On a GPU the example's size picks the kernels' block sizes for good: it must look like a pass."""
    examples = []
    monkeypatch.setattr(fused_decoder.torch, "compile", recording_compiler(examples))
    kernels = FusedDecoder(MODELS["qwen2"]()).kernels(compile=True)
    assert kernels.compiled
    assert examples == [(step, fused_decoder.COMPILE_EXAMPLE_ROWS) for step in ("add_rms_norm", "rotate", "swiglu")]


def test_the_fused_head_is_compiled_on_a_chunk_sized_example(monkeypatch):
    from qaq_assets.lib.scoring.engine import output_head

    examples = []
    monkeypatch.setattr(output_head.torch, "compile", recording_compiler(examples))
    model = MODELS["qwen2"]()
    head = output_head.OutputHead(
        model, compile=True, reduction="fused", chunk_elements=700 * SHAPE["vocab_size"], head="logits"
    )
    assert head.compiled and examples == [("target_logprobs_fused", 700)]
    examples.clear()
    output_head.OutputHead(model, compile=True, reduction="fused", chunk_elements=10**9, head="logits")
    assert examples == [("target_logprobs_fused", output_head.MAX_COMPILE_EXAMPLE_ROWS)]


def test_a_warm_heap_stops_page_faults_on_freed_activations():
    import subprocess
    import sys

    code = (
        "import ctypes, resource\n"
        "from qaq_assets.lib.scoring.engine import cpu_heap as allocator\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(20):\n"
        "        blocks = [libc.malloc(8 << 20) for _ in range(6)]\n"
        "        for block in blocks: ctypes.memset(block, 1, 8 << 20)\n"
        "        for block in blocks: libc.free(block)\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "calls = []\n"
        "real_apply = allocator._apply\n"
        "allocator._apply = lambda: calls.append(1) or real_apply()\n"
        "cold = faults(); first = allocator.keep_heap_warm(); second = allocator.keep_heap_warm()\n"
        "faults(); warm = faults()\n"
        "print(cold, warm, first, second, len(calls))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cold, warm, first, second, applied = done.stdout.split()
    # A pass's activations (here 6 x 8 MiB) freed together: glibc's defaults hand them back to the
    # kernel and every pass faults all 48 MiB in again (20 x 12,288 pages); a warm heap keeps them.
    assert int(cold) > 20 * 10_000 and int(warm) < 1000
    assert (first, second, applied) == ("True", "True", "1")
