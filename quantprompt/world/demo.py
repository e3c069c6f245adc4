"""``quantprompt demo``: the paper's base-to-new experiment in the demo world, with the real scripts.

Pretrains (or loads) the world CLIP, writes the datasets, then runs ``scripts/<method>/base2new_train.sh`` and
``base2new_test.sh`` for every method x dataset x seed, exactly as a user would (so finished runs are skipped
by the scripts themselves), prints the paper-style table with the Size column, draws the figures and prints
the three checks that say whether the world still behaves like the paper's setting.

Methods are the rows of :data:`METHODS`: adding one (e.g. P4Q) is one :class:`DemoMethod` entry plus its
``configs/trainers/<TRAINER>/<config>.yaml``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..clierrors import USER_ERRORS, OneLineParser, report

__all__ = ["DemoMethod", "METHODS", "DemoPlan", "plan", "run_demo", "Checks", "main", "build_parser",
           "REPO_ROOT", "DemoStopped", "grid_calls", "run_jobs", "check_summary", "QUICK_METHODS"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoMethod:
    """One row of the demo table: which trainer, which config, which script folder, and extra KEY VALUE opts."""

    label: str                      # the row's name in the table and figures
    trainer: str                    # --trainer (and configs/trainers/<trainer>/)
    scripts: str                    # scripts/<scripts>/base2new_{train,test}.sh
    config: str = "demo"            # configs/trainers/<trainer>/<config>.yaml
    opts: tuple[str, ...] = ()      # extra KEY VALUE pairs for train.py
    bits: Optional[int] = None      # quantized QAT prompts: bit width (accuracy-vs-bits figure)
    family: str = "CoOp"            # CoOp | CoCoOp | MaPLe: the full-precision method it builds on
    kind: str = "fp"                # zero-shot | fp | quant | ptq | noise | clip-ptq (zero-shot) | p4q


METHODS: tuple[DemoMethod, ...] = (
    DemoMethod("CLIP (zero-shot)", "ZeroshotCLIP", "zsclip", family="", kind="zero-shot"),
    DemoMethod("CoOp", "CoOp", "coop"),
    DemoMethod("NoiseCoOp (std 0.01)", "NoiseCoOp", "noisecoop", kind="noise"),
    DemoMethod("QCoOp 1-bit", "QCoOp", "qcoop", bits=1, kind="quant"),
    DemoMethod("QCoOp 2-bit", "QCoOp", "qcoop", "demo_b2", bits=2, kind="quant"),
    DemoMethod("QCoOp 4-bit", "QCoOp", "qcoop", "demo_b4", bits=4, kind="quant"),
    DemoMethod("QCoOp-PTQ 1-bit", "QCoOp", "qcoop", "demo_ptq", kind="ptq"),
    DemoMethod("CoCoOp", "CoCoOp", "cocoop", family="CoCoOp"),
    DemoMethod("QCoCoOp 1-bit", "QCoCoOp", "qcocoop", bits=1, family="CoCoOp", kind="quant"),
    DemoMethod("MaPLe", "MaPLe", "maple", family="MaPLe"),
    DemoMethod("QMaPLe 4-bit", "QMaPLe", "qmaple", bits=4, family="MaPLe", kind="quant"),
    DemoMethod("PTQ W8A8 (zero-shot)", "P4Q", "p4q", "demo_ptq_w8", family="", kind="clip-ptq"),
    DemoMethod("PTQ W4A8 (zero-shot)", "P4Q", "p4q", "demo_ptq_w4", family="", kind="clip-ptq"),
    DemoMethod("P4Q W8A8", "P4Q", "p4q", "demo_w8", family="P4Q", kind="p4q"),
    DemoMethod("P4Q W4A8", "P4Q", "p4q", "demo_w4", family="P4Q", kind="p4q"),
)

# --quick: one seed of four rows on the full demo's recipe (16 shots, the configs' epochs) and the `quick` world
# CLIP (2 + 2 layers, pretrained in two thirds of the time): zero-shot CLIP, CoOp and QCoOp at 1 and 4 bits. Chosen for
# time: every extra CoOp-family row costs ~25 s (train + test).
QUICK_METHODS = ("CLIP (zero-shot)", "CoOp", "QCoOp 1-bit", "QCoOp 4-bit")

# sketches: the domain pretraining saw least (3% of its images), where hand-written prompts fall short of
# what the image features know, as on EuroSAT or DTD with real CLIP (docs/demo.md says what WorldShapes shows)
DEFAULT_DATASETS = ("world_sketches",)
QUICK_DATASETS = ("world_sketches",)
DEFAULT_PER_CLASS = (32, 4, 64)  # train / val / test images written per class
QUICK_PER_CLASS = (16, 2, 32)
DEFAULT_SEEDS = (1, 2, 3)
QUICK_SEEDS = (1,)
SHOTS = 16
QUICK_SHOTS = 16


def method_by_name(name: str) -> DemoMethod:
    """A method by its label, trainer (the first row of that trainer) or ``trainer/config``."""
    for m in METHODS:
        if name in (m.label, f"{m.trainer}/{m.config}"):
            return m
    for m in METHODS:
        if name.lower() == m.trainer.lower():
            return m
    known = ", ".join(f"{m.trainer}/{m.config}" for m in METHODS)
    raise ValueError(f"unknown demo method {name!r}; known: {known} (a trainer name picks its first config)")


@dataclass
class Job:
    method: DemoMethod
    dataset: str
    seed: int


@dataclass
class DemoPlan:
    """What one ``quantprompt demo`` call does."""

    methods: list[DemoMethod]
    datasets: list[str]
    seeds: list[int]
    output: Path
    profile: str                    # world CLIP profile: default | quick
    quick: bool
    workers: int
    threads: int
    cache_dir: Optional[Path] = None
    shots: int = 16
    per_class: tuple[int, int, int] = (32, 4, 64)  # train / val / test images per class written
    extra_opts: tuple[str, ...] = ()               # KEY VALUE pairs appended to every run (tests: shorter runs)
    jobs: list[Job] = field(default_factory=list)


def plan(quick: bool = False, methods: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None,
         datasets: Optional[Sequence[str]] = None, output: Optional[str] = None, cache_dir: Optional[str] = None,
         workers: Optional[int] = None, shots: Optional[int] = None, per_class: Optional[tuple[int, int, int]] = None,
         extra_opts: Sequence[str] = (), profile: Optional[str] = None) -> DemoPlan:
    """Validate the options (before any expensive work) and list the jobs.

    ``profile``: the world CLIP (``quantprompt.world.PROFILES``), default ``quick`` with ``quick`` (the 2 + 2
    layer CLIP, docs/demo.md) and ``default`` otherwise. ``quick``: one seed and :data:`QUICK_METHODS` on the
    full demo's recipe.
    """
    from .cache import PROFILES
    from .datasets import resolve

    chosen = [method_by_name(m) for m in (methods or (QUICK_METHODS if quick else ()))] or list(METHODS)
    if len({(m.trainer, m.config) for m in chosen}) != len(chosen):
        raise ValueError(f"--methods lists a method twice: {[m.label for m in chosen]}")
    seed_list = list(seeds) if seeds else list(QUICK_SEEDS if quick else DEFAULT_SEEDS)
    for s in seed_list:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"--seeds must be non-negative integers, got {s!r}")
    ds = [resolve(d).config for d in (datasets or (QUICK_DATASETS if quick else DEFAULT_DATASETS))]
    for m in chosen:
        cfg = REPO_ROOT / "configs" / "trainers" / m.trainer / f"{m.config}.yaml"
        script = REPO_ROOT / "scripts" / m.scripts / "base2new_train.sh"
        if not cfg.is_file() or not script.is_file():
            raise FileNotFoundError(f"demo method {m.label!r} needs {cfg} and {script}")
    out = Path(output) if output else REPO_ROOT / "output" / ("demo-quick" if quick else "demo")
    cores = os.cpu_count() or 1
    n_workers = workers if workers is not None else max(1, min(2, cores))
    if n_workers < 1:
        raise ValueError(f"--workers must be >= 1, got {n_workers}")
    if shots is None:
        shots = QUICK_SHOTS if quick else SHOTS
    if per_class is None:  # 64 test images per class: a model's accuracy then moves ~1 point with the test sample
        per_class = QUICK_PER_CLASS if quick else DEFAULT_PER_CLASS
    if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= per_class[0]:
        raise ValueError(f"shots must be an int in 1..{per_class[0]} (the train images per class), got {shots!r}")
    if profile is None:
        profile = "quick" if quick else "default"
    if profile not in PROFILES:
        raise ValueError(f"unknown world CLIP profile {profile!r}; known: {', '.join(PROFILES)}")
    if len(extra_opts) % 2:
        raise ValueError(f"extra_opts must be KEY VALUE pairs, got an odd count: {list(extra_opts)}")
    p = DemoPlan(chosen, ds, seed_list, out.expanduser().resolve(), profile, quick,
                 n_workers, max(1, cores // n_workers), Path(cache_dir).expanduser() if cache_dir else None,
                 shots, tuple(per_class), tuple(extra_opts))
    # per dataset and seed, in the table's order; zero-shot CLIP learns nothing, so it runs for the first seed only
    p.jobs = [Job(m, d, s) for d in p.datasets for s in p.seeds for m in p.methods
              if m.kind != "zero-shot" or s == p.seeds[0]]
    return p


# --------------------------------------------------------------------------------------------------- running
def _script_env(p: DemoPlan) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS"):
        env.pop(key, None)
    threads = str(p.threads)
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, QUANTPROMPT_ENV_INFO="brief",
               PYTHONWARNINGS=env.get("PYTHONWARNINGS", "ignore"))
    if p.cache_dir is not None:
        env["QUANTPROMPT_CACHE"] = str(p.cache_dir)
    path = env.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):  # this checkout's quantprompt, also in the subprocesses
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([path] if path else []))
    return env


def _script_args(p: DemoPlan, job: Job, data: Path, clip_path: Path) -> list[str]:
    # one value per key (the scripts read the first OPTIM.MAX_EPOCH to pick the epoch to test, train.py the last)
    opts: dict[str, str] = {"MODEL.BACKBONE.NAME": str(clip_path)}
    pairs = [*job.method.opts, *p.extra_opts]
    for key, value in zip(pairs[::2], pairs[1::2]):
        opts[key] = value
    flat = [item for pair in opts.items() for item in pair]
    return [job.dataset, str(job.seed), "--data", str(data), "--output", str(p.output), "--cfg", job.method.config,
            "--shots", str(p.shots), "--", *flat]


class DemoStopped(Exception):
    """Ctrl-C / SIGTERM stopped the runs; the same command resumes them."""


class _LineWriter:
    """A text stream that hands each complete line to ``log`` (the grid launcher prints to a stream)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.buffer = log, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.log(line)
        return len(text)

    def flush(self) -> None:
        pass


