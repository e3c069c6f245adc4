"""Quantized stand-ins for CLIP's layers that *share* CLIP's parameters (no weight is copied).

:class:`QuantLinear`, :class:`QuantPatchConv` and :class:`QuantMultiheadAttention` hold the very same
``nn.Parameter`` objects as the full-precision CLIP they replace and fake-quantize the weights on the fly, so
the full-precision teacher and the quantized student live in one copy of the weights. The attention is written
with explicit ``in_proj`` / ``out_proj`` Linear-like submodules (``nn.MultiheadAttention`` hides them inside
``F.multi_head_attention_forward``), which lets calibration see their inputs and lets the integer backend swap
them for int8 kernels. The attention matmuls themselves (QK^T, softmax V) stay in floating point, as in
PyTorch's dynamic int8 path. With calibrated activations ("quant" mode) every layer computes in the int8
kernel's own arithmetic (:func:`.fakequant.integer_linear`), the patch convolution as a Linear over the
flattened patches (:func:`patches`), exactly as the integer backend runs it.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from .fakequant import ActQuant, fake_quant_weight, integer_linear, weight_codes, weight_scale

__all__ = ["QuantLinear", "QuantPatchConv", "QuantMultiheadAttention", "WeightFakeQuant", "quantized_weights",
           "patches", "unpatch"]


class _WeightQuantMixin:
    weight: Tensor
    bias: Optional[Tensor]
    act: Optional[ActQuant]
    w_scale: Tensor
    bits: int

    def _init_weight_quant(self, bits: int, per_channel: bool, axis: int = 0) -> None:
        self.bits = int(bits)
        self.axis: Optional[int] = axis if per_channel else None
        self.register_buffer("w_scale", weight_scale(self.weight, bits, self.axis), persistent=False)  # type: ignore[attr-defined]

    def qweight(self) -> Tensor:
        """The weight as the quantized model uses it: ``codes * scale``."""
        return fake_quant_weight(self.weight, self.w_scale, self.bits)

    def integer_forward(self, x: Tensor) -> Tensor:
        """``x`` (..., in) through the int8 kernel's arithmetic (calibrated input quantizer required)."""
        assert self.act is not None
        w = weight_codes(self.weight, self.w_scale, self.bits).reshape(self.weight.shape[0], -1)
        return integer_linear(x, self.act, w, self.w_scale, self.bias)


def patches(x: Tensor, kernel: int) -> Tensor:
    """(b, c, h, w) images -> (b, h/k * w/k, c*k*k) flattened non-overlapping k x k patches, in the order of
    a conv weight's (c, kh, kw) flattening: a stride-k conv is a Linear over them."""
    b, c, h, w = x.shape
    k = kernel
    return x.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * k * k)


