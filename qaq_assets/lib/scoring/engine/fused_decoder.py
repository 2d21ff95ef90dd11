"""An inference-only forward pass for Llama- and Qwen2-shaped decoders, built for scoring.

Scoring needs the last hidden state of whole sequences: no cache, no generation. The
Hugging Face forward serves every use, and on CPU half of its time went to
small element-wise steps and to three narrow projections where one wide one would do.
This forward computes the same function from the same weights with:

- one fused query/key/value projection and one fused gate/up projection per layer (the
  model's own projection weights are rebound as views into the fused matrices, so
  nothing is stored twice and the Hugging Face forward keeps working on the same model);
- the element-wise steps between projections (residual add + RMSNorm, rotary, SwiGLU)
  compiled into fused loops over token rows (:class:`Kernels`);
- attention as one kernel call over a packed stream of sequences (see
  :mod:`packed_attention`), or SDPA's causal kernel per right-padded group, grouped
  key/value heads passed as they are.

Only configurations it reproduces are accepted (``unsupported_reason`` says why not);
everything else runs through the model's own forward. Results match the Hugging Face
forward to float32 rounding (tested within 1e-5 on random Llama and Qwen2 models).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from qaq_assets.lib.errors import one_line
from qaq_assets.lib.scoring.engine.packed_attention import PackedAttention, PackedStream

log = logging.getLogger(__name__)
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
# Token rows of the examples the element-wise steps are compiled on (see Kernels).
COMPILE_EXAMPLE_ROWS = 1024
_lock = threading.Lock()
_decoders: weakref.WeakKeyDictionary[torch.nn.Module, FusedDecoder] = weakref.WeakKeyDictionary()


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why ``model`` cannot use the fused forward, or None when it can."""
    config = model.config
    checks = {
        f"model type {config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}": config.model_type
        not in SUPPORTED_MODEL_TYPES,
        f"activation {getattr(config, 'hidden_act', None)!r} is not silu": getattr(config, "hidden_act", None)
        != "silu",
        "sliding-window attention": bool(getattr(config, "use_sliding_window", False))
        or "sliding_attention" in (getattr(config, "layer_types", None) or ()),
        "MLP biases": bool(getattr(config, "mlp_bias", False)),
        "attention dropout": bool(getattr(config, "attention_dropout", 0.0)),
        "pretraining tensor parallelism": getattr(config, "pretraining_tp", 1) != 1,
        # These set the angles from a batch's longest sequence; a packed pass has several lengths.
        "sequence-length-dependent rotary scaling": _rope_type(model) in ("dynamic", "longrope"),
    }
    return next((reason for reason, failed in checks.items() if failed), None)


def _rope_type(model: torch.nn.Module) -> str | None:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return getattr(getattr(decoder, "rotary_emb", None), "rope_type", None)


def fused_decoder_for(model: torch.nn.Module) -> FusedDecoder | None:
    """The fused forward of ``model`` (built once per model), or None where it is unsupported."""
    reason = unsupported_reason(model)
    if reason is not None:
        log.info("%s runs its own forward: %s", type(model).__name__, reason)
        return None
    with _lock:
        decoder = _decoders.get(model)
        if decoder is None:
            decoder = _decoders[model] = FusedDecoder(model)
        return decoder


