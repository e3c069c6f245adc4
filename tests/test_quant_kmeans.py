"""kmeans_1d: optimality against scikit-learn and the exact dynamic-programming optimum; determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantprompt.quant import assign_1d, inertia_1d, kmeans_1d


def _data(dist: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        return torch.randn(n, generator=g)
    if dist == "uniform":
        return torch.rand(n, generator=g) * 4 - 2
    if dist == "laplace":
        u = torch.rand(n, generator=g) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs())
    if dist == "mixture":
        comp = torch.randint(3, (n,), generator=g)
        return torch.tensor([-3.0, 0.0, 2.5])[comp] + 0.4 * torch.randn(n, generator=g)
    raise AssertionError(dist)


def _exact_optimum(values: list[float], k: int) -> float:
    """Exact 1-D K-Means optimum by dynamic programming over the sorted values (O(k n^2))."""
    v = sorted(values)
    n = len(v)
    pre = [0.0]
    pre2 = [0.0]
    for a in v:
        pre.append(pre[-1] + a)
        pre2.append(pre2[-1] + a * a)

    def cost(i: int, j: int) -> float:  # values v[i:j]
        s, s2, m = pre[j] - pre[i], pre2[j] - pre2[i], j - i
        return s2 - s * s / m

    inf = float("inf")
    dp = [[inf] * (n + 1) for _ in range(k + 1)]
    dp[0][0] = 0.0
    for c in range(1, k + 1):
        for j in range(c, n + 1):
            dp[c][j] = min(dp[c - 1][i] + cost(i, j) for i in range(c - 1, j))
    return min(dp[c][n] for c in range(1, k + 1))


@pytest.mark.parametrize("dist", ["normal", "uniform", "laplace", "mixture"])
@pytest.mark.parametrize("k", [2, 4, 16])
def test_inertia_not_worse_than_sklearn(dist: str, k: int) -> None:
    from sklearn.cluster import KMeans

    x = _data(dist, 2048, seed=k)
    centers, idx = kmeans_1d(x, k, seed=0)
    ours = inertia_1d(x, centers)
    ref = KMeans(n_clusters=k, random_state=0, n_init="auto").fit(x.double().numpy().reshape(-1, 1)).inertia_
    assert ours <= ref * 1.001, (ours, ref)
    # idx is the nearest-center assignment and the centers are sorted
    assert torch.equal(idx, assign_1d(x, centers))
    assert bool((centers[1:] >= centers[:-1]).all())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_matches_exact_optimum_on_small_inputs(seed: int, k: int) -> None:
    x = _data(["normal", "laplace", "mixture"][seed % 3], 18, seed)
    centers, _ = kmeans_1d(x, k, seed=seed)
    ours = inertia_1d(x, centers)
    best = _exact_optimum(x.double().tolist(), k)
    assert ours <= best * (1 + 1e-5) + 1e-9, (ours, best)


def test_deterministic_per_seed_and_shapes() -> None:
    x = _data("mixture", 3000, 1).reshape(30, 100)
    c1, i1 = kmeans_1d(x, 8, seed=3)
    c2, i2 = kmeans_1d(x, 8, seed=3)
    assert torch.equal(c1, c2) and torch.equal(i1, i2)
    assert c1.shape == (8,) and c1.dtype == torch.float32
    assert i1.shape == x.shape and i1.dtype == torch.int64
    assert int(i1.min()) == 0 and int(i1.max()) == 7


def test_quantile_init_and_warm_start_never_worse() -> None:
    x = _data("laplace", 5000, 2)
    cq, _ = kmeans_1d(x, 4, init="quantile")
    assert inertia_1d(x, cq) > 0
    bad = torch.tensor([-5.0, -4.9, -4.8, 9.0])
    cw, _ = kmeans_1d(x, 4, init_centers=bad, restarts=1)
    assert inertia_1d(x, cw) <= inertia_1d(x, bad)


def test_few_distinct_values_and_negative_zero() -> None:
    x = torch.tensor([1.0, 1.0, -0.0, 0.0, 1.0, 3.0])
    centers, idx = kmeans_1d(x, 4)
    assert centers.tolist() == [0.0, 1.0, 3.0, 3.0]
    assert torch.equal(centers[idx], torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 3.0]))
    c1, i1 = kmeans_1d(torch.full((7,), 2.5), 2)
    assert c1.tolist() == [2.5, 2.5] and bool((c1[i1] == 2.5).all())
    c, i = kmeans_1d(torch.tensor([4.0]), 1)
    assert c.tolist() == [4.0] and i.tolist() == [0]


def test_sorting_handles_signs_and_extremes() -> None:
    from quantprompt.quant.kmeans import _sorted_values

    x = torch.tensor([3.0, -1e-30, -2.0, 0.0, -0.0, 1e30, -1e30, 1e-30, -3.4e38, 3.4e38, 0.5])
    assert torch.equal(_sorted_values(x), torch.sort(x).values)
    y = torch.randn(10_000)
    assert torch.equal(_sorted_values(y), torch.sort(y).values)


def test_sklearn_backend_and_errors() -> None:
    x = _data("normal", 500, 0)
    c, idx = kmeans_1d(x, 4, backend="sklearn")
    assert c.shape == (4,) and torch.equal(idx, assign_1d(x, c))
    ours, _ = kmeans_1d(x, 4)
    assert inertia_1d(x, ours) <= inertia_1d(x, c) * 1.001
    with pytest.raises(ValueError, match="k must be"):
        kmeans_1d(x, 0)
    for bad in (float("nan"), -float("nan"), float("inf"), -float("inf")):
        for n in (10, 70_000):
            y = torch.randn(n)
            y[n // 2] = bad
            with pytest.raises(ValueError, match="NaN"):
                kmeans_1d(y, 2)
    with pytest.raises(ValueError, match="backend"):
        kmeans_1d(x, 2, backend="faiss")


def test_empty_cluster_is_reseeded() -> None:
    # duplicated seeds force an empty cluster in the first Lloyd iteration
    x = torch.tensor(np.r_[np.zeros(50), np.ones(50), 10 * np.ones(50)], dtype=torch.float32)
    c, idx = kmeans_1d(x, 3, init_centers=torch.tensor([0.0, 0.0, 0.0]), restarts=1)
    assert sorted(set(c.tolist())) == [0.0, 1.0, 10.0]
    assert inertia_1d(x, c) == 0.0


@pytest.mark.parametrize("k", [2, 4, 16])
def test_large_inputs_binned_path(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # above _HIST_MIN on CPU the values are binned instead of sorted; the result must stay a converged K-Means
    from sklearn.cluster import KMeans

    from quantprompt.quant import kmeans as kmeans_mod

    x = _data("mixture", 300_000, seed=k).reshape(600, 500)
    assert x.numel() > kmeans_mod._HIST_MIN
    centers, idx = kmeans_1d(x, k, seed=1)
    c2, i2 = kmeans_1d(x, k, seed=1)
    assert torch.equal(centers, c2) and torch.equal(idx, i2)
    assert centers.dtype == torch.float32 and bool((centers[1:] >= centers[:-1]).all())
    assert idx.dtype == torch.int64 and idx.shape == x.shape and torch.equal(idx, assign_1d(x, centers))
    ours = inertia_1d(x, centers)
    ref = KMeans(n_clusters=k, random_state=0, n_init="auto").fit(x.double().numpy().reshape(-1, 1)).inertia_
    assert ours <= ref * 1.001, (ours, ref)
    monkeypatch.setattr(kmeans_mod, "_HIST_MIN", 1 << 30)  # the sort path, for reference
    sorted_path, _ = kmeans_1d(x, k, seed=1)
    assert ours <= inertia_1d(x, sorted_path) * (1 + 1e-6)
    # a degenerate warm start (all seeds equal: empty clusters) is repaired on the binned path too
    monkeypatch.undo()
    cw, _ = kmeans_1d(x, 3, init_centers=torch.zeros(3), restarts=1)
    assert inertia_1d(x, cw) <= inertia_1d(x, kmeans_1d(x, 3)[0]) * (1 + 1e-6)