def unpatch(y: Tensor, h: int, w: int, kernel: int) -> Tensor:
    """(b, n, channels) per-patch outputs -> (b, channels, h/k, w/k), the conv's output layout."""
    return y.transpose(1, 2).reshape(y.shape[0], -1, h // kernel, w // kernel)


class QuantLinear(_WeightQuantMixin, nn.Module):
    """``F.linear(act(x), codes * scale, bias)`` on a shared weight/bias; per-output-channel scales."""

    def __init__(self, weight: nn.Parameter, bias: Optional[nn.Parameter], bits: int, per_channel: bool,
                 act: Optional[ActQuant]) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.act = act
        self._init_weight_quant(bits, per_channel)

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, per_channel={self.axis is not None}"

    def forward(self, x: Tensor) -> Tensor:
        if self.act is not None and self.act.mode == "quant":
            return self.integer_forward(x)
        if self.act is not None:
            x = self.act(x)
        return F.linear(x, self.qweight(), self.bias)


class QuantPatchConv(_WeightQuantMixin, nn.Module):
    """The ViT patch embedding (a conv with stride = kernel) on a shared weight, input fake-quantized."""

    def __init__(self, conv: nn.Conv2d, bits: int, per_channel: bool, act: Optional[ActQuant]) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride = conv.stride
        self.padding = conv.padding
        self.kernel_size = conv.kernel_size
        if tuple(self.stride) != tuple(self.kernel_size) or any(self.padding) or \
                self.kernel_size[0] != self.kernel_size[1]:
            raise ValueError("QuantPatchConv needs a square patch embedding with stride = kernel and no padding")
        self.act = act
        self._init_weight_quant(bits, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        if self.act is not None and self.act.mode == "quant":  # a Linear over the patches, as the int8 kernel
            k = int(self.kernel_size[0])
            return unpatch(self.integer_forward(patches(x, k)), x.shape[2], x.shape[3], k)
        if self.act is not None:
            x = self.act(x)
        return F.conv2d(x, self.qweight(), self.bias, self.stride, self.padding)


class QuantMultiheadAttention(nn.Module):
    """Self-attention with the call signature of ``nn.MultiheadAttention`` (sequence first), as CLIP uses it."""

    def __init__(self, mha: nn.MultiheadAttention, bits: int, per_channel: bool,
                 acts: tuple[Optional[ActQuant], Optional[ActQuant]]) -> None:
        super().__init__()
        if getattr(mha, "batch_first", False) or mha.in_proj_weight is None:
            raise ValueError("QuantMultiheadAttention supports CLIP's attention (packed in_proj, sequence first)")
        self.num_heads = mha.num_heads
        self.embed_dim = mha.embed_dim
        self.in_proj = QuantLinear(mha.in_proj_weight, mha.in_proj_bias, bits, per_channel, acts[0])
        self.out_proj = QuantLinear(mha.out_proj.weight, mha.out_proj.bias, bits, per_channel, acts[1])

    def forward(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool = False,
                attn_mask: Optional[Tensor] = None, key_padding_mask: Optional[Tensor] = None,
                **_: object) -> tuple[Tensor, None]:
        if key_padding_mask is not None or not (query is key and key is value):
            raise ValueError("QuantMultiheadAttention implements CLIP's self-attention only (query = key = value, "
                             "no key_padding_mask)")
        return self.out_proj(self.attend(self.in_proj(query), attn_mask)), None

    def attend(self, qkv: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        """(length, batch, 3 * dim) packed projections -> (length, batch, dim) attention output, before
        ``out_proj`` (the floating-point part, shared with the integer backend's blocks)."""
        length, batch, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        heads = self.num_heads
        q, k, v = qkv.reshape(length, batch, 3, heads, dim // heads).permute(2, 1, 3, 0, 4).unbind(0)
        mask = None  # q, k, v: each (batch, heads, length, head_dim)
        if attn_mask is not None:
            mask = attn_mask[:length, :length].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.permute(2, 0, 1, 3).reshape(length, batch, dim)


class WeightFakeQuant(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: a raw projection matrix used as ``x @ W`` (CLIP's
    ``visual.proj`` and ``text_projection``), quantized per output column (axis 1)."""

    w_scale: Tensor

    def __init__(self, weight: Tensor, bits: int, per_channel: bool, axis: int = 1) -> None:
        super().__init__()
        self.bits = int(bits)
        self.axis: Optional[int] = axis if per_channel else None
        self.register_buffer("w_scale", weight_scale(weight, bits, self.axis), persistent=False)

    def forward(self, w: Tensor) -> Tensor:
        return fake_quant_weight(w, self.w_scale, self.bits)


def quantized_weights(module: nn.Module) -> dict[str, tuple[Tensor, Tensor, int]]:
    """{parameter name: (fp weight, scale, bits)} of every weight ``module`` fake-quantizes (for export/tests)."""
    from torch.nn.utils import parametrize

    out: dict[str, tuple[Tensor, Tensor, int]] = {}
    for name, m in module.named_modules():
        pre = f"{name}." if name else ""
        if isinstance(m, (QuantLinear, QuantPatchConv)):
            out[pre + "weight"] = (m.weight, m.w_scale, m.bits)
        if parametrize.is_parametrized(m):
            for attr, plist in m.parametrizations.items():
                for p in plist:
                    if isinstance(p, WeightFakeQuant):
                        out[pre + attr] = (plist.original, p.w_scale, p.bits)
    return out
