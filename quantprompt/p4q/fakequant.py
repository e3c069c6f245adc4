"""The numbers of P4Q's post-training quantization: symmetric b-bit weights, affine 8-bit activations.

Weights: per output channel (or per tensor) symmetric, ``scale = max|w| / (2^(b-1) - 1)``, integer codes in
``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (2^b - 1 levels: zero is exact and the grid is symmetric, which is what int8
GEMM kernels take). Activations: one affine (scale, zero point) pair per tensor on ``[0, 2^a - 1]``, fixed by
calibration (:mod:`.calibration`), with a straight-through gradient so prompts behind a quantized text encoder
still learn. ``reduce_range`` drops one activation bit (127 levels at 8 bits), the grid FBGEMM's int8 GEMM
computes exactly on x86 CPUs without VNNI (see :mod:`.backend`).

A quantized layer computes in the integer form the int8 kernel uses (:func:`integer_linear`): input codes
``clamp(round(x * (1/s)) + z)``, an exact integer accumulation against the weight codes, then one fused
``acc * (s * s_w) + bias`` rounded once to fp32. That is the fake-quantized layer's value up to float rounding,
and it is bit for bit what ``quantized::linear`` returns on the CPU, so the simulated model *is* the deployed
arithmetic (tests/test_p4q_export.py). Export, loader and integer backend use these same functions.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["qmax_of", "weight_scale", "weight_codes", "fake_quant_weight", "ActQuant", "ACT_MODES", "ACT_RANGES",
           "integer_linear", "EXACT_FP32_SUM"]


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
#: activation grid: "full" 2^a - 1 levels; "reduced" 2^(a-1) - 1 (PyTorch's ``reduce_range``); "auto" picks the
#: one the int8 kernel of this machine computes exactly (:func:`quantprompt.p4q.backend.deployment_act_range`)
ACT_RANGES = ("auto", "full", "reduced")
#: integers up to 2^24 are exact in fp32: an accumulation whose partial sums stay below it is exact
EXACT_FP32_SUM = float(2 ** 24)


class ActQuant(nn.Module):
    """Per-tensor affine activation fake-quantizer with calibration statistics.

    mode "observe": identity, records statistics for :func:`quantprompt.p4q.calibration.calibrate`;
    "quant": ``(clamp(round(x * (1/s)) + z, 0, L) - z) * s`` with a straight-through gradient, L = 2^a - 1
    levels (``2^(a-1) - 1`` with ``reduce_range``); "off": identity. ``x * (1/s)`` rather than ``x / s``
    because the int8 kernels quantize their input that way (the two differ in the last bit now and then).
    ``scale`` and ``zero_point`` are buffers, so a checkpoint of the module that owns them restores the
    calibration exactly.
    """

    scale: Tensor
    zero_point: Tensor

    def __init__(self, bits: int = 8, reduce_range: bool = False) -> None:
        super().__init__()
        if not 2 <= int(bits) <= 8:
            raise ValueError(f"activation bits={bits!r} must be 2..8")
        self.bits = int(bits)
        self.reduce_range = bool(reduce_range)
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))
        self.mode = "off"
        self.samples: list[Tensor] = []
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - self.reduce_range) - 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, levels={self.levels}, mode={self.mode}"

    def set_range(self, lo: float, hi: float) -> None:
        """Scale and zero point covering [lo, hi] (always including 0, so zero padding stays exact)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        scale = (hi - lo) / self.levels if hi > lo else 1.0
        self.scale.fill_(scale)
        self.zero_point.fill_(float(round(-lo / scale)))

    def centered_codes(self, x: Tensor) -> Tensor:
        """``code - zero_point`` of each value (integers held in fp32), as the int8 kernels compute them."""
        x = x.to(torch.float32)
        inverse = 1.0 / self.scale.to(torch.float32)
        z = self.zero_point.to(torch.float32)
        return torch.clamp(torch.round(x * inverse) + z, 0, self.levels) - z

    def quantize(self, x: Tensor) -> Tensor:
        return (self.centered_codes(x) * self.scale.to(torch.float32)).to(x.dtype)

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


def integer_linear(x: Tensor, act: ActQuant, w_codes: Tensor, w_scale: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``linear(act.quantize(x), w_codes * w_scale, bias)`` computed like the int8 kernel: exact integer
    accumulation of centered input codes against weight codes (fp32 when a bound proves every partial sum is
    an exact fp32 integer, else fp64), then ``acc * float32(s * s_w) + bias`` rounded once to fp32 (the fused
    multiply-add of FBGEMM's fp32-output epilogue). Straight-through gradient to ``x`` (``w / s`` scaled back).

    ``w_codes``: (out, in) integer codes; ``w_scale``: fp32, one per output channel or one in all. Autocast
    (``PREC amp``) is switched off inside: in fp16 the integer sums overflow (NaN), in bf16 they are rounded.
    """
    with torch.autocast(x.device.type, enabled=False):  # amp would round the integer sums (fp16: overflow)
        return _integer_linear(x, act, w_codes, w_scale, bias)


def _integer_linear(x: Tensor, act: ActQuant, w_codes: Tensor, w_scale: Tensor, bias: Optional[Tensor]) -> Tensor:
    shape, dtype = x.shape, x.dtype
    x = x.reshape(-1, shape[-1]).to(torch.float32)
    codes = act.centered_codes(x.detach())
    if x.requires_grad:  # value: the codes exactly (t - t == 0); gradient: d(x / s)/dx, straight through
        t = x / act.scale.to(torch.float32)
        codes = codes + (t - t.detach())
    w = w_codes.to(torch.float32)
    bound = float(codes.detach().abs().sum(-1).max()) * float(w.abs().max()) if codes.numel() else 0.0
    if bound < EXACT_FP32_SUM:
        acc = codes @ w.t()
    else:
        acc = (codes.double() @ w.double().t()).float()
    step = (act.scale.to(torch.float32) * w_scale.reshape(-1).to(torch.float32)).double()
    out = acc.double().mul_(step)  # fp32 x fp32 is exact in fp64; in place: one fp64 copy of the output
    if bias is not None:
        out.add_(bias.to(torch.float32).double())
    return out.to(torch.float32).reshape(*shape[:-1], w.shape[0]).to(dtype)
