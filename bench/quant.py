"""Benchmarks of quantprompt.quant, each figure a ratio against a baseline measured in the same run.

1. kmeans_1d vs scikit-learn KMeans (default settings) on 2,048 values (QCoOp's context) and 3.5 M values
   (QMaPLe's prompts), k = 2, 4, 16: time ratio (sklearn / ours) and inertia ratio (ours / sklearn).
2. Hook overhead: forward + backward + optimizer step + quant.step of a 4x512 and of a 3.5 M-parameter tensor
   through the quantizer vs. the same without it.

Usage: python bench/quant.py [--quick | --smoke] [--device cpu|cuda] [--repeats N]
Timings are the minimum over repeats (least disturbed by other processes); ours and the baseline get the
same number of repeats.  Ends with one line per figure, ``name: value``.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from quantprompt import quant


def _timeit(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def bench_kmeans(sizes: list[int], ks: list[int], repeats: int, device: torch.device) -> dict[str, float]:
    from sklearn.cluster import KMeans

    out: dict[str, float] = {}
    for n in sizes:
        x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.02  # prompt-like values
        xd = x.to(device)
        arr = x.double().numpy().reshape(-1, 1)
        label = "3.5M" if n == 3_500_000 else str(n)
        reps = repeats if n <= 100_000 else max(1, repeats // 2)
        for k in ks:
            quant.kmeans_1d(xd, k)  # warm-up
            t_ours = _timeit(lambda xd=xd, k=k: quant.kmeans_1d(xd, k), reps, device)
            t_sk = _timeit(lambda k=k, arr=arr: KMeans(n_clusters=k, random_state=0).fit(arr), reps, torch.device("cpu"))
            centers, _ = quant.kmeans_1d(xd, k)
            sk = KMeans(n_clusters=k, random_state=0).fit(arr)
            sk_centers = torch.from_numpy(np.sort(sk.cluster_centers_.ravel())).float()
            ratio = quant.inertia_1d(x, centers.cpu()) / quant.inertia_1d(x, sk_centers)
            print(f"kmeans n={n:>9} k={k:>2}: ours {t_ours * 1e3:9.2f} ms  sklearn {t_sk * 1e3:9.2f} ms  "
                  f"speedup {t_sk / t_ours:7.2f}x  inertia ratio {ratio:.6f}", flush=True)
            out[f"kmeans_n{label}_k{k}_speedup_vs_sklearn"] = t_sk / t_ours
            out[f"kmeans_n{label}_k{k}_inertia_ratio"] = ratio
    return out


class _Holder(nn.Module):
    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device) * 0.02)


def bench_hook(shapes: dict[str, tuple[int, ...]], repeats: int, device: torch.device) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, shape in shapes.items():
        times = {}
        for quantized in (False, True):
            m = _Holder(shape, device)
            if quantized:
                quant.quantize_(m, quant.QuantConfig(bits=1, targets=["w"]))
            opt = torch.optim.SGD(m.parameters(), lr=1e-3)
            g = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(device)

            def it(m: _Holder = m, opt: torch.optim.Optimizer = opt, g: torch.Tensor = g, q: bool = quantized) -> None:
                opt.zero_grad(set_to_none=True)
                (m.w * g).sum().backward()
                opt.step()
                if q:
                    quant.step(m)

            for _ in range(3):
                it()
            n_inner = 20 if shape[0] * shape[-1] < 100_000 else 3

            def many(it: Callable[[], None] = it, n_inner: int = n_inner) -> None:
                for _ in range(n_inner):
                    it()

            times[quantized] = _timeit(many, repeats, device) / n_inner
        ratio = times[True] / times[False]
        print(f"hook {label:>6}: plain {times[False] * 1e3:8.3f} ms  quantized {times[True] * 1e3:8.3f} ms  "
              f"ratio {ratio:6.2f}x  (fwd+bwd+SGD step+quant.step, default CAC interval=10)", flush=True)
        out[f"hook_{label}_overhead_ratio"] = ratio
        out[f"hook_{label}_quantized_ms"] = times[True] * 1e3
        out[f"hook_{label}_plain_ms"] = times[False] * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="350 K instead of 3.5 M values, fewer repeats")
    ap.add_argument("--device", default="cpu", help="device of kmeans_1d and of the hook (sklearn runs on CPU)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--smoke", action="store_true",
                    help="plumbing check only (bench/gpu.sh --smoke): 20 K values, k = 2 and 4, one repeat")
    args = ap.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (1 if args.smoke else 2 if args.quick else 4)
    large = 20_000 if args.smoke else 350_000 if args.quick else 3_500_000
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}", flush=True)
    figures = bench_kmeans([2048, large], [2, 4] if args.smoke else [2, 4, 16], repeats, device)
    big = (20, 1000) if args.smoke else (350, 1000) if args.quick else (3500, 1000)
    name = "20K" if args.smoke else "350K" if args.quick else "3.5M"
    figures.update(bench_hook({"4x512": (4, 512), name: big}, repeats, device))
    label = str(large) if large != 3_500_000 else "3.5M"
    figures[f"kmeans_n{label}_min_speedup_vs_sklearn"] = min(
        v for k, v in figures.items() if k.startswith(f"kmeans_n{label}_k") and k.endswith("speedup_vs_sklearn"))
    figures["kmeans_max_inertia_ratio"] = max(v for k, v in figures.items() if k.endswith("inertia_ratio"))
    print()
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")


if __name__ == "__main__":
    main()
