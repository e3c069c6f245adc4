"""Exact 1-D K-Means in torch: sort once, prefix sums, Lloyd iterations in O(k log n).

In one dimension every K-Means cluster is a contiguous run of the sorted values, split at the midpoints of
adjacent centers.  After one sort and one prefix sum, a Lloyd iteration only needs the k - 1 split positions
(a binary search of each midpoint) and k segment sums (differences of the prefix sum): O(k log n) per iteration
instead of O(n k).  All restarts run batched, so several k-means++ seeds cost little more than one.
The result is a real K-Means solution of the full data (no sampling in the iterations); only the k-means++
seeding looks at an evenly spaced set of order statistics, which is a faithful summary of sorted data.

Large CPU inputs skip the sort, which would cost more than everything else (see ``_Binned``): a fine equal-width
histogram (counts and float64 sums per bin) stands in for the sorted data while seeding and iterating, then Lloyd
runs on again, exactly, with the raw values of only the bins that hold a midpoint.
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
_HIST_MIN = 1 << 18  # CPU inputs above this size are binned (``_Binned``) instead of sorted
_HIST_BINS = 1 << 14  # equal-width bins between min and max
_HIST_WINDOW = 1  # bins loaded on each side of a bin whose raw values are needed
_CHUNK = 1 << 19  # values binned per step (cache-sized)
_STEPS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # step lengths tried by _extrapolate


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


class _Points:
    """Sorted values ``v`` with their multiplicities (``counts``; None: one each) and ``cum_s`` (float64, m + 1),
    the sums of the values of points [0, i): all that Lloyd, the seeds and the empty-cluster fix read of the data.
    """

    def __init__(self, v: Tensor, cum_s: Tensor, sumsq: float, counts: Optional[Tensor] = None) -> None:
        self.v, self.cum_s, self.sumsq = v, cum_s, sumsq
        self.cum_n = None if counts is None else torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        self.n = v.numel() if counts is None else int(self.cum_n[-1])

    def split(self, mids: Tensor) -> tuple[Tensor, Tensor]:
        """Number (int64) and sum (float64) of the values <= each float32 midpoint."""
        i = torch.searchsorted(self.v, mids, right=True)
        return (i if self.cum_n is None else self.cum_n[i]), self.cum_s[i]

    def value_at(self, rank: Tensor) -> Tensor:
        """The values of the given ranks (0-based, int64) of the sorted data."""
        return self.v[rank if self.cum_n is None else torch.searchsorted(self.cum_n, rank, right=True) - 1]


class _Binned:
    """Exact view of unsorted data through a histogram, for large CPU inputs, where one sort costs more than all the
    rest (a float sort of 3.5 M values is ~50-100 ms on 2 cores; one pass over them is ~1-5 ms).

    Every value gets a bin by arithmetic on its float32 value, a monotone map, so a bin below a midpoint's own bin
    holds only values below it and a bin above only values above.  With per-bin counts and float64 sums, the
    number and sum of the values <= a midpoint are exact once the raw values of its own bin are known: those are
    loaded (one pass over the bin indices, with ``_HIST_WINDOW`` bins around, as the midpoints move little) when
    a midpoint first falls into a bin not loaded yet.  Seeds come from ``histogram()`` (the bins as points at their
    means); Lloyd runs first with ``exact`` False (each bin's values taken as spread evenly over it: no raw values
    needed, so ``_extrapolate`` is cheap), then, from the best restart, with ``exact`` True until it converges.
    """

    def __init__(self, x: Tensor, lo: float, hi: float) -> None:
        self.x, self.lo, self.scale = x, lo, _HIST_BINS / (hi - lo)
        self.bins = torch.empty(x.shape, dtype=torch.int32)
        self.cnt = torch.zeros(_HIST_BINS, dtype=torch.long)
        self.sums = torch.zeros(_HIST_BINS, dtype=torch.float64)
        for xs, bs in zip(x.split(_CHUNK), self.bins.split(_CHUNK)):  # chunks that stay in cache
            bs.copy_(self._coord(xs))
            self.cnt += torch.bincount(bs, minlength=_HIST_BINS)
            self.sums += torch.bincount(bs, weights=xs.double(), minlength=_HIST_BINS)
        self.cum_n = torch.cat([self.cnt.new_zeros(1), torch.cumsum(self.cnt, 0)])
        self.cum_s = torch.cat([self.sums.new_zeros(1), torch.cumsum(self.sums, 0)])
        mean = self.sums / self.cnt.clamp_min(1)
        # sum of squares less the within-bin part (only scales Lloyd's stopping tolerance: no pass over x for it)
        self.n, self.sumsq = x.numel(), float((self.sums * mean).sum())
        # values spread evenly over a bin, shifted to its mean: those of bin j below v sum to (#) * (v / 2 + half[j])
        self.half = mean - (lo + (torch.arange(_HIST_BINS, dtype=torch.float64) + 1) / self.scale) / 2
        self.exact = False
        self.loaded = torch.zeros(_HIST_BINS, dtype=torch.bool)
        self.pos = torch.zeros(0, dtype=torch.long)  # positions in x of the loaded values, by ascending value
        self._index()

    def _coord(self, v: Tensor) -> Tensor:
        return torch.sub(v, self.lo).mul_(self.scale).clamp_(0, _HIST_BINS - 1)

    def bin_of(self, v: Tensor) -> Tensor:  # the same conversion (truncation) as bins.copy_ in __init__
        return self._coord(v).to(torch.int32)

    def _index(self) -> None:
        self.vals = self.x[self.pos]
        self.vbins = self.bins[self.pos]
        self.vcum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(self.vals.double(), 0)])

    def _load(self, bins: Tensor) -> None:
        need = bins.reshape(-1).long().unique()
        need = need[~self.loaded[need]]
        if need.numel() == 0:
            return
        win = (need.unsqueeze(1) + torch.arange(-_HIST_WINDOW, _HIST_WINDOW + 1)).clamp(0, _HIST_BINS - 1).unique()
        self.loaded[win] = True
        sel = torch.zeros(_HIST_BINS, dtype=torch.bool)
        sel[win[self.cnt[win] > 0]] = True
        pos = torch.cat([self.pos, torch.nonzero(sel.index_select(0, self.bins)).squeeze(1)])
        self.pos = pos[torch.argsort(self.x[pos], stable=True)]
        self._index()

    def histogram(self) -> _Points:
        full = self.cnt > 0
        return _Points((self.sums[full] / self.cnt[full]).float(), self.cum_s[torch.cat([full.new_ones(1), full])],
                       self.sumsq, self.cnt[full])

    def split(self, mids: Tensor) -> tuple[Tensor, Tensor]:
        if not self.exact:  # values spread evenly over each bin (see half): no raw values needed
            m = mids.double()
            u = (m - self.lo) * self.scale
            j = u.floor().clamp_(0, _HIST_BINS - 1)
            part = (u - j).clamp_(0, 1)
            j = j.long()
            part *= self.cnt[j]
            return self.cum_n[j] + part, self.cum_s[j] + part * (m / 2 + self.half[j])
        b = self.bin_of(mids)
        self._load(b)
        start = torch.searchsorted(self.vbins, b)  # loaded values in bins below b, then those in b that are <= mid
        end = torch.searchsorted(self.vals, mids, right=True)
        b = b.long()
        return self.cum_n[b] + (end - start), self.cum_s[b] + (self.vcum[end] - self.vcum[start])

    def value_at(self, rank: Tensor) -> Tensor:  # only to re-seed empty clusters: the mean of the rank's bin
        b = torch.searchsorted(self.cum_n, rank, right=True) - 1
        return self.sums[b] / self.cnt[b]

    def assign(self, centers: Tensor) -> Tensor:
        """``assign_1d(x, centers)`` through the bins: a bin without a midpoint maps to one cluster."""
        mids = (centers[1:] + centers[:-1]) / 2
        b = self.bin_of(mids)
        self._load(b)
        idx = torch.searchsorted(b, torch.arange(_HIST_BINS, dtype=torch.int32)).index_select(0, self.bins)
        idx[self.pos] = torch.bucketize(self.vals, mids)
        return idx


def _binned(x: Tensor, k: int) -> Optional[_Binned]:
    """The binned view of flat float32 CPU ``x``, or None where sorting is the way (fewer than k + 1 non-empty
    bins, e.g. few distinct values; a bin with over 64x the mean count).  Raises on NaN and inf."""
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("kmeans_1d: x contains NaN or inf; K-Means needs finite values")
    if hi == lo:
        return None
    data = _Binned(x, lo, hi)
    # a bin holding a large share of the values (a spike, far outliers) would make loading raw values slow
    return data if int((data.cnt > 0).sum()) > k and int(data.cnt.max()) <= x.numel() // _HIST_BINS * 64 else None


def _dp_seed(data: _Points, k: int) -> Tensor:
    """Exact K-Means optimum over partitions aligned to ``m`` blocks of the sorted (weighted) points.

    A partition that only cuts at block edges has within-cluster SS = (within-block SS, a constant) + the weighted
    SS of the block means, so the dynamic program over the m weighted block means is exact for such partitions
    (O(k m^2), vectorized per layer).  Its centers seed Lloyd next to the global optimum; for n <= m the blocks
    are the values themselves and the seed is the global optimum.
    """
    s, n, dev = data.v, data.v.numel(), data.v.device
    half = max(_DP_BLOCKS, 2 * k) // 2
    if n <= 2 * half:
        edges = torch.arange(n + 1, device=dev)
    else:
        # half the edges at equal counts (resolution where the mass is), half at equal widths (so that gaps
        # between separated modes, where the optimal cuts lie, are block edges too)
        ranks = torch.div(torch.arange(half + 1, device=dev) * data.n, half, rounding_mode="floor")
        by_count = ranks if data.cum_n is None else torch.searchsorted(data.cum_n, ranks)
        grid = torch.linspace(float(s[0]), float(s[-1]), half + 1, dtype=torch.float64, device=dev)
        by_width = torch.searchsorted(s, grid.to(s.dtype)[1:-1].contiguous())
        edges = torch.unique(torch.cat([by_count, by_width]))
    m = edges.numel() - 1
    cnt = edges if data.cum_n is None else data.cum_n[edges]
    w = (cnt[1:] - cnt[:-1]).double()
    sums = data.cum_s[edges[1:]] - data.cum_s[edges[:-1]]
    mean = sums / w
    cw = torch.cat([w.new_zeros(1), torch.cumsum(w, 0)])
    c1 = torch.cat([w.new_zeros(1), torch.cumsum(sums, 0)])
    c2 = torch.cat([w.new_zeros(1), torch.cumsum(w * mean * mean, 0)])
    i = torch.arange(m + 1, device=dev)
    ww = cw.unsqueeze(0) - cw.unsqueeze(1)  # [i, j]: blocks i..j-1
    s1 = c1.unsqueeze(0) - c1.unsqueeze(1)
    s2 = c2.unsqueeze(0) - c2.unsqueeze(1)
    valid = i.unsqueeze(0) > i.unsqueeze(1)
    cost = torch.where(valid, s2 - s1 * s1 / ww.clamp_min(1), torch.full_like(ww, float("inf")))
    inf = float("inf")
    d = torch.full((m + 1,), inf, dtype=torch.float64, device=dev)
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


def _fix_empty(c: Tensor, bounds: Tensor, data: _Points | _Binned) -> Tensor:
    """Move each empty cluster's center onto the value farthest from its own center (rare; done in Python)."""
    c = c.clone()
    for r in range(c.shape[0]):
        cnt = (bounds[r, 1:] - bounds[r, :-1]).tolist()
        if min(cnt) > 0:
            continue
        row = c[r].tolist()
        b = bounds[r].tolist()
        # farthest point of each non-empty segment is one of its two ends
        ends = [(j, p) for j, nj in enumerate(cnt) if nj > 0 for p in (b[j], b[j + 1] - 1)]
        vals = data.value_at(torch.tensor([int(p) for _, p in ends], device=bounds.device)).tolist()
        cands = sorted(((abs(v - row[j]), v) for (j, _), v in zip(ends, vals)), key=lambda t: -t[0])
        for j, nj in enumerate(cnt):
            if nj == 0 and cands:
                row[j] = cands.pop(0)[1]
        c[r] = torch.tensor(sorted(row), dtype=c.dtype, device=c.device)
    return c


