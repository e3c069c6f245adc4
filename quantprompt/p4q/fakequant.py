"""The numbers of P4Q's post-training quantization: symmetric b-bit weights, affine 8-bit activations.

Weights: per output channel (or per tensor) symmetric, ``scale = max|w| / (2^(b-1) - 1)``, integer codes in
``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (2^b - 1 levels: zero is exact and the grid is symmetric, which is what int8
GEMM kernels take). Activations: one affine (scale, zero point) pair per tensor on ``[0, 2^a - 1]``, fixed by
calibration (:mod:`.calibration`), with a straight-through gradient so prompts behind a quantized text encoder
still learn. Every function is pure tensor math: export, loader and integer backend use the same ones, so the
values they compute are the simulated model's bit for bit.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["qmax_of", "weight_scale", "weight_codes", "fake_quant_weight", "ActQuant", "ACT_MODES"]


def qmax_of(bits: int) -> int:
    """Largest symmetric code of a b-bit signed grid: 127 for 8 bits, 7 for 4 bits."""
    if not 2 <= int(bits) <= 8:
        raise ValueError(f"bits={bits!r}: symmetric weight quantization needs 2..8 bits")
    return 2 ** (int(bits) - 1) - 1


def weight_scale(w: Tensor, bits: int, axis: Optional[int] = 0) -> Tensor:
    """fp32 scale per output channel along ``axis`` (shape broadcastable to ``w``), or per tensor (axis None).

    An all-zero channel gets scale 1 so its codes are 0 and nothing divides by zero.
    """
    a = w.detach().abs().to(torch.float32)
    if axis is None:
        amax = a.amax().reshape([1] * w.dim())
    else:
        dims = [d for d in range(w.dim()) if d != axis % w.dim()]
        amax = a.amax(dim=dims, keepdim=True) if dims else a
    scale = amax / qmax_of(bits)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def weight_codes(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Integer codes (int8) of ``w`` on the grid ``scale * k``, k in [-qmax, qmax]."""
    q = qmax_of(bits)
    return torch.clamp(torch.round(w.detach().to(torch.float32) / scale), -q, q).to(torch.int8)


def fake_quant_weight(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """``codes * scale`` in ``w``'s dtype: the value the quantized model computes with (no gradient)."""
    return (weight_codes(w, scale, bits).to(torch.float32) * scale).to(w.dtype)


ACT_MODES = ("off", "observe", "quant")


class ActQuant(nn.Module):
    """Per-tensor affine activation fake-quantizer with calibration statistics.

    mode "observe": identity, records statistics for :func:`quantprompt.p4q.calibration.calibrate`;
    "quant": ``(clamp(round(x / s) + z, 0, 2^a - 1) - z) * s`` with a straight-through gradient; "off":
    identity. ``scale`` and ``zero_point`` are buffers, so a checkpoint of the module that owns them restores
    the calibration exactly.
    """

    scale: Tensor
    zero_point: Tensor

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        if not 2 <= int(bits) <= 8:
            raise ValueError(f"activation bits={bits!r} must be 2..8")
        self.bits = int(bits)
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))
        self.mode = "off"
        self.samples: list[Tensor] = []
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode}"

    def set_range(self, lo: float, hi: float) -> None:
        """Scale and zero point covering [lo, hi] (always including 0, so zero padding stays exact)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        scale = (hi - lo) / self.levels if hi > lo else 1.0
        self.scale.fill_(scale)
        self.zero_point.fill_(float(round(-lo / scale)))

    def quantize(self, x: Tensor) -> Tensor:
        s = self.scale.to(x.dtype)
        z = self.zero_point.to(x.dtype)
        return (torch.clamp(torch.round(x / s) + z, 0, self.levels) - z) * s

    def observe(self, x: Tensor, max_samples: int = 1 << 12) -> None:
        flat = x.detach().reshape(-1).to(torch.float32)
        lo, hi = float(flat.min()), float(flat.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        step = max(1, flat.numel() // max_samples)  # deterministic strided sample for percentile / MSE
        self.samples.append(flat[::step].cpu())

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "quant":
            return x + (self.quantize(x) - x).detach()
        if self.mode == "observe":
            self.observe(x)
        return x