def grid_calls(p: DemoPlan, data: Path, clip_path: Path) -> list[Any]:
    """The plan's jobs as ``quantprompt.grid`` calls: per job, ``base2new_train.sh`` then ``base2new_test.sh``
    of its method's scripts folder, with the job's config, shots, CLIP and KEY VALUE options, tagged with the
    row label."""
    from quantprompt.grid import Call

    calls = []
    for job in p.jobs:
        args = _script_args(p, job, data, clip_path)
        for script in ("base2new_train.sh", "base2new_test.sh"):
            calls.append(Call(job.method.scripts, script, tuple(args[:2]), tuple(args[2:]), tag=job.method.label))
    return calls


def run_jobs(p: DemoPlan, data: Path, clip_path: Path, log: Callable[[str], None] = print) -> dict[str, float]:
    """Run every job through ``quantprompt.grid``'s local launcher, ``p.workers`` runs at a time with
    ``p.threads`` threads each; finished runs are skipped. Returns seconds per method label (train + test,
    summed over the runs made in this call). Each run's output is in ``<output>/grid_logs/``."""
    from quantprompt.grid import plan_grid
    from quantprompt.grid.local import run_local

    env = _script_env(p)
    grid = plan_grid("base2new", grid_calls(p, data, clip_path), REPO_ROOT / "scripts", cwd=REPO_ROOT, env=env,
                     log_dir=p.output / "grid_logs")
    seconds: dict[str, float] = {}

    def ended(run: Any, status: int, took: float) -> None:
        seconds[run.call.tag] = seconds.get(run.call.tag, 0.0) + took

    status = run_local(grid, jobs=p.workers, env=env, out=_LineWriter(log), echo=False, on_end=ended)
    if status == 130:
        raise DemoStopped("stopped; run the same command again to resume (finished runs are skipped)")
    if status != 0:
        raise RuntimeError(f"demo runs failed (see the report above and {grid.log_dir}); fix the cause and run "
                           "the same command again: finished runs are skipped")
    return seconds