def _segments(data: _Points | _Binned, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split ranks (R, k+1), counts and sums of the clusters of the data under sorted centers ``c``."""
    r = c.shape[0]
    mids = ((c[:, 1:] + c[:, :-1]) / 2).to(torch.float32).contiguous()
    below, below_s = data.split(mids)
    bounds = torch.cat([below.new_zeros(r, 1), below, below.new_full((r, 1), data.n)], dim=1)
    cum = torch.cat([below_s.new_zeros(r, 1), below_s, data.cum_s[-1].expand(r, 1)], dim=1)
    return bounds, bounds[:, 1:] - bounds[:, :-1], cum[:, 1:] - cum[:, :-1]


def _score(cnt: Tensor, sums: Tensor) -> Tensor:
    return -torch.where(cnt > 0, sums * sums / cnt.clamp_min(1), torch.zeros_like(sums)).sum(1)


def _extrapolate(data: _Points | _Binned, c: Tensor, new: Tensor) -> Tensor:
    """The best, by the inertia of its partition, of the centers c + a (new - c) for a in ``_STEPS``."""
    r, a = c.shape[0], len(_STEPS)
    steps = torch.tensor(_STEPS, dtype=c.dtype, device=c.device).view(1, a, 1)
    cand = torch.sort((c.unsqueeze(1) + steps * (new - c).unsqueeze(1)).reshape(r * a, -1), dim=1).values
    _, cnt, sums = _segments(data, cand)
    best = torch.argmin(_score(cnt, sums).view(r, a), dim=1)  # first minimum: a = 1 (plain Lloyd) on ties
    return cand[torch.arange(r, device=c.device) * a + best]


def _lloyd(data: _Points | _Binned, init: Tensor, max_iter: int, tol: float = 1e-10, extrapolate: bool = False
           ) -> tuple[Tensor, Tensor]:
    """Batched Lloyd on sorted data. init: (R, k) float64. Returns (centers (R, k), score (R,)).

    score = -sum_j S_j^2 / n_j, which equals inertia minus the constant sum of squares: enough to rank restarts.
    Stops when no split position moves, or when the best inertia improved by less than ``tol`` (relative) over
    the last check (1-D Lloyd can creep for hundreds of iterations by amounts far below any useful precision).
    Convergence is checked every iteration on CPU and every 16 on other devices (each check synchronizes).
    ``extrapolate``: each step goes on along the Lloyd step while the partition gets better (``_extrapolate``),
    which cuts the creep ~10x; used on the histogram only (its steps cost no pass over the data).
    """
    every = 1 if init.device.type == "cpu" else 16
    c = init
    prev_bounds = None
    prev_best = None
    for it in range(max_iter):
        bounds, cnt, sums = _segments(data, c)
        empty = bool((cnt == 0).any()) if every == 1 or it % every == 0 else False
        if empty:
            c = _fix_empty(torch.where(cnt > 0, sums / cnt.clamp_min(1), c), bounds, data)
            prev_bounds = prev_best = None
            continue
        if every == 1 or it % every == 0:
            if prev_bounds is not None and torch.equal(bounds, prev_bounds):
                break
            best = data.sumsq - float((sums * sums / cnt.clamp_min(1)).sum(1).max())
            if prev_best is not None and prev_best - best <= tol * max(best, 1e-300):
                break
            prev_best = best
            prev_bounds = bounds
        new = torch.where(cnt > 0, sums / cnt.clamp_min(1), c)
        c = _extrapolate(data, c, new) if extrapolate else new
    bounds, cnt, sums = _segments(data, c)
    c = torch.where(cnt > 0, sums / cnt.clamp_min(1), c)
    return c, _score(cnt, sums)


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
    binned = _binned(xf, k) if xf.device.type == "cpu" and xf.numel() > _HIST_MIN and k > 1 else None
    if binned is None:
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
        data = _Points(s, prefix, float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2)
    else:
        data = binned.histogram()  # seeds from the bins
    n, dev = data.n, data.v.device
    seeds = []
    if init == "quantile":
        seeds.append(data.value_at(((torch.arange(k, dtype=torch.float64) + 0.5) * n / k).long()
                                   .clamp_max(n - 1).to(dev)).double())
    else:
        m = min(n, _INIT_SAMPLE)
        pos = ((torch.arange(m, dtype=torch.float64) + 0.5) * n / m).long().clamp_max(n - 1)
        sample = data.value_at(pos.to(dev)).double().cpu()
        gen = torch.Generator().manual_seed(int(seed))
        seeds.extend(_kmeanspp(sample, k, restarts, gen).to(dev).unbind(0))
        seeds.append(_dp_seed(data, k))
    if init_centers is not None:
        ic = init_centers.detach().reshape(-1).to(device=dev, dtype=torch.float64)
        if ic.numel() != k:
            raise ValueError(f"kmeans_1d: init_centers has {ic.numel()} values, expected k={k}")
        seeds.append(torch.sort(ic).values)
    if binned is None:
        c, score = _lloyd(data, torch.stack(seeds), max_iter)
    else:  # Lloyd on the histogram first, then exact
        c, score = _lloyd(binned, torch.stack(seeds), max_iter, extrapolate=True)
        binned.exact = True
        c, score = _lloyd(binned, c[int(torch.argmin(score))].unsqueeze(0), max_iter)
    best = int(torch.argmin(score))  # first minimum: deterministic
    centers = c[best].float()
    if binned is not None and k > 2:  # (for k = 2, assign_1d's one comparison is faster)
        return centers, binned.assign(centers).reshape(x.shape)
    return centers, assign_1d(x.detach(), centers)