@torch.inference_mode(False)
@torch.no_grad()
def _fuse(linears: list[torch.nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the output rows of ``linears``; their parameters become views of the result.

    Built outside inference mode: the model's parameters must stay ordinary tensors, which
    keep the version counter that tells when they are rewritten."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    bias = None
    if any(linear.bias is not None for linear in linears):
        bias = torch.cat(
            [
                linear.bias.detach() if linear.bias is not None else weight.new_zeros(linear.out_features)
                for linear in linears
            ]
        )
    offset = 0
    for linear in linears:
        rows = slice(offset, offset + linear.out_features)
        linear.weight = torch.nn.Parameter(weight[rows], requires_grad=linear.weight.requires_grad)
        if linear.bias is not None:
            linear.bias = torch.nn.Parameter(bias[rows], requires_grad=linear.bias.requires_grad)
        offset += linear.out_features
    return weight, bias


class _Layer:
    def __init__(self, layer: torch.nn.Module):
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv_weight, self.qkv_bias = _fuse([attention.q_proj, attention.k_proj, attention.v_proj])
        self.gate_up_weight, self.gate_up_bias = _fuse([mlp.gate_proj, mlp.up_proj])
        self.output = attention.o_proj
        self.down = mlp.down_proj
        self.input_norm = layer.input_layernorm
        self.post_attention_norm = layer.post_attention_layernorm
        self.head_dim = attention.head_dim
        self.width = attention.q_proj.in_features
        self.query_heads = attention.q_proj.out_features // self.head_dim
        self.key_heads = attention.k_proj.out_features // self.head_dim
        self.rotary_heads = self.query_heads + self.key_heads
        self.qkv_heads = self.rotary_heads + self.key_heads
        self.intermediate = mlp.gate_proj.out_features
        self.scaling = attention.scaling


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The Hugging Face RMSNorm: normalise in float32, round to the model dtype, then scale."""
    return weight * F.rms_norm(hidden.float(), (hidden.shape[-1],), eps=eps).to(hidden.dtype)


def add_rms_norm(
    hidden: torch.Tensor, update: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream after ``update``, and its normalisation for the next block."""
    hidden = hidden + update
    return hidden, rms_norm(hidden, weight, eps)


def rotate(heads: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (tokens, heads, head_dim), with (tokens, 1, head_dim) angles:
    x * cos + rotate_half(x) * sin, as Hugging Face computes it."""
    half = heads.shape[-1] // 2
    first, second = heads[..., :half], heads[..., half:]
    return torch.cat(
        (first * cos[..., :half] - second * sin[..., :half], second * cos[..., half:] + first * sin[..., half:]), dim=-1
    )


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, from the fused gate/up projection's output."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class Kernels:
    """The element-wise steps between projections, compiled into fused loops when ``compile``.

    In eager mode each step is several passes over bf16 tensors with a float conversion in
    each (docs/performance.md has the measured gain). Every step sees token rows (batch x length
    flattened) with static model widths: one graph each, whose inner loops vectorise.
    Compiling needs a C++ compiler on CPU (Triton on CUDA) and takes seconds per process
    (about 20 the first time on a machine, until Inductor's on-disk cache holds the
    kernels); where it fails, the eager steps run and a warning says why.
    """

    STEPS = ("add_rms_norm", "rotate", "swiglu")

    def __init__(self, compile: bool, layer: _Layer, dtype: torch.dtype, device: torch.device):
        self.add_rms_norm, self.rotate, self.swiglu = add_rms_norm, rotate, swiglu
        self.compile_error: str | None = None
        self.compiled = compile and self._try_compile(layer, dtype, device)

    def _try_compile(self, layer: _Layer, dtype: torch.dtype, device: torch.device) -> bool:
        steps = {name: torch.compile(getattr(self, name)) for name in self.STEPS}

        def rows(*shape: int, keep: int | None = None) -> torch.Tensor:
            # Token rows, the count marked dynamic: one graph serves every batch shape. Pass-sized,
            # not two: on a GPU the example's size picks the kernels' block sizes (a two-row
            # example gets one-warp blocks for SwiGLU's tens of millions of elements).
            # ``keep`` slices the second dimension, as the forward slices the fused projections.
            tensor = torch.randn(COMPILE_EXAMPLE_ROWS, *shape, dtype=dtype, device=device)[:, :keep]
            torch._dynamo.mark_dynamic(tensor, 0)
            return tensor

        try:
            with torch.inference_mode():
                norm = layer.input_norm
                steps["add_rms_norm"](rows(layer.width), rows(layer.width), norm.weight, norm.variance_epsilon)
                heads = rows(layer.qkv_heads, layer.head_dim, keep=layer.rotary_heads)
                steps["rotate"](heads, rows(1, layer.head_dim), rows(1, layer.head_dim))
                steps["swiglu"](rows(2 * layer.intermediate))
        except Exception as error:  # noqa: BLE001 - any compiler failure means: stay eager
            self.compile_error = one_line(error)
            log.warning("element-wise steps run eagerly: compiling them failed (%s)", self.compile_error)
            return False
        for name, step in steps.items():
            setattr(self, name, step)
        return True


class FusedDecoder:
    """Last hidden states of a supported decoder for the rows of a forward pass.

    A pass is one packed stream of sequences, or several groups of right-padded sequences:
    projections and element-wise steps run over the token rows of the whole pass at once,
    attention runs over the stream or per group. Length buckets with little padding are small, and on
    the 2-core CPU a projection over 1,100 token rows ran at 1.6 TFLOP/s against 2.8 over
    2,048 or more, so packing buckets into one pass keeps the matmuls wide.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.base = model.get_decoder()
        self.layers = [_Layer(layer) for layer in self.base.layers]
        self._sources = self._source_state()
        self._kernels: dict[bool, Kernels] = {}
        self._packed: dict[bool, PackedAttention] = {}

    def kernels(self, compile: bool) -> Kernels:
        if compile not in self._kernels:
            parameter = next(self.model.parameters())
            self._kernels[compile] = Kernels(compile, self.layers[0], parameter.dtype, parameter.device)
        return self._kernels[compile]

    def _source_state(self) -> list[tuple[int, int]]:
        # Inference tensors keep no version counter; their storage address still tells a move.
        return [(p.data_ptr(), 0 if p.is_inference() else p._version) for p in self.model.parameters()]

    def _ensure_current(self) -> None:
        # Moving or reloading the model replaces or rewrites its parameters; fuse again then.
        if self._source_state() != self._sources:
            self.layers = [_Layer(layer) for layer in self.base.layers]
            self._sources = self._source_state()

    def packed_attention(self, compile: bool) -> PackedAttention:
        """The kernel for packed passes over this model's heads (see :mod:`packed_attention`)."""
        if compile not in self._packed:
            parameter, layer = next(self.model.parameters()), self.layers[0]
            heads = (layer.query_heads, layer.key_heads, layer.head_dim)
            self._packed[compile] = PackedAttention(compile, parameter.dtype, parameter.device, heads)
        return self._packed[compile]

    def __call__(self, input_ids: torch.Tensor, compile: bool = True) -> torch.Tensor:
        """Hidden states (sequences, length, width) of one right-padded group."""
        count, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device).repeat(count)
        return self.rows(input_ids.reshape(-1), positions, [(count, length)], None, compile).view(count, length, -1)

    @torch.inference_mode()
    def rows(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        shapes: Sequence[tuple[int, int]] | None,
        stream: PackedStream | None,
        compile: bool = True,
    ) -> torch.Tensor:
        """Hidden states of every row of a pass: ``input_ids`` and each row's ``positions``,
        flat, as right-padded (count, length) groups one after another (``shapes``), or as one
        packed ``stream`` (see :mod:`packed_attention`)."""
        if (shapes is None) == (stream is None):
            raise ValueError("a pass is either padded groups (shapes) or one packed stream")
        self._ensure_current()
        kernels = self.kernels(compile)
        packed = self.packed_attention(compile) if stream is not None else None
        # The residual stream is kept as token rows (tokens, width) throughout.
        hidden = self.base.embed_tokens(input_ids)
        # One angle row per token: (tokens, 1, head_dim), broadcast over heads.
        cos, sin = (angles[0, :, None] for angles in self.base.rotary_emb(hidden, positions[None]))
        first = self.layers[0].input_norm
        normed = rms_norm(hidden, first.weight, first.variance_epsilon)
        for index, layer in enumerate(self.layers):
            attended = self._attention(kernels, layer, normed, cos, sin, shapes, packed, stream)
            norm = layer.post_attention_norm
            hidden, normed = kernels.add_rms_norm(hidden, attended, norm.weight, norm.variance_epsilon)
            update = layer.down(kernels.swiglu(F.linear(normed, layer.gate_up_weight, layer.gate_up_bias)))
            norm = self.layers[index + 1].input_norm if index + 1 < len(self.layers) else self.base.norm
            hidden, normed = kernels.add_rms_norm(hidden, update, norm.weight, norm.variance_epsilon)
        return normed

    @staticmethod
    def _attention(
        kernels: Kernels,
        layer: _Layer,
        normed: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        shapes: Sequence[tuple[int, int]] | None,
        packed: PackedAttention | None,
        stream: PackedStream | None,
    ) -> torch.Tensor:
        tokens = normed.shape[0]
        qkv = F.linear(normed, layer.qkv_weight, layer.qkv_bias).view(tokens, layer.qkv_heads, layer.head_dim)
        rotated = kernels.rotate(qkv[:, : layer.rotary_heads], cos, sin)
        if stream is not None:
            query, key = rotated[:, : layer.query_heads], rotated[:, layer.query_heads :]
            return layer.output(packed(query, key, qkv[:, layer.rotary_heads :], stream, layer.scaling))
        attended = qkv.new_empty(tokens, layer.query_heads * layer.head_dim)
        start = 0
        for count, length in shapes:
            group = slice(start, start + count * length)
            start = group.stop

            def heads(rows: torch.Tensor, count: int = count) -> torch.Tensor:
                # (count * length, heads, head_dim) -> (count, heads, length, head_dim), a view.
                return rows.unflatten(0, (count, -1)).transpose(1, 2)

            output = F.scaled_dot_product_attention(
                heads(rotated[group, : layer.query_heads]),
                heads(rotated[group, layer.query_heads :]),
                heads(qkv[group, layer.rotary_heads :]),
                is_causal=True,
                scale=layer.scaling,
                enable_gqa=layer.query_heads != layer.key_heads,
            )
            attended[group].view(count, length, layer.query_heads, layer.head_dim).copy_(output.transpose(1, 2))
        return layer.output(attended)
