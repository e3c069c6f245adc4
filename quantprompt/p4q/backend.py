"""The exported 8-bit P4Q image encoder on real integer kernels (CPU): PyTorch's FBGEMM int8 GEMM.

Every quantized Linear of the image tower (attention in/out projections, MLP) and the patch embedding (a conv
with stride = kernel, run as a Linear over the unfolded patches) becomes a :class:`StaticInt8Linear`: *our* int8
codes and per-channel scales, prepacked for FBGEMM (``quantized::linear_prepack``), and the calibrated
activation (scale, zero point) of the simulated model, applied by
``quantized::linear_with_input_q_dq_qweight_dq_output_fp32`` (quantize input -> int8 GEMM -> fp32 output).
So weights and activation grids are the simulated model's; only the accumulation order differs. The dynamic
path (``torch.ao.nn.quantized.dynamic.Linear``) re-derives activation ranges per call with a 7-bit range on x86,
which changed ~6 % of the predictions of a random ViT-B/32 in our measurement; torchao's CPU int8 path was
15x slower than fp32 here. Measurements and choice: docs/p4q.md, ``bench/p4q.py``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .fakequant import ActQuant, weight_codes
from .layers import QuantLinear, QuantPatchConv
from .ptq import _set, _shared_copy

__all__ = ["int8_linear", "int8_image_encoder", "Int8ImageEncoder", "PatchLinear", "StaticInt8Linear"]


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

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, x_scale={self.x_scale:.4g}, "
                f"x_zero_point={self.x_zero_point}")

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x.reshape(-1, shape[-1]).to(torch.float32).contiguous(), self.x_scale, self.x_zero_point, self.packed)
        return y.reshape(*shape[:-1], self.out_features)


def int8_linear(weight: Tensor, scale: Tensor, bias: Tensor | None, act: ActQuant) -> StaticInt8Linear:
    """A W8A8 Linear whose int8 weight is exactly ``weight_codes(weight, scale, 8)`` and whose input quantizer
    is ``act``'s calibrated one."""
    if act is None or act.bits != 8:
        raise ValueError("the int8 backend needs 8-bit calibrated activation quantizers (TRAINER.P4Q.ACT_BITS 8)")
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
            _set(visual, name, int8_linear(module.weight, module.w_scale, module.bias, module.act))
        elif isinstance(module, QuantPatchConv):
            _set(visual, name, PatchLinear(module, int8_linear(module.weight, module.w_scale, module.bias,
                                                               module.act)))
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