# --------------------------------------------------------------------------------------------------- results
def _auto_label(trainer: str, cfg: str, configs_per_trainer: dict[str, set]) -> str:
    from quantprompt.results.tables import method_display

    name = method_display(trainer)
    return name if len(configs_per_trainer[trainer]) == 1 else f"{name} ({cfg})"


def collect(p: DemoPlan) -> tuple[Any, list]:
    """The base-to-new report of this plan's runs (our labels on the rows) and the runs themselves."""
    from quantprompt.results import build_report, scan

    wanted = {(m.trainer, m.config) for m in p.methods}
    runs, _ = scan(p.output)
    runs = [r for r in runs if r.setting == "base2new" and (r.trainer, r.cfg) in wanted
            and r.dataset in p.datasets and (r.seed in p.seeds or r.trainer == "ZeroshotCLIP")]
    report = build_report(runs, setting="base2new", seeds=p.seeds, layout="per-dataset")
    per_trainer: dict[str, set] = {}
    for r in runs:
        per_trainer.setdefault(r.trainer, set()).add(r.cfg)
    labels = {_auto_label(m.trainer, m.config, per_trainer): m.label for m in p.methods}
    order = {m.label: i for i, m in enumerate(p.methods)}
    for table in report.tables:
        for row in table.rows:
            row[0] = labels.get(row[0], row[0])
        table.rows.sort(key=lambda row: order.get(row[0], len(order)))
    return report, runs


