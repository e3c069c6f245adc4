"""``quantprompt study``: run the papers' claims as a pre-registered, paired, multi-seed study in the demo world.

    quantprompt study                           # configs/study/claims.yaml: every claim, 2 runs at a time
    quantprompt study --claims T1-qcoop1-H,T5-qat-new --jobs 2
    quantprompt study --dry-run                 # what would run (finished runs are skipped on a re-run)
    quantprompt study --report-only             # the report from the runs that exist

Steps: read and check the protocol (one line naming a bad key), pretrain or load the world CLIP, write the world
datasets, measure the "matched" noise std, plan the grid of script calls and run it with ``quantprompt.grid``'s
local launcher (resumable: the same command finishes an interrupted study), then analyse and write the report
(markdown, CSV, figures) and print ``study_*`` figures as ``name: value`` lines.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..clierrors import OneLineParser

__all__ = ["build_parser", "main", "measure_matched_noise_std", "run_study", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def build_parser(prog: str = "quantprompt study") -> OneLineParser:
    p = OneLineParser(prog=prog, description="Run the papers' claims as a pre-registered paired study "
                                             "(docs/claims.md).")
    p.add_argument("--protocol", help="protocol YAML (default: configs/study/claims.yaml)")
    p.add_argument("--claims", help="comma-separated claim ids to run (default: all); unknown ids are listed")
    p.add_argument("--output", default=str(REPO_ROOT / "output" / "study"), help="study folder (default: %(default)s)")
    p.add_argument("--cache-dir", help="world CLIP cache (default: $QUANTPROMPT_CACHE or ~/.cache/quantprompt)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each share (default: 2)")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs, run nothing")
    p.add_argument("--report-only", action="store_true", help="write the report from the runs that exist")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--status-every", type=float, default=60.0, help="seconds between progress lines")
    return p


def measure_matched_noise_std(clip_file: Path) -> str:
    """The RMS quantization error of the 1-bit QCoOp context at initialisation ("a photo of a", normalised
    K-Means as in the QCoOp demo recipe), on the study's CLIP: the std of "noise of matched size". Printed with
    3 significant digits, so that the last float bit of one CPU cannot change the recipe of another."""
    import torch

    from quantprompt import clip as qclip
    from quantprompt import prompting

    model_clip, _ = qclip.load(str(clip_file), precision="fp32")
    torch.manual_seed(0)
    model = prompting.build("qcoop", model_clip, ["object"], n_ctx=4, ctx_init="a photo of a", bits=1,
                            precision="fp32")
    learner = model.prompt_learner
    with torch.no_grad():
        latent = learner.parametrizations.ctx.original
        err = (learner.ctx - latent).pow(2).mean().sqrt().item()
    return f"{err:.3g}"


def _git_commit(path: Optional[Path]) -> str:
    """The commit that last changed ``path`` (the protocol) in this checkout, and whether it is modified."""
    if path is None:
        return "-"
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(path)], cwd=path.parent,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=path.parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "-"
    if not commit:
        return "not committed"
    return commit + (" (modified since)" if dirty else "")


def _machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        vnni = "avx512_vnni" in text or "avx_vnni" in text
    except OSError:
        vnni = False
    return f"{model}, {os.cpu_count()} cores, {'with' if vnni else 'without'} AVX-512/AVX VNNI"


def _script_env(cache_dir: Optional[str]) -> None:
    """The environment every script call inherits (this process's: the grid's launcher copies it)."""
    os.environ.update(PYTHON=sys.executable, QUANTPROMPT_ENV_INFO="brief", NCTX="4",
                      PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", "ignore"))
    for key in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS", "SEEDS"):
        os.environ.pop(key, None)
    if cache_dir:
        os.environ["QUANTPROMPT_CACHE"] = str(Path(cache_dir).expanduser().resolve())
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([path] if path else []))


def run_study(protocol: Any, output: Path, cache_dir: Optional[str] = None, jobs: int = 2, dry_run: bool = False,
              report_only: bool = False, figures: bool = True, status_every: float = 60.0,
              pretrain_settings: Any = None, log: Any = print, command: str = "quantprompt study") -> dict[str, Any]:
    """Everything ``quantprompt study`` does after parsing; returns results, counts, paths and timings."""
    from quantprompt.grid.local import run_local
    from quantprompt.grid.plan import plan_grid
    from quantprompt.world.cache import clip_path, ensure_clip
    from quantprompt.world.datasets import write_dataset

    from .analysis import analyse
    from .plan import StudyLayout, calls_for, needed_datasets
    from .report import verdict_counts, write_report

    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    t0 = time.perf_counter()
    _script_env(cache_dir)
    if dry_run and not clip_path(protocol.clip, cache_dir).is_file():  # a dry run pretrains nothing
        layout = StudyLayout(Path(output).expanduser().resolve(), clip_path(protocol.clip, cache_dir),
                             "<measured when the study runs>")
    else:
        cached = ensure_clip(protocol.clip, cache_dir, settings=pretrain_settings, log=log)
        layout = StudyLayout(Path(output).expanduser().resolve(), cached.path)
        if any(v == "matched" for m in protocol.methods.values() for _, v in m.opts):
            layout = StudyLayout(layout.output, layout.clip_path, measure_matched_noise_std(cached.path))
            log(f"matched noise std (RMS 1-bit quantization error of the initial context): "
                f"{layout.matched_noise_std}")
    timings = {"pretrain": time.perf_counter() - t0}
    rc = 0

    def plan() -> Any:
        return plan_grid("mixed", calls_for(protocol, layout), REPO_ROOT / "scripts", cwd=REPO_ROOT,
                         log_dir=layout.logs)

    if not report_only:
        t1 = time.perf_counter()
        if not dry_run:
            for d in needed_datasets(protocol):
                w = write_dataset(layout.data, d, train_per_class=protocol.per_class[0],
                                  val_per_class=protocol.per_class[1], test_per_class=protocol.per_class[2])
                log(f"dataset {w.name}: {len(w.classnames)} classes {'(up to date)' if w.reused else 'written'}")
        else:
            layout.data.mkdir(parents=True, exist_ok=True)  # the scripts check that the data root exists
        timings["datasets"] = time.perf_counter() - t1
        grid = plan()
        n_runs = len(grid.runs)
        if dry_run:
            log(f"study: {len(grid.runs)} runs, {len(grid.todo())} to do; logs would go to {grid.log_dir}")
            for i, run in enumerate(grid.runs):
                wait = f" (after #{run.after})" if run.after is not None and run.status != "finished" else ""
                log(f"#{i} [{run.status}] {run.call.label}{wait}")
                log(f"    {' '.join(run.command)}")
            return {"runs": n_runs, "rc": 0, "timings": timings, "layout": layout}
        t2 = time.perf_counter()
        rc = run_local(grid, jobs=jobs, gpus=[], status_every=status_every)
        timings["runs"] = time.perf_counter() - t2
        if rc == 130:  # stopped (Ctrl-C): no half report; the same command resumes
            log("study stopped: run the same command again to resume (finished runs are kept)")
            return {"runs": n_runs, "rc": rc, "timings": timings, "layout": layout, "results": [], "counts": {},
                    "paths": {}}
    if not layout.data.is_dir():
        raise FileNotFoundError(f"{layout.data}: no study data here; run the study first (without --report-only)")
    replanned = plan()  # what is finished now (a run that failed or was never run is listed as to do)
    n_runs, n_done = len(replanned.runs), len(replanned.runs) - len(replanned.todo())
    results = analyse(protocol, layout)
    timings["total"] = time.perf_counter() - t0
    info = {
        "command": command,
        "protocol": f"{protocol.path} (commit {_git_commit(protocol.path)})",
        "machine": _machine(),
        "world CLIP": f"{protocol.clip} ({layout.clip_path.name})",
        "seeds / shots": f"{protocol.seeds} / {protocol.shots}",
        "runs": f"{n_done} of {n_runs} finished" + ("" if n_done == n_runs else
                                                     " (PARTIAL: the verdicts use the units finished so far)"),
        "time": f"{timings['total']:.0f} s this invocation",
    }
    if layout.matched_noise_std:
        info["matched noise std"] = layout.matched_noise_std
    paths = write_report(results, protocol, layout, info, figures=figures)
    counts = verdict_counts(results)
    return {"results": results, "counts": counts, "paths": paths, "timings": timings, "runs": n_runs,
            "finished": n_done, "rc": rc,
            "layout": layout}


def main(argv: Optional[Sequence[str]] = None, prog: str = "quantprompt study") -> int:
    args = build_parser(prog).parse_args(argv)
    from .protocol import load_protocol

    protocol = load_protocol(args.protocol)
    if args.claims:
        protocol = protocol.select([c.strip() for c in args.claims.split(",") if c.strip()])
    given = list(sys.argv[1:] if argv is None else argv)
    out = run_study(protocol, Path(args.output), cache_dir=args.cache_dir, jobs=args.jobs, dry_run=args.dry_run,
                    report_only=args.report_only, figures=not args.no_figures, status_every=args.status_every,
                    log=lambda m: print(m, flush=True), command=shlex.join([*prog.split(), *given]))
    if args.dry_run or out["rc"] == 130:
        return out["rc"]
    from .report import claims_markdown

    print(claims_markdown(out["results"], protocol))
    for name, path in out["paths"].items():
        print(f"{name}: {path}")
    print(f"study_seconds: {out['timings']['total']:.0f}")
    print(f"study_runs: {out['runs']}")
    print(f"study_runs_finished: {out['finished']}")
    for verdict, n in out["counts"].items():
        print(f"study_claims_{verdict}: {n}")
    return 0 if out["rc"] == 0 else 1
