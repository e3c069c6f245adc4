"""Exact 1-D K-Means in torch: sort once, prefix sums, Lloyd iterations in O(k log n).

In one dimension every K-Means cluster is a contiguous run of the sorted values, split at the midpoints of
adjacent centers.  After one sort and one prefix sum, a Lloyd iteration only needs the k - 1 split positions
(a binary search of each midpoint) and k segment sums (differences of the prefix sum): O(k log n) per iteration
instead of O(n k).  All restarts run batched, so several k-means++ seeds cost little more than one.
The result is a real K-Means solution of the full data (no sampling in the iterations); only the k-means++
seeding looks at an evenly spaced set of order statistics, which is a faithful summary of sorted data.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["kmeans_1d", "inertia_1d", "assign_1d", "nearest_index"]

_INIT_SAMPLE = 4096  # order statistics used to seed k-means++
_DP_BLOCKS = 256  # blocks of the dynamic-programming seed
_SMALL_ON_CPU = 1 << 16
_LUT_MIN = 1 << 16  # CPU inputs from this size use the grid lookup in nearest_index
_LUT_CELLS = 4096  # inputs up to this size are clustered on CPU whatever their device


def _sorted_values(x: Tensor) -> Tensor:
    """Ascending sort of a flat float32 tensor.

    On CPU, torch sorts int32 with a radix sort that is ~10x faster than its float sort, so floats are mapped to
    order-preserving int32 keys (flip the magnitude bits of negative numbers), sorted and mapped back.
    """
    if x.device.type == "cpu" and x.dtype == torch.float32:
        i = x.view(torch.int32)
        key = i ^ ((i >> 31) & 0x7FFFFFFF)
        s = torch.sort(key).values
        return (s ^ ((s >> 31) & 0x7FFFFFFF)).view(torch.float32)
    return torch.sort(x).values


def nearest_index(x: Tensor, mids: Tensor) -> Tensor:
    """Bucket of each value of ``x`` among sorted midpoints ``mids`` (k - 1 values): index i with
    mids[i-1] < x <= mids[i] (``torch.bucketize``; one comparison when k = 2), int64 of ``x.shape``.

    (A grid-lookup variant was tried for large CPU inputs; it was not faster than bucketize on 2 cores.)
    """
    m = mids.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous()
    if m.numel() == 1:
        return (x > m[0]).long()
    return torch.bucketize(x, m)


def assign_1d(x: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest of the sorted ``centers`` for every value of ``x`` (ties go to the lower center)."""
    c = centers.reshape(-1).to(device=x.device, dtype=torch.float32)
    xf = x.to(torch.float32)
    if c.numel() == 1:
        return torch.zeros(x.shape, dtype=torch.long, device=x.device)
    return nearest_index(xf, (c[1:] + c[:-1]) / 2).reshape(x.shape)


def inertia_1d(x: Tensor, centers: Tensor) -> float:
    """Sum of squared distances of ``x`` to their nearest center (float64), the K-Means objective."""
    xf = x.reshape(-1).to(torch.float64)
    c = centers.reshape(-1).to(device=x.device, dtype=torch.float64)
    idx = assign_1d(x, centers).reshape(-1)
    return float(((xf - c[idx]) ** 2).sum())


def _kmeanspp(sample: Tensor, k: int, restarts: int, gen: torch.Generator) -> Tensor:
    """Greedy k-means++ (as scikit-learn: 2 + log k candidates per step, keep the best), all restarts batched.

    sample: small 1-D CPU float64 tensor; returns (restarts, k) sorted seeds.
    """
    m = sample.numel()
    trials = 2 + int(math.log(k))
    rows = torch.arange(restarts)
    first = torch.randint(m, (restarts,), generator=gen)
    centers = [sample[first]]
    d2 = (sample.unsqueeze(0) - sample[first].unsqueeze(1)) ** 2  # (R, m)
    for _ in range(1, k):
        total = d2.sum(1, keepdim=True)
        weights = torch.where(total > 0, d2, torch.ones_like(d2))  # all-zero row: any point will do
        cand = torch.multinomial(weights, trials, replacement=True, generator=gen)  # (R, T)
        cand_d2 = torch.minimum(d2.unsqueeze(1), (sample.view(1, 1, m) - sample[cand].unsqueeze(2)) ** 2)
        best = torch.argmin(cand_d2.sum(2), dim=1)  # (R,)
        centers.append(sample[cand[rows, best]])
        d2 = cand_d2[rows, best]
    return torch.sort(torch.stack(centers, dim=1), dim=1).values


