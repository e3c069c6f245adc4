"""Constrained adaptive clustering (paper Sec. 4.3): the pure decision rules, kept apart from the hook.

p_old is the histogram of the cluster indices of the weights cached at the last re-cluster, assigned with the
*current* centers.  The centers only change at a re-cluster, and at that moment they are fitted to exactly those
cached weights, so p_old cannot change until the next re-cluster: the quantizer stores that 2^b-bin histogram
instead of a full copy of the cached weights (which would double the state of a 3.5 M-parameter MaPLe prompt).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["index_histogram", "kl_divergence", "should_recluster"]


def index_histogram(idx: Tensor, k: int) -> Tensor:
    """Counts (float32) of each of the k cluster indices, per row of a (rows, m) index tensor -> (rows, k)."""
    rows = idx.shape[0]
    offs = torch.arange(rows, device=idx.device).unsqueeze(1) * k
    counts = torch.bincount((idx + offs).reshape(-1), minlength=rows * k)
    return counts.reshape(rows, k).float()


def kl_divergence(cur_counts: Tensor, old_counts: Tensor, smoothing: float) -> Tensor:
    """KL(p_cur || p_old) per row, with ``smoothing`` pseudo-counts per bin so that empty bins stay finite."""
    p = cur_counts.double() + smoothing
    q = old_counts.double() + smoothing
    p = p / p.sum(1, keepdim=True)
    q = q / q.sum(1, keepdim=True)
    return (p * (p.log() - q.log())).sum(1)


def should_recluster(
    *,
    recluster: str,
    steps_since: int,
    interval: int,
    kl: Optional[float],
    kl_threshold: Optional[float],
    error: Optional[float],
    ref_error: float,
    require_error_increase: bool,
) -> bool:
    """True when every enabled CAC condition holds ("always": every step; "never": no step).

    (i) interval > 0: steps_since >= interval; (ii) kl_threshold is not None: kl > kl_threshold;
    (iii) require_error_increase: error > ref_error (the error right after the last re-cluster).
    """
    if recluster == "always":
        return True
    if recluster == "never":
        return False
    if interval > 0 and steps_since < interval:
        return False
    if kl_threshold is not None and not (kl is not None and kl > kl_threshold):
        return False
    if require_error_increase and not (error is not None and error > ref_error):
        return False
    return True
