"""``python -m quantprompt.grid`` / ``quantprompt grid`` / ``scripts/<method>/benchmark.sh``: run a benchmark grid.

    python -m quantprompt.grid base2new [DATASET ...] --methods qcoop,coop [--seeds 1,2,3] \\
        [--jobs 4 | --launcher slurm --partition gpu --time 6:00:00] [--dry-run] \\
        [--data DIR] [--cfg NAME] [--shots K] [--output DIR] [KEY VALUE ...]

Everything from the first ``KEY VALUE`` pair (or ``--``) on is passed to every ``train.py`` call, as the
per-setting scripts do.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Optional, Sequence

from ..clierrors import OneLineParser, report
from .plan import SETTINGS, GridError, expand, plan_grid

__all__ = ["build_parser", "main", "split_pass_through"]

_KEY = re.compile(r"[A-Z][^.]*\.")


def _list(text: str) -> list[str]:
    return [x for x in re.split(r"[,\s]+", text.strip()) if x]


def build_parser(prog: str = "python -m quantprompt.grid") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog, allow_abbrev=False,
        description="Run a benchmark grid (method x dataset x seed [x shots]) through the per-setting scripts: "
                    "one run at a time (default), N at a time on this machine's GPUs (--jobs N), or as a SLURM "
                    "job array through submitit (--launcher slurm). Finished runs are skipped and unfinished "
                    "ones resumed, so the same command completes a grid after any failure.",
        epilog="Everything from the first KEY VALUE pair (or --) on goes to every train.py call. See docs/grid.md.")
    p.add_argument("setting", choices=SETTINGS, help="which benchmark")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="datasets (base2new, fewshot) or target datasets (xd, dg); default: the paper's")
    g = p.add_argument_group("grid")
    g.add_argument("--methods", required=True, type=_list, metavar="M[,M...]",
                   help="method folders of scripts/ (qcoop, coop, qmaple, ...)")
    g.add_argument("--seeds", type=_list, default=_list(os.environ.get("SEEDS", "1 2 3")), metavar="S[,S...]",
                   help="seeds (default: $SEEDS or 1,2,3)")
    g.add_argument("--shots-list", type=_list, default=_list(os.environ.get("SHOTS_LIST", "1 2 4 8 16")),
                   metavar="K[,K...]", help="fewshot: shots per class (default: $SHOTS_LIST or 1,2,4,8,16)")
    g.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local",
                   help="local: subprocesses on this machine (default); slurm: a job array via submitit; "
                        "submitit-local: the slurm path run by submitit's local executor (no SLURM needed)")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local: runs at a time, each pinned to one GPU round-robin (default 1)")
    g.add_argument("--gpus", type=_list, metavar="ID[,ID...]",
                   help="local: the GPUs to pin runs to (default: $CUDA_VISIBLE_DEVICES, else all GPUs; none: CPU)")
    g.add_argument("--dry-run", action="store_true", help="print the runs (or the array) and run nothing")
    g.add_argument("--status-every", type=float, default=30.0, metavar="SEC",
                   help="seconds between summary lines while nothing finishes (default 30)")
    g.add_argument("--tail", type=int, default=20, metavar="N", help="log lines shown per failed run (default 20)")
    g.add_argument("--log-dir", metavar="DIR", help="where each run's output goes (default: OUTPUT/grid_logs)")
    g.add_argument("--scripts", metavar="DIR", help="the scripts/ folder (default: the checkout's)")
    s = p.add_argument_group("slurm (--launcher slurm / submitit-local): resources of one array task")
    s.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    s.add_argument("--time", default="6:00:00", help="time limit per task (default 6:00:00; a task that runs out "
                   "is requeued and resumes, up to 3 times)")
    s.add_argument("--gpus-per-task", type=int, default=1, metavar="N", help="GPUs per task (default 1)")
    s.add_argument("--cpus-per-task", type=int, default=8, metavar="N", help="CPUs per task (default 8)")
    s.add_argument("--mem", default="32G", help="memory per task (default 32G)")
    s.add_argument("--account", help="SLURM account")
    s.add_argument("--qos", help="SLURM quality of service")
    s.add_argument("--array-parallelism", type=int, default=256, metavar="N",
                   help="tasks running at once (default 256)")
    s.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. --slurm-opt constraint=a100 (repeatable)")
    s.add_argument("--no-wait", action="store_true", help="submit and return instead of following the tasks")
    o = p.add_argument_group("script options (passed to every run)")
    o.add_argument("--data", metavar="DIR", help="dataset root (default: $DATA)")
    o.add_argument("--cfg", metavar="NAME", help="trainer config name (default: $CFG or the method's)")
    o.add_argument("--shots", metavar="K", help="shots per class (default: $SHOTS or 16; not fewshot)")
    o.add_argument("--output", metavar="DIR", help="output root (default: $OUTPUT or output)")
    return p


def split_pass_through(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the KEY VALUE options for train.py): the latter start at the first ``--`` or KEY token
    that is not the value of one of our options."""
    takes_value = {s for a in parser._actions for s in a.option_strings if a.nargs != 0}
    flags = {s for a in parser._actions for s in a.option_strings}
    argv = list(argv)
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--" or _KEY.match(tok):
            break
        i += 2 if tok in takes_value else 1
    ours, rest = argv[:i], argv[i:]
    for tok in rest:
        if tok.split("=", 1)[0] in flags - {"--data", "--cfg", "--shots", "--output"}:
            raise GridError(f"{tok} comes after the KEY VALUE options ({' '.join(rest[:2])} ...), which all go to "
                            f"train.py: put {tok} before them")
    return ours, rest


