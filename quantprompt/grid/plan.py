"""The grid of a benchmark: which script calls it makes, and what each call would do.

The grid (method x dataset x seed [x shots] of one setting) is defined here and nowhere else. What one call
does -- its ``train.py`` command line, its output folder, whether it is finished, unfinished or new, and which
trained model an evaluation loads -- stays defined once, in ``scripts/common.sh``: the grid asks each
per-setting script with ``QP_PLAN=1`` (the script prints its plan and runs nothing), and a launcher later runs
the very same script, which skips finished runs and resumes unfinished ones by itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

__all__ = [
    "SETTINGS", "MIXED", "BASE2NEW_DATASETS", "XD_TARGETS", "DG_TARGETS", "DEFAULT_SEEDS", "DEFAULT_SHOTS",
    "GridError", "Call", "Run", "Grid", "expand", "plan_grid", "find_methods", "default_scripts_dir",
    "split_script_opts", "call_argv",
]

SETTINGS = ("base2new", "xd", "dg", "fewshot")
MIXED = "mixed"  # a grid of calls from several settings (built by a caller, e.g. ``quantprompt study``)
BASE2NEW_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                     "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = BASE2NEW_DATASETS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
DEFAULT_SEEDS = ("1", "2", "3")
DEFAULT_SHOTS = ("1", "2", "4", "8", "16")
TABLE_OF_SETTING = {"base2new": "base2new", "xd": "xd", "dg": "dg", "fewshot": "fewshot", MIXED: ""}
# the scripts' own options (scripts/common.sh, qp_parse): each takes one value
SCRIPT_OPTIONS = ("--data", "--cfg", "--shots", "--output")
_KEY = re.compile(r"[A-Z][^.]*\.")


class GridError(ValueError):
    """A grid that cannot be planned: unknown setting/method, or a script refusing its arguments."""


@dataclass(frozen=True)
class Call:
    """One call of a per-setting script: ``scripts/<method>/<script> <args...> <opts...>`` plus the grid's options.

    ``opts`` are this call's own script options and ``train.py`` KEY VALUE pairs, in the scripts' syntax
    (``--cfg demo_b2 --shots 8 -- OPTIM.MAX_EPOCH 2``); they are merged with the grid-wide options by
    :func:`call_argv`. ``tag`` names the call in progress lines when several calls share method, script and
    arguments (e.g. one method under two configs).
    """

    method: str
    script: str
    args: tuple[str, ...]
    opts: tuple[str, ...] = ()
    tag: str = ""

    @property
    def kind(self) -> str:
        """``test`` for evaluation-only scripts (they load a trained model), ``train`` otherwise."""
        return "test" if self.script.endswith("_test.sh") else "train"

    @property
    def label(self) -> str:
        words = " ".join((self.method, self.script[: -len(".sh")], *self.args))
        return f"{words} [{self.tag}]" if self.tag else words


@dataclass
class Run:
    """A call and its plan: what the script said it would do."""

    call: Call
    status: str  # finished | unfinished | new
    dir: Path
    needs: Optional[Path]  # the trained model an evaluation loads
    output: Path  # the output root the script writes under
    command: tuple[str, ...]  # the train.py command line (run from the repository root)
    argv: tuple[str, ...] = ()  # how to run the call: bash scripts/<method>/<script> args... options...
    after: Optional[int] = None  # index (in Grid.runs) of the run that must finish first
    log: Optional[Path] = None  # where a launcher writes the call's output


@dataclass
class Grid:
    """The planned runs of one setting, in the sequential order, with their dependencies."""

    setting: str
    runs: list[Run]
    repo: Path
    scripts_dir: Path
    cwd: Path  # the scripts resolve relative --data paths against the caller's directory
    log_dir: Path
    opts: tuple[str, ...] = ()  # the user's script options, passed to every call
    dropped: list[Call] = field(default_factory=list)  # calls that write the folder of an earlier call

    def todo(self) -> list[int]:
        return [i for i, r in enumerate(self.runs) if r.status != "finished"]

    def chains(self) -> list[list[int]]:
        """Each run that nothing waits for, or a train run followed by the runs that wait for it."""
        followers: dict[int, list[int]] = {}
        for i, run in enumerate(self.runs):
            if run.after is not None:
                followers.setdefault(run.after, []).append(i)
        return [[i, *followers.get(i, [])] for i, run in enumerate(self.runs) if run.after is None]

    def output_roots(self) -> list[Path]:
        return sorted({r.output for r in self.runs})

    def results_command(self) -> str:
        """The command that prints the results table of this grid (every table found, for a mixed grid)."""
        roots = " ".join(_quote(str(p)) for p in self.output_roots())
        tool = _quote(str(self.repo / "tools" / "parse_test_res.py"))
        return f"python {tool} {roots} --table {TABLE_OF_SETTING[self.setting]}".rstrip()


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def default_scripts_dir() -> Path:
    """``scripts/`` of the checkout this package lives in (the package is installed editable or run in place)."""
    here = Path(__file__).resolve().parents[2] / "scripts"
    if not (here / "common.sh").is_file():
        raise GridError(f"no scripts/common.sh next to the quantprompt package (looked in {here}): run from a "
                        "QuantPrompt checkout or pass --scripts DIR")
    return here


def find_methods(scripts_dir: Path) -> list[str]:
    """Method names: the folders of ``scripts/`` with a ``method.sh``."""
    return sorted(p.parent.name for p in scripts_dir.glob("*/method.sh"))


def expand(setting: str, methods: Sequence[str], datasets: Sequence[str] = (), seeds: Sequence[str] = DEFAULT_SEEDS,
           shots: Sequence[str] = DEFAULT_SHOTS) -> list[Call]:
    """The script calls of a setting, method by method, in the order a sequential run makes them."""
    if setting not in SETTINGS:
        raise GridError(f"setting must be one of {', '.join(SETTINGS)} (got '{setting}')")
    if not methods:
        raise GridError("no method: pass --methods NAME[,NAME...]")
    if not seeds:
        raise GridError("no seed: pass --seeds 1,2,3 (or set SEEDS)")
    calls: list[Call] = []
    for m in methods:
        if setting == "base2new":
            for d in datasets or BASE2NEW_DATASETS:
                for s in seeds:
                    calls += [Call(m, "base2new_train.sh", (d, s)), Call(m, "base2new_test.sh", (d, s))]
        elif setting in ("xd", "dg"):
            targets = datasets or (XD_TARGETS if setting == "xd" else DG_TARGETS)
            for s in seeds:
                calls.append(Call(m, f"{setting}_train.sh", (s,)))
                calls += [Call(m, f"{setting}_test.sh", (d, s)) for d in targets]
        else:
            if not shots:
                raise GridError("no shots: pass --shots-list 1,2,4,8,16 (or set SHOTS_LIST)")
            for d in datasets or BASE2NEW_DATASETS:
                for k in shots:
                    calls += [Call(m, "fewshot.sh", (d, k, s)) for s in seeds]
    return calls


def split_script_opts(opts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(script options, ``train.py`` KEY VALUE pairs) of a script argument list, read as ``qp_parse`` reads
    it: the pairs start after ``--`` or at the first KEY token that is not the value of a script option."""
    opts = list(opts)
    i = 0
    while i < len(opts):
        if opts[i] == "--":
            return opts[:i], opts[i + 1:]
        if _KEY.match(opts[i]):
            break
        i += 2 if opts[i] in SCRIPT_OPTIONS else 1
    return opts[:i], opts[i:]


