"""Post-training quantization of a CLIP *view*: a structural copy whose layers share CLIP's parameters.

``quantized_clip(clip_model, ...)`` returns ``(student, act_quants)``. The student is CLIP's own module tree
(``copy.deepcopy`` with every tensor memoized, so no weight is duplicated) in which every ``nn.Linear``,
every ``nn.MultiheadAttention`` and the patch convolution of the chosen encoders are replaced by their
quantized stand-ins, and ``visual.proj`` / ``text_projection`` carry a fake-quant parametrization. The original
``clip_model`` is untouched and keeps serving as the full-precision teacher.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .fakequant import ActQuant, fake_quant_weight, qmax_of
from .layers import QuantLinear, QuantMultiheadAttention, QuantPatchConv, WeightFakeQuant

__all__ = ["FP_ENCODERS", "quantized_clip", "fake_quant_rows", "row_scale"]

#: which encoder stays in full precision ("none": both are quantized)
FP_ENCODERS = ("none", "image", "text")


def row_scale(x: Tensor, bits: int) -> Tensor:
    """Symmetric scale of each row (last dim) of ``x``: how the token-embedding table is quantized."""
    amax = x.detach().abs().to(torch.float32).amax(dim=-1, keepdim=True)
    scale = amax / qmax_of(bits)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def fake_quant_rows(x: Tensor, bits: int) -> Tensor:
    """Rows of the token-embedding table as the quantized model stores them (a gathered row quantizes to the
    same values as in the whole table, since each row has its own scale)."""
    return fake_quant_weight(x, row_scale(x, bits), bits)


def _shared_copy(model: nn.Module) -> nn.Module:
    memo: dict[int, object] = {}
    for m in model.modules():
        for t in list(m._parameters.values()) + list(m._buffers.values()) + list(vars(m).values()):
            if isinstance(t, Tensor):
                memo[id(t)] = t
    return copy.deepcopy(model, memo)


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def quantized_clip(clip_model: nn.Module, weight_bits: int = 8, act_bits: int = 8, per_channel: bool = True,
                   fp_encoder: str = "none", reduce_range: bool = False
                   ) -> tuple[nn.Module, OrderedDict[str, ActQuant]]:
    """(student CLIP sharing ``clip_model``'s weights, {layer name: its input ActQuant}) -- see module doc.

    ``reduce_range``: activations on 2^(a-1) - 1 levels (see :class:`.fakequant.ActQuant`)."""
    if fp_encoder not in FP_ENCODERS:
        raise ValueError(f"fp_encoder={fp_encoder!r} is not one of {', '.join(FP_ENCODERS)}")
    visual = clip_model.visual
    if not (hasattr(visual, "conv1") and hasattr(visual, "transformer")):
        raise ValueError("P4Q quantizes Vision-Transformer CLIPs (ViT-B/32, ViT-B/16, tiny-vit); this CLIP has a "
                         f"{type(visual).__name__} image encoder")
    student = _shared_copy(clip_model)
    acts: OrderedDict[str, ActQuant] = OrderedDict()

    def act(name: str) -> ActQuant:
        acts[name] = ActQuant(act_bits, reduce_range)
        return acts[name]

    def wanted(name: str) -> bool:
        in_visual = name == "visual" or name.startswith("visual.")
        return (fp_encoder != "image") if in_visual else (fp_encoder != "text")

    modules = list(student.named_modules())
    attention = [n for n, m in modules if isinstance(m, nn.MultiheadAttention)]
    for name, module in modules:
        if not name or not wanted(name) or any(name.startswith(a + ".") for a in attention):
            continue
        if isinstance(module, nn.MultiheadAttention):
            new: nn.Module = QuantMultiheadAttention(module, weight_bits, per_channel,
                                                     (act(name + ".in_proj"), act(name + ".out_proj")))
        elif isinstance(module, nn.Linear):
            new = QuantLinear(module.weight, module.bias, weight_bits, per_channel, act(name))
        elif name == "visual.conv1":
            new = QuantPatchConv(module, weight_bits, per_channel, act(name))
        else:
            continue
        _set(student, name, new)
    if wanted("visual") and getattr(student.visual, "proj", None) is not None:
        parametrize.register_parametrization(
            student.visual, "proj", WeightFakeQuant(student.visual.proj, weight_bits, per_channel))
    if wanted("transformer"):
        parametrize.register_parametrization(
            student, "text_projection", WeightFakeQuant(student.text_projection, weight_bits, per_channel))
    return student, acts
