"""Seed statistics and the harmonic mean.

* ``std``: the population standard deviation (``ddof=0``), the number CoOp's ``parse_test_res.py`` prints, so
  a table matches what people computed from their old runs.
* ``--ci95``: the half-width of the two-sided 95 % Student-t interval of the mean, ``t(0.975, n-1) * s /
  sqrt(n)`` with the sample standard deviation ``s`` (``ddof=1``). (CoOp used ``1.96 * std / sqrt(n)``, a
  normal approximation that understates the interval for the usual 3 seeds.) Undefined (None) for one seed.
* base-to-new ``H = 2 B N / (B + N)`` from the seed-mean accuracies of one dataset; the average over datasets
  is H of the averaged B and N, as the CoCoOp / MaPLe / QPrompt papers report (not the mean of per-dataset H).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

__all__ = ["Stat", "summarize", "harmonic_mean", "t_quantile_975", "mean"]


@dataclass
class Stat:
    """Mean of ``n`` seeds with its spread (std or CI half-width, see ``kind``)."""

    mean: float
    spread: Optional[float]
    n: int
    kind: str = "std"  # "std" | "ci95"
    seeds: list = field(default_factory=list)
    complete: bool = True  # False when seeds are missing compared with the table's expected seeds


def mean(values: Sequence[float]) -> float:
    """Plain arithmetic mean (math.fsum for exactness on short lists)."""
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


# Two-sided 95 % quantiles t(0.975, df) for df = 1..30, used when scipy is not importable.
_T975 = [
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
]


def t_quantile_975(df: int) -> float:
    """t(0.975, df): scipy when available, else the table above (df > 30 uses scipy or 1.96 + 2.4/df)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    try:
        from scipy.stats import t as student_t

        return float(student_t.ppf(0.975, df))
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        if df <= len(_T975):
            return _T975[df - 1]
        return 1.959964 + 2.4 / df


def summarize(values: Sequence[float], ci95: bool = False, seeds: Optional[Sequence] = None) -> Stat:
    """Mean and spread of the per-seed values (see module docstring for the definitions)."""
    vals = [float(v) for v in values]
    n = len(vals)
    m = mean(vals)
    if ci95:
        if n < 2:
            spread = None
        else:
            s = math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (n - 1))
            spread = t_quantile_975(n - 1) * s / math.sqrt(n)
        kind = "ci95"
    else:
        spread = math.sqrt(math.fsum((v - m) ** 2 for v in vals) / n)
        kind = "std"
    return Stat(mean=m, spread=spread, n=n, kind=kind, seeds=list(seeds) if seeds is not None else [])


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN/(B+N); 0 when both are 0."""
    if base + new == 0:
        return 0.0
    return 2.0 * base * new / (base + new)