def call_argv(scripts_dir: Path, call: Call, opts: Sequence[str] = ()) -> list[str]:
    """How a launcher runs ``call``: ``bash scripts/<method>/<script> args... options... -- KEY VALUE...``.

    The call's script options come before the grid's (``qp_parse`` keeps the last value of an option, so the
    grid-wide ``--data``/``--output`` win); its KEY VALUE pairs come before the grid's (``train.py`` merges
    them in order, so the grid-wide pairs win too)."""
    own_options, own_pairs = split_script_opts(call.opts)
    grid_options, grid_pairs = split_script_opts(opts)
    pairs = [*own_pairs, *grid_pairs]
    if len(own_pairs) % 2 or len(grid_pairs) % 2:
        raise GridError(f"{call.label}: KEY VALUE options must come in pairs, got {' '.join(pairs)}")
    return ["bash", str(Path(scripts_dir) / call.method / call.script), *call.args, *own_options,
            *grid_options, *(["--", *pairs] if pairs else [])]


def _plan_one(call: Call, argv: list[str], cwd: Path, env: Mapping[str, str]) -> Run:
    res = subprocess.run(argv, cwd=cwd, env={**env, "QP_PLAN": "1"}, capture_output=True, text=True)
    if res.returncode != 0:
        msg = res.stderr.strip() or res.stdout.strip() or f"exit status {res.returncode}"
        raise GridError(f"{call.label}: {msg}")
    plan = cmd = None
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "qp-plan":
            plan = parts[1:]
        elif parts[0] == "qp-cmd":
            cmd = tuple(parts[1:])
    if plan is None or cmd is None or len(plan) != 4:
        raise GridError(f"{call.label}: the script printed no plan (is scripts/common.sh from this version?); "
                        f"output: {res.stdout[-500:]!r}")
    status, run_dir, needs, output = plan
    return Run(call=call, status=status, dir=Path(run_dir), needs=Path(needs) if needs else None,
               output=Path(output), command=cmd, argv=tuple(argv))


