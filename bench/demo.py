"""Wall time of ``quantprompt demo`` from scratch (pretraining included), split into its parts.

    python bench/demo.py                 # the quick demo, then the full demo (fresh cache and output each)
    python bench/demo.py --only-quick    # the quick demo only
    python bench/demo.py --keep DIR      # keep caches and outputs under DIR (default: a temporary folder)

Prints pretraining, dataset writing, every method's run time (train + test, summed over seeds) and the
total, then one ``name: value`` line per figure, ending with ``demo_quick_seconds`` and ``demo_full_seconds``
and their ratios to the targets (180 s and 900 s on 2 CPU cores). Also prints the CPU seconds the demo's
processes used, which is what a busy shared machine inflates least, and whether the demo's checks passed.
The CPU model is printed first: the tables (and the checks' margins) are per machine, see docs/demo.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {"quick": 180.0, "full": 900.0}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 VNNI (floats differ between CPUs; docs/demo.md)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown")
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return f"{name}, {sum(1 for line in text.splitlines() if line.startswith('processor'))} cores, " + \
        ("AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2")


def run(kind: str, root: Path) -> dict[str, float]:
    from quantprompt.world import demo

    p = demo.plan(quick=kind == "quick", output=str(root / f"out-{kind}"), cache_dir=str(root / f"cache-{kind}"))
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    result = demo.run_demo(p, log=lambda m: print(m, flush=True))
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    print(f"\n{kind} demo time split (wall s):")
    for part in ("pretrain", "datasets", "runs"):
        print(f"  {part:<24} {result['timings'][part]:8.1f}")
    for label, secs in result["per_method_seconds"].items():
        print(f"    {label:<22} {secs:8.1f}  (train + test, all seeds; {p.workers} runs in parallel)")
    print(f"  {'total':<24} {wall:8.1f}   cpu {cpu:.1f} s\n")
    return {"wall": wall, "cpu": cpu, "pretrain": result["timings"]["pretrain"], "runs": result["timings"]["runs"],
            "checks": result["checks"].passed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only-quick", action="store_true", help="measure the quick demo only")
    ap.add_argument("--keep", help="folder for caches and outputs (kept); default: a temporary folder")
    args = ap.parse_args()
    kinds = ["quick"] if args.only_quick else ["quick", "full"]
    print(f"cpu: {_cpu_model()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="qp-bench-demo-") as tmp:
        root = Path(args.keep).expanduser() if args.keep else Path(tmp)
        results = {kind: run(kind, root) for kind in kinds}
    for kind, r in results.items():
        print(f"demo_{kind}_pretrain_seconds: {r['pretrain']:.1f}")
        print(f"demo_{kind}_runs_seconds: {r['runs']:.1f}")
        print(f"demo_{kind}_cpu_seconds: {r['cpu']:.1f}")
        print(f"demo_{kind}_vs_target: {r['wall'] / TARGETS[kind]:.2f}")
        print(f"demo_{kind}_checks_passed: {int(r['checks'])}")
    for kind in ("quick", "full"):
        value = f"{results[kind]['wall']:.1f}" if kind in results else "not measured (--only-quick)"
        print(f"demo_{kind}_seconds: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
