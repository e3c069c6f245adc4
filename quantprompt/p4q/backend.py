"""The exported 8-bit P4Q image encoder on real integer kernels (CPU): PyTorch's dynamic int8 Linear.

Every quantized Linear of the image tower (attention in/out projections, MLP) and the patch embedding (a conv
with stride = kernel, run as a Linear over the unfolded patches) becomes
``torch.ao.nn.quantized.dynamic.Linear`` holding *our* int8 codes and per-channel scales unchanged (so the
weights are the simulated model's bit for bit). Activations are quantized per tensor on the fly by the kernel
(FBGEMM; its x86 path uses a 7-bit activation range to avoid int16 overflow) instead of with the calibrated
static ranges: the one place the integer model differs from the simulated one, measured by
``bench/p4q.py`` (``p4q_prediction_agreement``). Why this backend and not torchao: docs/p4q.md.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .fakequant import weight_codes
from .layers import QuantLinear, QuantPatchConv
from .ptq import _set, _shared_copy

__all__ = ["int8_linear", "int8_image_encoder", "Int8ImageEncoder", "PatchLinear"]


def int8_linear(weight: Tensor, scale: Tensor, bias: Tensor | None) -> nn.Module:
    """A dynamic-int8 Linear whose int8 weight is exactly ``weight_codes(weight, scale, 8)``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    w = weight.detach().to(torch.float32).reshape(weight.shape[0], -1)
    out_features, in_features = w.shape
    codes = weight_codes(w, scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(1, 1), 8)
    grid = codes.to(torch.float32) * scale.reshape(-1, 1).to(torch.float32)
    if scale.numel() > 1:
        qweight = torch.quantize_per_channel(grid, scale.reshape(-1).double(),
                                             torch.zeros(out_features, dtype=torch.long), 0, torch.qint8)
    else:
        qweight = torch.quantize_per_tensor(grid, float(scale), 0, torch.qint8)
    if not torch.equal(qweight.int_repr(), codes):
        raise RuntimeError("int8_linear: the int8 kernel weights differ from the exported codes (please report)")
    layer = DynamicLinear(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
    layer.set_weight_bias(qweight, None if bias is None else bias.detach().to(torch.float32))
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
        b, c, h, w = x.shape
        k = self.kernel
        patches = x.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * k * k)
        out = self.linear(patches)  # (b, n, width)
        return out.transpose(1, 2).reshape(b, -1, h // k, w // k)


class Int8ImageEncoder(nn.Module):
    """images -> adapted image features, like ``P4Q.encode_image``, on int8 kernels."""

    def __init__(self, visual: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.adapter = adapter

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.adapter(self.visual(images.to(torch.float32)).float())


def int8_visual(image_encoder: nn.Module) -> nn.Module:
    """A copy of a quantized image tower (sharing its fp tensors) whose quantized layers run on int8 kernels."""
    visual = _shared_copy(image_encoder)
    for name, module in list(visual.named_modules()):
        if isinstance(module, QuantLinear):
            _set(visual, name, int8_linear(module.weight, module.w_scale, module.bias))
        elif isinstance(module, QuantPatchConv):
            _set(visual, name, PatchLinear(module, int8_linear(module.weight, module.w_scale, module.bias)))
    return visual


def int8_image_encoder(model: nn.Module) -> Int8ImageEncoder:
    """The image path of a P4Q model (8-bit weights, quantized image encoder) on PyTorch's int8 kernels."""
    if model.fp_encoder == "image":
        raise ValueError("the int8 backend runs a quantized image encoder; this model keeps it in full precision")
    if model.weight_bits != 8:
        raise ValueError(f"the int8 backend runs 8-bit weights; this model has {model.weight_bits}-bit weights "
                         "(it runs with dequantized weights instead)")
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    return Int8ImageEncoder(int8_visual(model.image_encoder), model.prompt_learner.adapter).eval()