def _log_path(log_dir: Path, run: Run, base: Optional[Path]) -> Path:
    try:
        rel = run.dir.relative_to(base) if base is not None else None
    except ValueError:
        rel = None
    if rel is None:  # outside the output roots: the sanitized full path is unique
        rel = Path(re.sub(r"[^\w.-]+", "_", str(run.dir)).strip("_"))
    return log_dir / (str(rel) + ".log")


def _log_base(runs: Sequence[Run]) -> Optional[Path]:
    """The folder run logs mirror: the output root, or with several roots (the study gives each method its own)
    their common parent, so that two runs with the same trainer, config, dataset and seed under different roots
    never share a log file."""
    outputs = sorted({os.path.normpath(r.output) for r in runs})
    if len(outputs) == 1:
        return runs[0].output
    try:
        return Path(os.path.commonpath(outputs))
    except ValueError:  # different drives (Windows): no common parent
        return None


def script_env(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment the scripts run in: ``PYTHON`` (the interpreter scripts/common.sh calls) defaults to the
    one running the grid, so a grid started as ``/path/to/venv/bin/python -m quantprompt.grid`` runs its scripts
    in that venv even when it is not activated (a bare ``python`` on PATH may be another interpreter)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHON", sys.executable)
    return env


def plan_grid(setting: str, calls: Sequence[Call], scripts_dir: Path, opts: Sequence[str] = (),
              cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
              log_dir: Optional[Path] = None, workers: int = 8) -> Grid:
    """Ask every script what it would do (no run starts), link each evaluation to the run that trains its
    model, and drop calls that would write the folder of an earlier call (zero-shot few-shot runs share one).

    ``calls`` may come from :func:`expand` or be built by hand, from any mix of settings (``setting`` "mixed"):
    each is a script of ``scripts_dir`` with its own arguments and options (:class:`Call`); ``opts`` go to every
    call. ``env`` is the environment the scripts are planned with (the launcher gets its own)."""
    scripts_dir = Path(scripts_dir).resolve()
    known = find_methods(scripts_dir)
    for m in sorted({c.method for c in calls}):
        if m not in known:
            raise GridError(f"unknown method '{m}'; methods in {scripts_dir}: {', '.join(known)}")
    cwd = Path(cwd or os.getcwd())
    env = script_env(env)
    if not calls:
        raise GridError("the grid is empty")
    if setting not in TABLE_OF_SETTING:
        raise GridError(f"setting must be one of {', '.join(TABLE_OF_SETTING)} (got '{setting}')")
    argvs = [call_argv(scripts_dir, c, opts) for c in calls]
    # the first call alone: a bad option (no dataset root, unknown config) fails once, before the others start
    first = _plan_one(calls[0], argvs[0], cwd, env)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rest = list(pool.map(lambda ca: _plan_one(ca[0], ca[1], cwd, env), zip(calls[1:], argvs[1:])))
    runs: list[Run] = []
    dropped: list[Call] = []
    by_dir: dict[str, int] = {}
    for run in [first, *rest]:
        key = os.path.normpath(run.dir)
        if key in by_dir:
            dropped.append(run.call)
            continue
        by_dir[key] = len(runs)
        runs.append(run)
    for run in runs:
        if run.needs is not None:
            run.after = by_dir.get(os.path.normpath(run.needs))
    log_dir = Path(log_dir) if log_dir is not None else runs[0].output / "grid_logs"
    base = _log_base(runs)
    for run in runs:
        run.log = _log_path(log_dir, run, base)
    return Grid(setting=setting, runs=runs, repo=scripts_dir.parent, scripts_dir=scripts_dir, cwd=cwd,
                log_dir=log_dir, opts=tuple(opts), dropped=dropped)
