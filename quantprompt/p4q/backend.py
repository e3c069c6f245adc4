"""The exported 8-bit P4Q image encoder on real integer kernels (CPU): PyTorch's FBGEMM int8 GEMM.

Every quantized Linear of the image tower (attention in/out projections, MLP) and the patch embedding (a conv
with stride = kernel, run as a Linear over the unfolded patches) becomes a :class:`StaticInt8Linear`: *our* int8
codes and per-channel scales, prepacked for FBGEMM (``quantized::linear_prepack``), and the *calibrated*
activation range of the simulated model, applied by ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``
(quantize input -> int8 GEMM with int32 accumulation -> fp32 output). Weights are the simulated model's bit for
bit. Activations: the simulated model's own grid, which the kernel must compute exactly (:func:`kernel_levels`:
255 levels on CPUs with VNNI, 127 without, where FBGEMM's AVX2 path saturates above that). The P4Q model picks
that grid when it is built (``act_range="auto"``: :func:`deployment_act_range`) and computes every quantized
layer in the kernel's own arithmetic (:func:`.fakequant.integer_linear`), so the int8 encoder returns the
simulated model's features bit for bit; a model whose grid the kernel cannot compute is refused, not rounded
onto another grid. CLIP's residual blocks run as :class:`Int8ResidualBlock`: the same values, computed in place
on the block's own temporaries (about 5% of the encoder's time saved). Alternatives measured in
``bench/p4q.py`` (docs/p4q.md): PyTorch's dynamic int8 Linear (per-call ranges) and torchao's CPU int8 path.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..prompting.text import _is_openai_block
from .fakequant import ACT_RANGES, ActQuant, weight_codes
from .layers import QuantLinear, QuantPatchConv, patches, unpatch
from .ptq import _set, _shared_copy

__all__ = ["int8_linear", "int8_image_encoder", "Int8ImageEncoder", "Int8ResidualBlock", "PatchLinear",
           "StaticInt8Linear",
           "DynamicInt8Linear", "kernel_levels", "cpu_has_vnni", "deployment_act_range", "resolve_act_range"]


class StaticInt8Linear(nn.Module):
    """W8A8 Linear on FBGEMM: the input is quantized with the *calibrated* (scale, zero point) -- the simulated
    model's activation quantizer exactly -- multiplied in int8 x uint8 -> int32, and returned in fp32."""

    def __init__(self, packed: object, in_features: int, out_features: int, act: ActQuant) -> None:
        super().__init__()
        self.packed = packed
        self.in_features, self.out_features = in_features, out_features
        self.x_scale = float(act.scale)
        self.x_zero_point = int(round(float(act.zero_point)))
        self.levels = act.levels
        # the kernel clamps codes to uint8's [0, 255]; a grid that ends at a lower code clamps the input first
        self.x_lo = -self.x_zero_point * self.x_scale
        self.x_hi = (self.levels - self.x_zero_point) * self.x_scale

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, x_scale={self.x_scale:.4g}, "
                f"x_zero_point={self.x_zero_point}")

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, in_place=False)

    def consume(self, x: Tensor) -> Tensor:
        """``forward``, but free to overwrite ``x`` with its clamped values: for a temporary the caller owns
        and no longer needs (:class:`Int8ResidualBlock`), which saves allocating and writing one more copy."""
        return self._run(x, in_place=x.dtype == torch.float32 and x.is_contiguous())

    def _run(self, x: Tensor, in_place: bool) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).to(torch.float32)
        if self.levels < 255:
            x = x.clamp_(self.x_lo, self.x_hi) if in_place else x.clamp(self.x_lo, self.x_hi)
        y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x.contiguous(), self.x_scale, self.x_zero_point, self.packed)
        return y.reshape(*shape[:-1], self.out_features)


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU multiplies uint8 x int8 pairs into int32 without saturation (AVX-512 / AVX VNNI)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def kernel_levels() -> int:
    """Activation levels the int8 GEMM computes exactly: 255 with VNNI; 127 without, where FBGEMM's AVX2 path
    adds pairs of uint8 x int8 products in int16 (``vpmaddubsw``), which saturates for codes above 127 against
    full-range int8 weights -- PyTorch's dynamic path avoids it the same way (``reduce_range``)."""
    return 255 if cpu_has_vnni() else 127