def _dp_seed(s: Tensor, prefix: Tensor, k: int) -> Tensor:
    """Exact K-Means optimum over partitions aligned to ``m`` equal-count blocks of the sorted data.

    A partition that only cuts at block edges has within-cluster SS = (within-block SS, a constant) + the weighted
    SS of the block means, so the dynamic program over the m weighted block means is exact for such partitions
    (O(k m^2), vectorized per layer).  Its centers seed Lloyd next to the global optimum; for n <= m the blocks
    are the values themselves and the seed is the global optimum.
    """
    n = s.numel()
    half = max(_DP_BLOCKS, 2 * k) // 2
    if n <= 2 * half:
        edges = torch.arange(n + 1, device=s.device)
    else:
        # half the edges at equal counts (resolution where the mass is), half at equal widths (so that gaps
        # between separated modes, where the optimal cuts lie, are block edges too)
        by_count = torch.div(torch.arange(half + 1, device=s.device) * n, half, rounding_mode="floor")
        grid = torch.linspace(float(s[0]), float(s[-1]), half + 1, dtype=torch.float64, device=s.device)
        by_width = torch.searchsorted(s, grid.to(s.dtype)[1:-1].contiguous())
        edges = torch.unique(torch.cat([by_count, by_width]))
    m = edges.numel() - 1
    w = (edges[1:] - edges[:-1]).double()
    sums = prefix[edges[1:]] - prefix[edges[:-1]]
    mean = sums / w
    cw = torch.cat([w.new_zeros(1), torch.cumsum(w, 0)])
    c1 = torch.cat([w.new_zeros(1), torch.cumsum(sums, 0)])
    c2 = torch.cat([w.new_zeros(1), torch.cumsum(w * mean * mean, 0)])
    i = torch.arange(m + 1, device=s.device)
    ww = cw.unsqueeze(0) - cw.unsqueeze(1)  # [i, j]: blocks i..j-1
    s1 = c1.unsqueeze(0) - c1.unsqueeze(1)
    s2 = c2.unsqueeze(0) - c2.unsqueeze(1)
    valid = i.unsqueeze(0) > i.unsqueeze(1)
    cost = torch.where(valid, s2 - s1 * s1 / ww.clamp_min(1), torch.full_like(ww, float("inf")))
    inf = float("inf")
    d = torch.full((m + 1,), inf, dtype=torch.float64, device=s.device)
    d[0] = 0.0
    back = []
    for _ in range(k):
        tot = d.unsqueeze(1) + cost  # [i, j]
        d, arg = tot.min(0)
        back.append(arg)
    cuts = [m]
    j = m
    for arg in reversed(back):
        j = int(arg[j])
        cuts.append(j)
    cuts = cuts[::-1]
    centers = [(c1[b] - c1[a]) / (cw[b] - cw[a]) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    while len(centers) < k:  # fewer non-empty segments than k (tiny m): repeat the last
        centers.append(centers[-1])
    return torch.sort(torch.stack(centers)).values


def _fix_empty(c: Tensor, bounds: Tensor, s: Tensor) -> Tensor:
    """Move each empty cluster's center onto the value farthest from its own center (rare; done in Python)."""
    c = c.clone()
    for r in range(c.shape[0]):
        cnt = (bounds[r, 1:] - bounds[r, :-1]).tolist()
        if min(cnt) > 0:
            continue
        row = c[r].tolist()
        b = bounds[r].tolist()
        # farthest point of each non-empty segment is one of its two ends
        cands = []
        for j, nj in enumerate(cnt):
            if nj > 0:
                for p in (b[j], b[j + 1] - 1):
                    cands.append((abs(float(s[p]) - row[j]), p))
        cands.sort(key=lambda t: (-t[0], t[1]))
        for j, nj in enumerate(cnt):
            if nj == 0 and cands:
                row[j] = float(s[cands.pop(0)[1]])
        c[r] = torch.tensor(sorted(row), dtype=c.dtype, device=c.device)
    return c


def _segments(s: Tensor, prefix: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split positions (R, k+1), counts and sums of the clusters of sorted ``s`` under sorted centers ``c``."""
    n = s.numel()
    r = c.shape[0]
    mids = ((c[:, 1:] + c[:, :-1]) / 2).to(torch.float32).contiguous()
    bounds = torch.cat([torch.zeros(r, 1, dtype=torch.long, device=s.device),
                        torch.searchsorted(s, mids, right=True),
                        torch.full((r, 1), n, dtype=torch.long, device=s.device)], dim=1)
    cnt = bounds[:, 1:] - bounds[:, :-1]
    sums = prefix[bounds[:, 1:]] - prefix[bounds[:, :-1]]
    return bounds, cnt, sums


def _lloyd_sorted(s: Tensor, prefix: Tensor, init: Tensor, max_iter: int, tol: float = 1e-10
                  ) -> tuple[Tensor, Tensor]:
    """Batched Lloyd on sorted data. init: (R, k) float64. Returns (centers (R, k), score (R,)).

    score = -sum_j S_j^2 / n_j, which equals inertia minus the constant sum of squares: enough to rank restarts.
    Stops when no split position moves, or when the best inertia improved by less than ``tol`` (relative) over
    the last check (1-D Lloyd can creep for hundreds of iterations by amounts far below any useful precision).
    Convergence is checked every iteration on CPU and every 16 on other devices (each check synchronizes).
    """
    every = 1 if s.device.type == "cpu" else 16
    sumsq = float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2
    c = init
    prev_bounds = None
    prev_best = None
    for it in range(max_iter):
        bounds, cnt, sums = _segments(s, prefix, c)
        empty = bool((cnt == 0).any()) if every == 1 or it % every == 0 else False
        if empty:
            c = _fix_empty(torch.where(cnt > 0, sums / cnt.clamp_min(1), c), bounds, s)
            prev_bounds = prev_best = None
            continue
        if every == 1 or it % every == 0:
            if prev_bounds is not None and torch.equal(bounds, prev_bounds):
                break
            best = sumsq - float((sums * sums / cnt.clamp_min(1)).sum(1).max())
            if prev_best is not None and prev_best - best <= tol * max(best, 1e-300):
                break
            prev_best = best
            prev_bounds = bounds
        c = torch.where(cnt > 0, sums / cnt.clamp_min(1), c)
    bounds, cnt, sums = _segments(s, prefix, c)
    c = torch.where(cnt > 0, sums / cnt.clamp_min(1), c)
    score = -torch.where(cnt > 0, sums * sums / cnt.clamp_min(1), torch.zeros_like(sums)).sum(1)
    return c, score


def _kmeans_sklearn(xf: Tensor, k: int, seed: int) -> Tensor:
    from sklearn.cluster import KMeans  # lazy: scikit-learn is only the reference backend

    arr = xf.detach().cpu().double().numpy().reshape(-1, 1)
    km = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(arr)
    return torch.sort(torch.from_numpy(km.cluster_centers_.reshape(-1)).float()).values


def kmeans_1d(
    x: Tensor,
    k: int,
    seed: int = 0,
    backend: str = "torch",
    *,
    init: str = "k-means++",
    restarts: int = 4,
    max_iter: int = 300,
    init_centers: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """K-Means of the values of ``x`` (any shape) into ``k`` clusters.

    Returns ``(centers, idx)``: ``centers`` float32 of shape (k,), ascending, on ``x.device``; ``idx`` int64 of
    ``x.shape``, the nearest center of each value.  ``init`` is "k-means++" (``restarts`` seeds, best inertia
    kept) or "quantile" (one deterministic seed at the (j + 1/2)/k quantiles).  ``init_centers`` adds one more
    seed (used by constrained adaptive clustering to warm-start from the current codebook, so a re-cluster can
    never end worse than Lloyd from the old codebook).  Deterministic for a seed.  If ``x`` has at most ``k``
    distinct values, the centers are those values (the last one repeated to fill ``k``).
    ``backend="sklearn"`` runs scikit-learn's ``KMeans`` with default settings, for reference.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"kmeans_1d: k must be a positive int, got {k!r}")
    if not isinstance(x, Tensor) or x.numel() == 0:
        raise ValueError("kmeans_1d: x must be a non-empty tensor")
    if backend not in ("torch", "sklearn"):
        raise ValueError(f"kmeans_1d: backend must be 'torch' or 'sklearn', got {backend!r}")
    if init not in ("k-means++", "quantile"):
        raise ValueError(f"kmeans_1d: init must be 'k-means++' or 'quantile', got {init!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"kmeans_1d: restarts must be an int >= 1, got {restarts!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"kmeans_1d: max_iter must be an int >= 1, got {max_iter!r}")
    xf = x.detach().reshape(-1).to(torch.float32)
    if xf.device.type != "cpu" and xf.numel() <= _SMALL_ON_CPU:
        # small inputs: kernel-launch latency dominates on accelerators; CPU is faster and gives the same result
        centers, idx = kmeans_1d(xf.cpu(), k, seed, backend, init=init, restarts=restarts, max_iter=max_iter,
                                 init_centers=None if init_centers is None else init_centers.detach().cpu())
        return centers.to(x.device), idx.to(x.device).reshape(x.shape)
    nonfinite = ValueError("kmeans_1d: x contains NaN or inf; K-Means needs finite values")
    if backend == "sklearn":
        if not bool(torch.isfinite(xf).all()):
            raise nonfinite
        if torch.unique(xf).numel() > k:
            centers = _kmeans_sklearn(xf, k, seed).to(x.device)
            return centers, assign_1d(x.detach(), centers)
    s = _sorted_values(xf)
    n = s.numel()
    if not bool(torch.isfinite(s[[0, n - 1]]).all()):  # NaN and inf sort to the ends (either sort path)
        raise nonfinite
    if k == 1:
        centers = s.double().mean().reshape(1).float()
        return centers, torch.zeros(x.shape, dtype=torch.long, device=x.device)
    n_distinct = 1 + int((s[1:] != s[:-1]).sum()) if n > 1 else 1
    if n_distinct <= k:
        u = torch.unique_consecutive(s)
        centers = torch.cat([u, u[-1:].expand(k - u.numel())])
        return centers, assign_1d(x.detach(), centers)

    prefix = torch.zeros(n + 1, dtype=torch.float64, device=s.device)
    torch.cumsum(s.double(), 0, out=prefix[1:])
    seeds = []
    if init == "quantile":
        pos = ((torch.arange(k, dtype=torch.float64) + 0.5) * n / k).long().clamp_max(n - 1)
        seeds.append(s[pos.to(s.device)].double())
    else:
        m = min(n, _INIT_SAMPLE)
        pos = ((torch.arange(m, dtype=torch.float64) + 0.5) * n / m).long().clamp_max(n - 1)
        sample = s[pos.to(s.device)].double().cpu()
        gen = torch.Generator().manual_seed(int(seed))
        seeds.extend(_kmeanspp(sample, k, restarts, gen).to(s.device).unbind(0))
    if init == "k-means++":
        seeds.append(_dp_seed(s, prefix, k))
    if init_centers is not None:
        ic = init_centers.detach().reshape(-1).to(device=s.device, dtype=torch.float64)
        if ic.numel() != k:
            raise ValueError(f"kmeans_1d: init_centers has {ic.numel()} values, expected k={k}")
        seeds.append(torch.sort(ic).values)
    c, score = _lloyd_sorted(s, prefix, torch.stack(seeds), max_iter)
    best = int(torch.argmin(score))  # first minimum: deterministic
    centers = c[best].float()
    return centers, assign_1d(x.detach(), centers)
