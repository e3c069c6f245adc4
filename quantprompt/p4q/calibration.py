"""Calibration of the activation quantizers on a few training batches: min-max, percentile or MSE.

All quantizers observe one full-precision-activation pass (weights already quantized); then each picks its
range from what it saw. Deterministic: the statistics are exact extrema and a strided (not random) sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from .fakequant import ActQuant

__all__ = ["CALIBRATORS", "calibrate", "choose_range"]

CALIBRATORS = ("minmax", "percentile", "mse")
PERCENTILE = 99.99  # of the observed values, at each end
MAX_SAMPLE = 1 << 14  # values per quantizer the percentile / MSE search looks at (strided, deterministic)
MSE_SHRINK = tuple(1.0 - 0.05 * i for i in range(15))  # clipping ratios tried by the MSE calibrator


def _affine_error(x: Tensor, lo: float, hi: float, levels: int) -> float:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / levels if hi > lo else 1.0
    zero = round(-lo / scale)
    q = (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale
    return float(((q - x) ** 2).mean())


def choose_range(quantizer: ActQuant, method: str) -> tuple[float, float]:
    """(lo, hi) for one quantizer from its observations."""
    if quantizer.lo is None or quantizer.hi is None:
        raise RuntimeError("this activation quantizer observed nothing during calibration")
    lo, hi = quantizer.lo, quantizer.hi
    if method == "minmax":
        return lo, hi
    sample = torch.cat(quantizer.samples)
    sample = sample[:: max(1, sample.numel() // MAX_SAMPLE)]
    if method == "percentile":
        k_lo = max(1, int(round(sample.numel() * (100.0 - PERCENTILE) / 100.0)))
        k_hi = max(1, sample.numel() - k_lo + 1)
        return float(sample.kthvalue(k_lo).values), float(sample.kthvalue(k_hi).values)
    if method == "mse":
        best = None
        for ratio in MSE_SHRINK:
            err = _affine_error(sample, lo * ratio, hi * ratio, quantizer.levels)
            if best is None or err < best[0]:
                best = (err, lo * ratio, hi * ratio)
        assert best is not None
        return best[1], best[2]
    raise ValueError(f"calibrator {method!r} is not one of {', '.join(CALIBRATORS)}")


@torch.no_grad()
def calibrate(quantizers: Mapping[str, ActQuant], run: Callable[[], None], method: str = "minmax"
              ) -> dict[str, tuple[float, float]]:
    """Observe during ``run()``, then set every quantizer's range with ``method`` and switch it on.

    Returns {name: (lo, hi)}. A quantizer that saw nothing (a layer ``run`` never reached) is an error.
    """
    if method not in CALIBRATORS:
        raise ValueError(f"calibrator {method!r} is not one of {', '.join(CALIBRATORS)}")
    for q in quantizers.values():
        q.mode, q.samples, q.lo, q.hi = "observe", [], None, None
    ok = False
    try:
        run()
        ranges = {}
        for name, q in quantizers.items():
            if q.lo is None:
                raise RuntimeError(f"calibration never reached layer {name!r}")
            ranges[name] = choose_range(q, method)
            q.set_range(*ranges[name])
        ok = True
    finally:
        for q in quantizers.values():
            q.samples = []
            q.mode = "quant" if ok else "off"
    return ranges