def _values(runs: list, p: DemoPlan) -> dict[tuple[str, str, str], dict[int, float]]:
    """(label, dataset, phase) -> {seed: accuracy} from the runs' final evaluations."""
    label = {(m.trainer, m.config): m.label for m in p.methods}
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in runs:
        if r.log is None or r.log.final is None or "accuracy" not in r.log.final:
            continue
        phase = "base" if r.phase in ("train_base", "test_base") else "new"
        seed = r.seed if r.seed is not None else p.seeds[0]
        out.setdefault((label[(r.trainer, r.cfg)], r.dataset, phase), {})[seed] = r.log.final["accuracy"]
    return out


@dataclass
class Checks:
    """The demo world's health: the figures behind the three checks and whether each passed."""

    lines: list[str]
    passed: bool
    figures: dict[str, Optional[float]]


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summary(runs: list, p: DemoPlan) -> dict[str, dict[str, float]]:
    """label -> {"base", "new", "H", "h_std"}: dataset-averaged seed means, H of the averages (as the table),
    and the mean over datasets of the seed std of H."""
    from quantprompt.results import harmonic_mean

    vals = _values(runs, p)
    out: dict[str, dict[str, float]] = {}
    for m in p.methods:
        base, new, stds = [], [], []
        for d in p.datasets:
            b, n = vals.get((m.label, d, "base"), {}), vals.get((m.label, d, "new"), {})
            seeds = sorted(set(b) & set(n))
            if not seeds:
                break
            base.append(sum(b[s] for s in seeds) / len(seeds))
            new.append(sum(n[s] for s in seeds) / len(seeds))
            if len(seeds) > 1:
                stds.append(_std([harmonic_mean(b[s], n[s]) for s in seeds]))
        else:
            if base:
                bm, nm = sum(base) / len(base), sum(new) / len(new)
                out[m.label] = {"base": bm, "new": nm, "H": harmonic_mean(bm, nm),
                                "h_std": sum(stds) / len(stds) if stds else float("nan")}
    return out


# The checks' thresholds (docs/demo.md, "The checks and their margins", says why each sits where it does):
# each is far from what the demos measure, so that float differences between CPUs (a 1-bit K-Means
# assignment flipping on AVX-512 vs AVX2 moved single rows by ~1 point) cannot turn a check.
MIN_ZERO_SHOT_NEW_OVER_CHANCE = 3.0   # hand-written prompts work on classes never trained on
MIN_COOP_BASE_GAIN = 3.0              # points: learned prompts help on the classes they were trained on
MIN_COOP_BASE_GAIN_QUICK = 5.0        # --quick's CLIP leaves CoOp more room (+10.3 on its one seed)
MAX_MEDIAN_SEED_STD_H = 3.0           # points: seed noise of a typical trained method


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def checks(runs: list, p: DemoPlan) -> Checks:
    """The world's health, from this plan's runs (:func:`check_summary` of :func:`summary`)."""
    return check_summary(summary(runs, p), p)