def deployment_act_range(act_bits: int = 8) -> str:
    """The activation grid the int8 backend of this machine computes exactly: "reduced" for 8-bit activations
    on FBGEMM (PyTorch's x86 engine) without VNNI, else "full". What ``act_range="auto"`` resolves to."""
    engines = torch.backends.quantized.supported_engines
    if int(act_bits) == 8 and ("fbgemm" in engines or "x86" in engines) and kernel_levels() < 255:
        return "reduced"
    return "full"


def resolve_act_range(act_range: str, act_bits: int) -> str:
    """"auto" -> :func:`deployment_act_range`; "full" / "reduced" as given; anything else is an error."""
    if act_range not in ACT_RANGES:
        raise ValueError(f"act_range={act_range!r} is not one of {', '.join(ACT_RANGES)}")
    return deployment_act_range(act_bits) if act_range == "auto" else act_range


def int8_linear(weight: Tensor, scale: Tensor, bias: Tensor | None, act: ActQuant) -> StaticInt8Linear:
    """A W8A8 Linear whose int8 weight is exactly ``weight_codes(weight, scale, 8)`` and whose input quantizer
    is ``act``'s calibrated one (its grid must be one the kernel computes exactly: :func:`kernel_levels`)."""
    if act is None:
        raise ValueError("the int8 backend needs calibrated activation quantizers on every quantized layer")
    if act.levels > kernel_levels():
        raise ValueError(f"activations on {act.levels} levels: the int8 kernel on this CPU computes at most "
                         f"{kernel_levels()} exactly (no VNNI); build the model with act_range='reduced' "
                         "(TRAINER.P4Q.ACT_RANGE reduced, or auto on this machine) and calibrate it again")
    w = weight.detach().to(torch.float32).reshape(weight.shape[0], -1)
    out_features, in_features = w.shape
    per_channel = scale.numel() > 1
    codes = weight_codes(w, scale.reshape(-1, 1) if per_channel else scale.reshape(1, 1), 8)
    grid = codes.to(torch.float32) * scale.reshape(-1, 1).to(torch.float32)
    with warnings.catch_warnings():  # PyTorch flags quantized-tensor constructors as deprecated (see docs)
        warnings.simplefilter("ignore", UserWarning)
        if per_channel:
            qweight = torch.quantize_per_channel(grid, scale.reshape(-1).double(),
                                                 torch.zeros(out_features, dtype=torch.long), 0, torch.qint8)
        else:
            qweight = torch.quantize_per_tensor(grid, float(scale), 0, torch.qint8)
        if not torch.equal(qweight.int_repr(), codes):
            raise RuntimeError("int8_linear: the int8 kernel weights differ from the exported codes (please report)")
        packed = torch.ops.quantized.linear_prepack(
            qweight, None if bias is None else bias.detach().to(torch.float32).contiguous())
    layer = StaticInt8Linear(packed, in_features, out_features, act)
    layer.qweight = qweight  # kept for inspection (tests): the exact int8 weight the kernel multiplies
    return layer


class PatchLinear(nn.Module):
    """The ViT patch convolution (stride = kernel, no padding) as a Linear over flattened patches."""

    def __init__(self, conv: QuantPatchConv, linear: nn.Module) -> None:
        super().__init__()
        if tuple(conv.stride) != tuple(conv.kernel_size) or any(conv.padding):
            raise ValueError("PatchLinear needs a patch embedding with stride = kernel and no padding")
        self.kernel = int(conv.kernel_size[0])
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return unpatch(self.linear(patches(x, self.kernel)), x.shape[2], x.shape[3], self.kernel)