def _script_opts(args: argparse.Namespace, rest: Sequence[str]) -> list[str]:
    opts: list[str] = []
    for name in ("data", "cfg", "shots", "output"):
        value = getattr(args, name)
        if value is not None:
            opts += [f"--{name}", value]
    return opts + list(rest)


def _print_plan(grid) -> None:  # noqa: ANN001 - a plan.Grid
    print(f"grid ({grid.setting}): {len(grid.runs)} runs, {len(grid.todo())} to do; train.py commands run from "
          f"{grid.repo}; logs would go to {grid.log_dir}")
    for i, run in enumerate(grid.runs):
        wait = f" (after #{run.after})" if run.after is not None and run.status != "finished" else ""
        print(f"#{i} [{run.status}] {run.call.label}{wait}")
        print(f"    {' '.join(run.command)}")
    for call in grid.dropped:
        print(f"(not run: {call.label} writes the same folder as an earlier run)")
    print(f"results: {grid.results_command()}")


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m quantprompt.grid") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--prog"] and len(argv) > 1:  # scripts/<method>/benchmark.sh names itself in the usage
        prog, argv = argv[1], argv[2:]
    parser = build_parser(prog)
    try:
        ours, rest = split_pass_through(parser, argv)
    except GridError as err:
        parser.error(str(err))
    args = parser.parse_intermixed_args(ours)
    try:
        if args.jobs < 1:
            raise GridError(f"--jobs must be at least 1, got {args.jobs}")
        if args.launcher != "local" and (args.jobs != 1 or args.gpus):
            raise GridError(f"--jobs/--gpus are for --launcher local; with --launcher {args.launcher} use "
                            "--array-parallelism and --gpus-per-task")
        extra = {}
        for item in args.slurm_opt:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise GridError(f"--slurm-opt '{item}' must be KEY=VALUE (e.g. constraint=a100)")
            extra[key] = value
        options = None
        if args.launcher != "local":
            from .slurm import SlurmOptions

            options = SlurmOptions(partition=args.partition, time=args.time, gpus_per_task=args.gpus_per_task,
                                   cpus_per_task=args.cpus_per_task, mem=args.mem, account=args.account,
                                   qos=args.qos, array_parallelism=args.array_parallelism, extra=extra)
            options.executor_parameters(name="check")  # bad flags fail here, before the grid is planned
        from .plan import default_scripts_dir

        scripts = os.path.abspath(args.scripts) if args.scripts else default_scripts_dir()
        calls = expand(args.setting, args.methods, args.datasets, args.seeds, args.shots_list)
        grid = plan_grid(args.setting, calls, scripts, opts=_script_opts(args, rest),
                         log_dir=os.path.abspath(args.log_dir) if args.log_dir else None)
        if options is None:
            if args.dry_run:
                _print_plan(grid)
                return 0
            from .local import run_local

            return run_local(grid, jobs=args.jobs, gpus=args.gpus, status_every=args.status_every,
                             tail_lines=args.tail)
        from .slurm import run_submitit

        return run_submitit(grid, options, cluster="slurm" if args.launcher == "slurm" else "local",
                            dry_run=args.dry_run, wait=not args.no_wait, status_every=args.status_every,
                            tail_lines=args.tail)
    except GridError as err:
        return report(err, prog)