def check_summary(s: dict[str, dict[str, float]], p: DemoPlan) -> Checks:
    """Zero-shot new >= 3x chance; CoOp base >= zero-shot base + 3 points (+5 with ``--quick``); the median over
    trained methods of the seed std of H <= 3 points (a median, so that one unstable method cannot decide it
    alone)."""
    from .datasets import classnames, resolve

    lines, ok, figures = [], True, {}
    zs = next((m.label for m in p.methods if m.kind == "zero-shot"), None)
    coop = next((m.label for m in p.methods if m.trainer == "CoOp"), None)
    n_new = [len(classnames(resolve(d).name)) - math.ceil(len(classnames(resolve(d).name)) / 2)
             for d in p.datasets]
    chance = sum(100.0 / k for k in n_new) / len(n_new)
    if zs in s:
        ratio = s[zs]["new"] / chance
        figures["zero_shot_new_over_chance"] = ratio
        good = ratio >= MIN_ZERO_SHOT_NEW_OVER_CHANCE
        ok &= good
        lines.append(f"[{'ok' if good else 'FAIL'}] zero-shot accuracy on new classes {s[zs]['new']:.1f}% = "
                     f"{ratio:.1f}x chance ({chance:.1f}%); needs >= {MIN_ZERO_SHOT_NEW_OVER_CHANCE:g}x")
    else:
        lines.append("[n/a] zero-shot new-class accuracy: zero-shot CLIP was not run")
    if zs in s and coop in s:
        gain = s[coop]["base"] - s[zs]["base"]
        figures["coop_base_gain"] = gain
        needed = MIN_COOP_BASE_GAIN_QUICK if p.quick else MIN_COOP_BASE_GAIN
        good = gain >= needed
        ok &= good
        lines.append(f"[{'ok' if good else 'FAIL'}] CoOp on base classes {s[coop]['base']:.1f}% vs zero-shot "
                     f"{s[zs]['base']:.1f}%: {gain:+.1f} points; needs >= +{needed:g}")
    else:
        lines.append("[n/a] CoOp vs zero-shot on base classes: needs both methods")
    untrained = {m.label for m in p.methods if m.kind in ("zero-shot", "clip-ptq")}  # their spread is not training's
    stds = [v["h_std"] for k, v in s.items() if k not in untrained and not math.isnan(v["h_std"])]
    if stds:
        median = _median(stds)
        figures["median_seed_std_h"] = median
        good = median <= MAX_MEDIAN_SEED_STD_H
        ok &= good
        lines.append(f"[{'ok' if good else 'FAIL'}] median seed std of H over {len(stds)} trained method(s): "
                     f"{median:.2f} points (largest {max(stds):.2f}); needs <= {MAX_MEDIAN_SEED_STD_H:g}")
    else:
        lines.append("[n/a] seed std of H: needs two or more seeds")
    return Checks(lines, ok, figures)


def figures(runs: list, p: DemoPlan, folder: Path) -> list[Path]:
    """demo_h.png (H per method), demo_bits.png (accuracy vs bits), demo_noise.png (quantization vs noise),
    demo_p4q.png (zero-shot CLIP, its PTQ and P4Q)."""
    from quantprompt.results import plots

    s = summary(runs, p)
    written = []
    rows = {m.label: s[m.label] for m in p.methods if m.label in s}
    if rows:
        written.append(plots.method_bars(rows, folder / "demo_h.png", title="Base-to-new H per method"))
    bits = {m.bits: s[m.label] for m in p.methods if m.kind == "quant" and m.family == "CoOp" and m.label in s}
    coop = next((s[m.label] for m in p.methods if m.trainer == "CoOp" and m.label in s), None)
    if bits:
        written.append(plots.accuracy_vs_bits(bits, folder / "demo_bits.png", full_precision=coop))
    compare = {m.label: s[m.label] for m in p.methods
               if m.label in s and m.family == "CoOp" and m.kind in ("fp", "noise", "quant", "ptq")}
    if coop is not None and any(m.kind == "noise" for m in p.methods if m.label in s):
        written.append(plots.method_bars(compare, folder / "demo_noise.png",
                                         title="Quantization vs Gaussian noise on CoOp's context"))
    clip_ptq = {m.label: s[m.label] for m in p.methods
                if m.label in s and m.kind in ("zero-shot", "clip-ptq", "p4q")}
    if any(m.kind == "p4q" for m in p.methods if m.label in s):
        written.append(plots.method_bars(clip_ptq, folder / "demo_p4q.png",
                                         title="CLIP quantized after training (PTQ) and P4Q vs full precision"))
    return written