class Int8ResidualBlock(nn.Module):
    """CLIP's ``ResidualAttentionBlock`` (image tower: no attention mask) with int8 attention projections and
    MLP, computing exactly what the block computes, bit for bit, but in place on its own temporaries.

    CLIP's block allocates a new tensor at every step: each quantized layer's clamped input, three for
    QuickGELU (``x * sigmoid(1.702 * x)``), two residual sums. Here a layer clamps the LayerNorm / attention /
    QuickGELU output it is handed in place (:meth:`StaticInt8Linear.consume`), QuickGELU makes one tensor
    (``t = 1.702 * m``, ``sigmoid_``, ``mul_ m``) and each residual sum is added into the layer's fresh output.
    Same kernels, same operands, commuted products and sums only, so the values are identical (tested); the
    simulated model keeps CLIP's block.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if block.attn_mask is not None:
            raise ValueError("Int8ResidualBlock runs the image tower's blocks, which have no attention mask")
        self.ln_1, self.attn, self.ln_2 = block.ln_1, block.attn, block.ln_2
        self.c_fc, self.c_proj = block.mlp.c_fc, block.mlp.c_proj

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn.out_proj.consume(self.attn.attend(self.attn.in_proj.consume(self.ln_1(x)))).add_(x)
        m = self.c_fc.consume(self.ln_2(x))
        t = torch.mul(m, 1.702).sigmoid_().mul_(m)  # QuickGELU: m * sigmoid(1.702 * m), one allocation
        return self.c_proj.consume(t).add_(x)


class Int8ImageEncoder(nn.Module):
    """images -> adapted image features, like ``P4Q.encode_image``, on int8 kernels (``adapter`` None: the
    zero-shot PTQ model, which has none)."""

    def __init__(self, visual: nn.Module, adapter: nn.Module | None) -> None:
        super().__init__()
        self.visual = visual
        self.adapter = adapter

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        feats = self.visual(images.to(torch.float32)).float()
        return feats if self.adapter is None else self.adapter(feats)


class DynamicInt8Linear(nn.Module):
    """The alternative measured in bench/p4q.py: PyTorch's dynamic int8 Linear on the same int8 weights
    (activation range re-derived per call, 7-bit on x86), ignoring the calibrated activation ranges."""

    def __init__(self, layer: StaticInt8Linear) -> None:
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        bias = layer.packed.unpack()[1]
        self.inner = DynamicLinear(layer.in_features, layer.out_features, bias_=bias is not None,
                                   dtype=torch.qint8)
        self.inner.set_weight_bias(layer.qweight, bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


def int8_visual(image_encoder: nn.Module, dynamic: bool = False) -> nn.Module:
    """A copy of a quantized image tower (sharing its fp tensors) whose quantized layers run on int8 kernels."""
    visual = _shared_copy(image_encoder)

    def convert(m: QuantLinear | QuantPatchConv) -> nn.Module:
        layer = int8_linear(m.weight, m.w_scale, m.bias, m.act)
        return DynamicInt8Linear(layer) if dynamic else layer

    for name, module in list(visual.named_modules()):
        if isinstance(module, QuantLinear):
            _set(visual, name, convert(module))
        elif isinstance(module, QuantPatchConv):
            _set(visual, name, PatchLinear(module, convert(module)))
    if not dynamic:  # OpenAI's blocks whose four layers all run on FBGEMM: the in-place form of the block
        for name, block in list(visual.named_modules()):
            if _is_openai_block(block) and block.attn_mask is None and all(
                    isinstance(m, StaticInt8Linear) for m in (getattr(block.attn, "in_proj", None),
                                                              getattr(block.attn, "out_proj", None),
                                                              block.mlp.c_fc, block.mlp.c_proj)):
                _set(visual, name, Int8ResidualBlock(block))
    return visual


def int8_image_encoder(model: nn.Module, dynamic: bool = False) -> Int8ImageEncoder:
    """The image path of a P4Q model (8-bit weights, quantized image encoder) on PyTorch's int8 kernels.

    Static (default): the simulated model's features bit for bit. ``dynamic``: PyTorch's dynamic int8 Linear on
    the same weights (the alternative measured in bench/p4q.py; its per-call ranges differ from the model's)."""
    if model.fp_encoder == "image":
        raise ValueError("the int8 backend runs a quantized image encoder; this model keeps it in full precision")
    if model.weight_bits != 8:
        raise ValueError(f"the int8 backend runs 8-bit weights; this model has {model.weight_bits}-bit weights "
                         "(it runs with dequantized weights instead)")
    if not model.calibrated:
        raise ValueError("the int8 backend needs a calibrated P4Q model; call model.calibrate(batches) first")
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    adapter = None if getattr(model, "zero_shot", False) else model.prompt_learner.adapter
    return Int8ImageEncoder(int8_visual(model.image_encoder, dynamic), adapter).eval()
