"""Plain-Python configuration of the quantizer and of the Gaussian-noise baseline (validated at construction)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

__all__ = ["QuantConfig", "NoiseConfig", "MODES", "RECLUSTER"]

MODES = ("qat", "ptq", "off")
RECLUSTER = ("cac", "always", "never")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _targets(value: Union[str, Sequence[str]], owner: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    try:
        out = list(value)
    except TypeError:
        raise ValueError(f"{owner}.targets must be a list of parameter names or regexes, got {value!r}") from None
    if not out or not all(isinstance(t, str) and t for t in out):
        raise ValueError(f"{owner}.targets must be a non-empty list of non-empty strings, got {value!r}")
    return out


@dataclass
class QuantConfig:
    """What to quantize and how (paper Sec. 4; ablation switches of Tables 4-6).

    bits: 1..8, the codebook has 2**bits centers.  targets: exact parameter names or regexes (full match) as in
    ``module.named_parameters()``.  norm: normalize by mean and population std before clustering (Table 4).
    mode: "qat" (quantize in every forward), "ptq" (identity while training; ``finalize_`` clusters the final
    weights and switches quantization on), "off" (attached but always identity) (Table 5).  per_row: one codebook
    per row (``shape[0]``) instead of one per tensor.
    Constrained adaptive clustering (Sec. 4.3), checked by ``step``: recluster="cac" re-clusters only when every
    enabled condition holds: (i) ``interval`` > 0: at least ``interval`` ``step`` calls since the last re-cluster;
    (ii) ``kl_threshold`` not None: KL(p_cur || p_old) > kl_threshold; (iii) ``require_error_increase``: the
    quantization error exceeds its value right after the last re-cluster.  recluster="always" re-clusters on every
    ``step`` (classic QAT, the "no CAC" row of Table 4); "never" keeps the initial codebook.
    The paper gives no values for interval and kl_threshold; the defaults here are ours.
    kl_smoothing: pseudo-count added to each cluster's count before the histograms are normalized, so an empty
    cluster gives a finite KL.  kmeans_*: settings of ``kmeans_1d`` (backend "sklearn" is the slow reference).
    """

    bits: int = 1
    targets: Sequence[str] = field(default_factory=lambda: ["prompt_learner.ctx"])
    norm: bool = True
    mode: str = "qat"
    per_row: bool = False
    recluster: str = "cac"
    interval: int = 10
    kl_threshold: Optional[float] = 1e-4
    require_error_increase: bool = True
    kl_smoothing: float = 1.0
    kmeans_backend: str = "torch"
    kmeans_init: str = "k-means++"
    kmeans_restarts: int = 4
    kmeans_max_iter: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.bits) or not 1 <= self.bits <= 8:
            raise ValueError(f"QuantConfig.bits must be an int from 1 to 8, got {self.bits!r}")
        self.targets = _targets(self.targets, "QuantConfig")
        for name in ("norm", "per_row", "require_error_increase"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"QuantConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.mode not in MODES:
            raise ValueError(f"QuantConfig.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.recluster not in RECLUSTER:
            raise ValueError(f"QuantConfig.recluster must be one of {', '.join(RECLUSTER)}, got {self.recluster!r}")
        if not _is_int(self.interval) or self.interval < 0:
            raise ValueError(f"QuantConfig.interval must be an int >= 0 (0 disables it), got {self.interval!r}")
        if self.kl_threshold is not None:
            if isinstance(self.kl_threshold, bool) or not isinstance(self.kl_threshold, (int, float)) \
                    or not self.kl_threshold >= 0:
                raise ValueError(
                    f"QuantConfig.kl_threshold must be a number >= 0 or None (disabled), got {self.kl_threshold!r}")
            self.kl_threshold = float(self.kl_threshold)
        if isinstance(self.kl_smoothing, bool) or not isinstance(self.kl_smoothing, (int, float)) \
                or not self.kl_smoothing > 0:
            raise ValueError(f"QuantConfig.kl_smoothing must be a number > 0, got {self.kl_smoothing!r}")
        self.kl_smoothing = float(self.kl_smoothing)
        if self.kmeans_backend not in ("torch", "sklearn"):
            raise ValueError(f"QuantConfig.kmeans_backend must be 'torch' or 'sklearn', got {self.kmeans_backend!r}")
        if self.kmeans_init not in ("k-means++", "quantile"):
            raise ValueError(f"QuantConfig.kmeans_init must be 'k-means++' or 'quantile', got {self.kmeans_init!r}")
        for name in ("kmeans_restarts", "kmeans_max_iter"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"QuantConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not _is_int(self.seed):
            raise ValueError(f"QuantConfig.seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for .qpt metadata and logs); ``QuantConfig(**d)`` rebuilds it."""
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        return d


@dataclass
class NoiseConfig:
    """Gaussian-noise baseline (paper Fig. 2): add N(0, std^2) to the targeted tensors, in training mode only."""

    std: float = 0.01
    targets: Sequence[str] = field(default_factory=lambda: ["prompt_learner.ctx"])

    def __post_init__(self) -> None:
        if isinstance(self.std, bool) or not isinstance(self.std, (int, float)) or not self.std >= 0:
            raise ValueError(f"NoiseConfig.std must be a number >= 0, got {self.std!r}")
        self.std = float(self.std)
        self.targets = _targets(self.targets, "NoiseConfig")

    def to_dict(self) -> dict[str, Any]:
        return {"std": self.std, "targets": list(self.targets)}
