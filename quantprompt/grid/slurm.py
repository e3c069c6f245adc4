"""Run a grid as a SLURM job array through submitit (or submitit's local executor, for tests and laptops).

One array task per chain: a run that nothing waits for, or a train run followed by the evaluations of its
model, in that order on the same allocation. That keeps "test after its train" without cross-job
dependencies (which submitit's local executor does not have) and costs little: evaluations are short next to
training. Chains whose runs are all finished are not submitted, so the same command after a partial failure
submits only what is left. On a timeout or preemption SLURM signals the task ahead of time; submitit then
requeues it (``checkpoint`` below) and the scripts resume the unfinished run from its last epoch checkpoint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .plan import Grid, GridError, script_env
from .progress import Tracker, failure_report, format_seconds, open_log, tail

__all__ = ["SlurmOptions", "parse_time", "parse_mem", "chain_specs", "run_chain", "ChainTask", "run_submitit"]


def parse_time(text: str) -> int:
    """SLURM's time formats (``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``, ``MM:SS``) -> whole minutes (>= 1)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise GridError(f"--time '{text}' is not a SLURM time: use minutes (240), HH:MM:SS (4:00:00) or "
                        "D-HH:MM:SS (1-00:00:00)")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise GridError(f"--time '{text}' is zero: give the time limit of one array task")
    return max(1, -(-seconds // 60))


def parse_mem(text: str) -> float:
    """Memory per task (``32G``, ``64000M``, ``1T``; plain numbers are GB) -> GB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", text.strip(), re.I)
    if not m or float(m.group(1)) <= 0:
        raise GridError(f"--mem '{text}' is not a memory size: use e.g. 32G or 64000M")
    scale = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0, "": 1.0}[m.group(2).upper()]
    return float(m.group(1)) * scale


@dataclass
class SlurmOptions:
    """The resources of one array task (flags of ``--launcher slurm``)."""

    partition: Optional[str] = None
    time: str = "6:00:00"
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem: str = "32G"
    account: Optional[str] = None
    qos: Optional[str] = None
    array_parallelism: int = 256
    extra: dict[str, str] = field(default_factory=dict)  # --slurm-opt KEY=VALUE: any other sbatch flag
    max_requeue: int = 3

    def executor_parameters(self, name: str) -> dict[str, Any]:
        """submitit's AutoExecutor parameters (the ``slurm_`` ones are ignored by the local executor)."""
        if self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.array_parallelism < 1:
            raise GridError("--gpus-per-task must be >= 0, --cpus-per-task and --array-parallelism >= 1 "
                            f"(got {self.gpus_per_task}, {self.cpus_per_task}, {self.array_parallelism})")
        params: dict[str, Any] = {
            "name": name, "timeout_min": parse_time(self.time), "mem_gb": parse_mem(self.mem),
            "cpus_per_task": self.cpus_per_task, "gpus_per_node": self.gpus_per_task, "tasks_per_node": 1,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.account:
            params["slurm_account"] = self.account
        if self.qos:
            params["slurm_qos"] = self.qos
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def chain_specs(grid: Grid) -> list[dict[str, Any]]:
    """The array tasks: one plain-data spec per chain that has something left to run."""
    specs = []
    for chain in grid.chains():
        runs = [grid.runs[i] for i in chain]
        if all(r.status == "finished" for r in runs):
            continue
        specs.append({
            "cwd": str(grid.cwd),
            "label": runs[0].call.label + (f" (+{len(runs) - 1} evaluation(s))" if len(runs) > 1 else ""),
            "runs": [{"label": r.call.label, "argv": list(r.argv), "log": str(r.log), "dir": str(r.dir),
                      "finished": r.status == "finished"} for r in runs],
        })
    return specs


class ChainFailed(RuntimeError):
    """Some runs of an array task failed; the message names them, their logs and their last lines."""


def run_chain(spec: dict[str, Any], tail_lines: int = 20) -> list[str]:
    """Body of one array task: run the chain's scripts in order (the train run, then its evaluations).

    Evaluations are not started when the train run failed. Returns the labels of the runs done.
    """
    done: list[str] = []
    failed: list[str] = []
    root_failed = False
    for k, run in enumerate(spec["runs"]):
        if run["finished"]:
            continue
        if k > 0 and root_failed:  # the first run trains what the others evaluate
            break
        env = script_env()
        with open_log(Path(run["log"]), run["label"], run["argv"], env) as log:
            print(f"start {run['label']} (log {run['log']})", flush=True)
            rc = subprocess.call(run["argv"], cwd=spec["cwd"], env=env, stdout=log, stderr=subprocess.STDOUT)
            log.write(f"=== exit status {rc}\n")
        print(f"{'done' if rc == 0 else 'FAILED'} {run['label']} (exit status {rc})", flush=True)
        if rc == 0:
            done.append(run["label"])
        else:
            lines = "\n".join("    | " + x for x in tail(Path(run["log"]), tail_lines))
            failed.append(f"{run['label']}: exit status {rc}; log {run['log']}\n{lines}")
            root_failed = root_failed or k == 0
    if failed:
        raise ChainFailed("\n".join(failed))
    return done


class ChainTask:
    """The callable submitted per array task; ``checkpoint`` lets submitit requeue it on timeout/preemption
    (the rerun skips the finished runs and resumes the interrupted one)."""

    def __call__(self, spec: dict[str, Any]) -> list[str]:
        return run_chain(spec)

    def checkpoint(self, spec: dict[str, Any]) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec)


def _describe(grid: Grid, specs: Sequence[dict[str, Any]], params: dict[str, Any], cluster: str,
              options_requeue: int) -> str:
    lines = [f"would submit {len(specs)} array task(s) with submitit (cluster={cluster}); each task:"]
    for key in sorted(params):
        lines.append(f"  {key} = {params[key]}")
    lines.append(f"  logs: {grid.log_dir} (runs), {grid.log_dir / 'submitit'} (tasks)")
    lines.append(f"  requeued on timeout or preemption: up to {options_requeue} times")
    lines.append(f"train.py commands run from {grid.repo}")
    by_dir = {str(r.dir): r for r in grid.runs}
    for t, spec in enumerate(specs):
        lines.append(f"task {t}: {spec['label']}")
        for run in spec["runs"]:
            r = by_dir[run["dir"]]
            lines.append(f"  [{r.status}] {' '.join(run['argv'])}")
            lines.append(f"      train.py: {' '.join(r.command)}")
    return "\n".join(lines)


def run_submitit(grid: Grid, options: SlurmOptions, cluster: str = "slurm", dry_run: bool = False,
                 wait: bool = True, status_every: float = 60.0, tail_lines: int = 20, poll: float = 5.0) -> int:
    """Submit the grid's unfinished chains as one job array and (``wait``) follow them to the end."""
    out = sys.stdout
    specs = chain_specs(grid)
    params = options.executor_parameters(name=f"qp-{grid.setting}")
    finished = sum(r.status == "finished" for r in grid.runs)
    print(f"grid: {len(grid.runs) - finished} runs to do in {len(specs)} array task(s), {finished} runs already "
          "finished", file=out)
    if dry_run:
        print(_describe(grid, specs, params, cluster, options.max_requeue), file=out, flush=True)
        return 0
    if not specs:
        print(f"nothing to submit\nresults: {grid.results_command()}", file=out, flush=True)
        return 0
    if cluster == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise GridError("sbatch/srun not found: submit from a SLURM login node, or use --jobs N on this machine")
    import submitit

    executor = submitit.AutoExecutor(folder=grid.log_dir / "submitit", cluster=cluster,
                                     **({"slurm_max_num_timeout": options.max_requeue} if cluster == "slurm"
                                        else {"local_max_num_timeout": options.max_requeue}))
    executor.update_parameters(**params)
    jobs = executor.map_array(ChainTask(), specs)
    ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
    print(f"submitted {len(jobs)} task(s): job id(s) {' '.join(ids)}; task logs in {grid.log_dir / 'submitit'}",
          file=out, flush=True)
    if not wait:
        if cluster == "slurm":
            print(f"follow with: squeue -j {','.join(ids)}   cancel with: scancel {' '.join(ids)}", file=out)
        print(f"when they are done: {grid.results_command()}", file=out, flush=True)
        return 0
    return _follow(grid, specs, jobs, cluster, min(len(jobs), options.array_parallelism), status_every,
                   tail_lines, poll)


def _follow(grid: Grid, specs: Sequence[dict[str, Any]], jobs: Sequence[Any], cluster: str, workers: int,
            status_every: float, tail_lines: int, poll: float) -> int:
    out = sys.stdout
    tracker = Tracker(total=len(jobs), workers=workers, unit="tasks")
    tracker.add("chain", len(jobs))
    pending = set(range(len(jobs)))
    failures: list[tuple[str, Optional[Path], str]] = []
    last = time.monotonic()
    try:
        while pending:
            changed = False
            for k in sorted(pending):
                job = jobs[k]
                if k not in tracker.running and job.state.upper() not in ("PENDING", "UNKNOWN", "REQUEUED"):
                    tracker.started(k, "chain")
                if not job.done():
                    continue
                pending.discard(k)
                if k not in tracker.running:
                    tracker.started(k, "chain")
                try:
                    error = job.exception()
                except Exception as exc:  # noqa: BLE001 - a task that left no result is a failure
                    error = exc
                took = tracker.finished(k, error is None)
                label = specs[k]["label"]
                if error is None:
                    print(f"done   task {k}: {label} ({format_seconds(took)})", file=out)
                else:
                    print(f"FAILED task {k}: {label} (job {job.job_id})", file=out)
                    failures += _failed_runs(grid, specs[k], job, error)
                changed = True
            now = time.monotonic()
            if changed or now - last >= status_every:
                print(tracker.line(), file=out, flush=True)
                last = now
            if pending:
                time.sleep(poll)
    except KeyboardInterrupt:
        if cluster == "local":
            for k in pending:
                jobs[k].cancel(check=False)
            print("\ngrid: stopped the local tasks; the same command resumes them", file=out, flush=True)
        else:
            ids = " ".join(sorted({str(jobs[k].job_id).split("_")[0] for k in pending}))
            print(f"\ngrid: no longer following; the tasks keep running (scancel {ids} to stop them). Do not "
                  "submit the same grid again before they end.", file=out, flush=True)
        return 130
    print(f"grid finished in {format_seconds(time.monotonic() - tracker.start)}: {tracker.done}/{tracker.total} "
          f"tasks done, {tracker.failed} failed", file=out)
    if failures:
        print(failure_report(failures, [], tail_lines), file=out)
        print("fix the cause and run the same command again: only unfinished runs are submitted", file=out)
    print(f"results: {grid.results_command()}", file=out, flush=True)
    return 1 if failures else 0


def _failed_runs(grid: Grid, spec: dict[str, Any], job: Any, error: BaseException) -> list[tuple[str, Optional[Path], str]]:
    """The runs of a failed task that did not finish, each with its log (or the task's own log when the task
    died before starting a run)."""
    from .plan import plan_grid

    runs = [r for r in grid.runs if str(r.dir) in {x["dir"] for x in spec["runs"]}]
    replanned = plan_grid(grid.setting, [r.call for r in runs], grid.scripts_dir,
                          opts=grid.opts, cwd=grid.cwd, log_dir=grid.log_dir)
    bad = [(r.call.label, r.log, "not finished") for r in replanned.runs if r.status != "finished"
           and r.log is not None and r.log.is_file()]
    if bad:
        return bad
    stderr = None
    try:
        stderr = Path(job.paths.stderr)
    except Exception:  # noqa: BLE001 - no submitit log to point at
        pass
    return [(spec["label"], stderr, f"task failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}")]