# --------------------------------------------------------------------------------------------------- driver
def _pretrain_threads() -> int:
    """Threads for pretraining: ``OMP_NUM_THREADS`` when the user set it (on a shared machine, more threads
    than free cores make each step many times slower), else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, os.cpu_count() or 1)


def run_demo(p: DemoPlan, log: Callable[[str], None] = print, pretrain_settings: Any = None) -> dict[str, Any]:
    """Everything ``quantprompt demo`` does; returns the timings, report text, checks and figure paths."""
    from quantprompt.results import render

    from .cache import ensure_clip
    from .datasets import write_dataset

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    log(f"demo: {len(p.methods)} method(s) x {len(p.datasets)} dataset(s) x {len(p.seeds)} seed(s) "
        f"-> {p.output} ({p.workers} worker(s) x {p.threads} thread(s))")
    import torch

    torch.set_num_threads(_pretrain_threads())
    cached = ensure_clip(p.profile, p.cache_dir, settings=pretrain_settings, log=log)
    timings["pretrain"] = time.perf_counter() - t0
    if not cached.built:
        log(f"world CLIP: {cached.path} (cached; zero-shot {cached.metadata.get('probe_zero_shot', '?')}% on the "
            "64-class probe)")
    t1 = time.perf_counter()
    data = p.output / "data"
    for d in p.datasets:
        w = write_dataset(data, d, train_per_class=p.per_class[0], val_per_class=p.per_class[1],
                          test_per_class=p.per_class[2])
        log(f"dataset {w.name}: {len(w.classnames)} classes, {w.counts['train']}/{w.counts['val']}/"
            f"{w.counts['test']} train/val/test images {'(up to date)' if w.reused else 'written'}")
    timings["datasets"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    per_method = run_jobs(p, data, cached.path, log=log)
    timings["runs"] = time.perf_counter() - t2
    report, runs = collect(p)
    text = render(report, fmt="terminal")
    log("")
    log(text)
    result = checks(runs, p)
    log("Checks:")
    for line in result.lines:
        log("  " + line)
    paths = figures(runs, p, p.output / "figures")
    for path in paths:
        log(f"figure: {path}")
    timings["total"] = time.perf_counter() - t0
    log(f"time: pretrain {timings['pretrain']:.0f} s, datasets {timings['datasets']:.0f} s, runs "
        f"{timings['runs']:.0f} s, total {timings['total']:.0f} s")
    return {"timings": timings, "per_method_seconds": per_method, "report": report, "text": text,
            "checks": result, "figures": paths, "clip": cached, "summary": summary(runs, p)}


def build_parser(prog: str = "quantprompt demo") -> Any:

    ap = OneLineParser(prog=prog, description=(
        "Base-to-new on the demo world: pretrain (or load) a small CLIP on the CPU, write the datasets, run "
        "every method with the real scripts through quantprompt.grid's launcher (finished runs are skipped), "
        "print the paper-style table, the figures and three checks."))
    ap.add_argument("--quick", action="store_true",
                    help="one seed, four methods (zero-shot CLIP, CoOp, QCoOp 1-bit and 4-bit) and a smaller test "
                         "set, on the full demo's CLIP and recipe (its cache is shared with the full demo)")
    ap.add_argument("--methods", nargs="+", metavar="NAME",
                    help="trainer, trainer/config or label (default: all; --quick: four): "
                         + ", ".join(f"{m.trainer}/{m.config}" for m in METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3 (--quick: 1)")
    ap.add_argument("--datasets", nargs="+",
                    help="default: world_sketches (also: world_shapes, world_patterns, world_objects, world_paintings)")
    ap.add_argument("--output", help="output root (default: output/demo, or output/demo-quick)")
    ap.add_argument("--cache-dir", help="where the pretrained world CLIP is kept (default: $QUANTPROMPT_CACHE "
                                        "or ~/.cache/quantprompt)")
    ap.add_argument("--jobs", "--workers", dest="workers", type=int, metavar="N",
                    help="runs at a time, one thread each, as quantprompt grid --jobs (default: min(2, CPU cores))")
    return ap


def main(argv: Optional[Sequence[str]] = None, prog: str = "quantprompt demo") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        p = plan(quick=args.quick, methods=args.methods, seeds=args.seeds, datasets=args.datasets,
                 output=args.output, cache_dir=args.cache_dir, workers=args.workers)
        result = run_demo(p, log=lambda message: print(message, flush=True))
    except DemoStopped as err:
        print(f"quantprompt demo: {err}", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        return report(err, prog)
    except RuntimeError as err:  # a run failed: its log's tail, several lines (not a bad input)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0 if result["checks"].passed else 1
