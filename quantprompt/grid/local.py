"""Run a grid on this machine: N scripts at a time, each pinned to one GPU (or N CPU processes).

Each worker slot owns a GPU (round-robin over the visible ones), so a run never shares its GPU with another
unless there are more slots than GPUs. An evaluation starts only after the run that trains its model
finished. The scripts themselves skip finished runs and resume unfinished ones, so stopping this (Ctrl-C,
SIGTERM) stops its runs and the same command later continues where they were.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Sequence

from .plan import Grid, Run, script_env
from .progress import Tracker, failure_report, format_seconds, open_log

__all__ = ["visible_gpus", "slot_env", "run_local", "RunEnded"]

# called once per run that ended in this call: (the run, its exit status, its wall seconds)
RunEnded = Callable[[Run, int, float], None]


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """The GPUs runs are pinned to: ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs, up to the first invalid
    entry as CUDA reads it), else every GPU torch sees; [] without a GPU. torch (seconds to import) is
    imported only when a GPU driver is present."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        out = []
        for item in (x.strip() for x in value.split(",")):
            if not item or item.startswith("-"):
                break
            out.append(item)
        return out
    if not any(os.path.exists(p) for p in ("/proc/driver/nvidia/gpus", "/dev/nvidia0", "/dev/kfd")):
        return []
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def slot_env(base: Mapping[str, str], slot: int, jobs: int, gpus: Sequence[str],
             cpus: Optional[int] = None) -> dict[str, str]:
    """The environment of worker ``slot``: its GPU, or (CPU only, several jobs) a fair share of the cores."""
    env = dict(base)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    elif jobs > 1:
        share = str(max(1, (cpus or os.cpu_count() or 1) // jobs))
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(key, share)
    return env


@dataclass
class _Active:
    index: int
    slot: int
    proc: subprocess.Popen
    log: IO[str]
    pump: threading.Thread


def _pump(proc: subprocess.Popen, log: IO[str], echo: Optional[IO[str]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        if echo is not None:
            echo.write(line)
            echo.flush()


def _stop(active: Sequence[_Active], grace: float = 10.0) -> None:
    """SIGTERM each run's process group (bash and its train.py), SIGKILL what is left after ``grace`` s."""
    for a in active:
        try:
            os.killpg(a.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for a in active:
        try:
            a.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(a.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            a.proc.wait()
        a.pump.join(timeout=5)
        a.log.close()


class _StopRequests:
    """Ctrl-C / SIGTERM, noted by a handler and acted on by the scheduling loop between two steps (so that no
    run is left started but untracked)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


class _Scheduler:
    """The state of one local grid: which runs wait, run (in which slot) or ended, and what was printed."""

    def __init__(self, grid: Grid, jobs: int, gpus: Sequence[str], echo: bool, tail_lines: int,
                 out: IO[str], env: Optional[Mapping[str, str]] = None, on_end: Optional[RunEnded] = None) -> None:
        self.grid, self.jobs, self.gpus, self.echo, self.out = grid, jobs, list(gpus), echo, out
        self.tail_lines = tail_lines
        self.env = script_env(env)
        self.on_end = on_end
        self.todo = grid.todo()
        self.state = {i: "queued" for i in self.todo}  # queued | running | done | failed | blocked
        self.free = list(range(jobs))
        self.active: dict[int, _Active] = {}
        self.failures: list[tuple[str, Optional[Path], str]] = []
        self.blocked: list[str] = []
        self.tracker = Tracker(total=len(grid.runs), workers=min(jobs, max(1, len(self.todo))),
                               already_done=len(grid.runs) - len(self.todo))
        for i in self.todo:
            self.tracker.add(grid.runs[i].call.kind)

    def busy(self) -> bool:
        return any(s in ("queued", "running") for s in self.state.values())

    def _ready(self, i: int) -> Optional[bool]:
        """True: can start; False: must wait; None: never (what it waits for failed)."""
        after = self.grid.runs[i].after
        if after is None or self.grid.runs[after].status == "finished":
            return True
        s = self.state[after]
        return True if s == "done" else (None if s in ("failed", "blocked") else False)

    def start_ready(self) -> None:
        """Start the queued runs that may start, in the grid's order, while slots are free."""
        for i in [i for i in self.todo if self.state[i] == "queued"]:
            ok = self._ready(i)
            run = self.grid.runs[i]
            if ok is None:
                self.state[i] = "blocked"
                self.blocked.append(run.call.label)
                self.tracker.skipped(run.call.kind)
            elif ok and self.free:
                self._start(i, self.free.pop(0))

    def _start(self, i: int, slot: int) -> None:
        run = self.grid.runs[i]
        env = slot_env(self.env, slot, self.jobs, self.gpus)
        assert run.log is not None
        log = open_log(run.log, run.call.label, run.argv, env)
        proc = subprocess.Popen(run.argv, cwd=self.grid.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        pump = threading.Thread(target=_pump, args=(proc, log, self.out if self.echo else None), daemon=True)
        pump.start()
        self.active[i] = _Active(i, slot, proc, log, pump)
        self.state[i] = "running"
        self.tracker.started(i, run.call.kind)
        gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if self.gpus else ""
        print(f"start  {run.call.label}{gpu}", file=self.out, flush=True)

    def reap(self) -> bool:
        """Collect the runs that ended; True when any did."""
        ended = False
        for i, a in list(self.active.items()):
            rc = a.proc.poll()
            if rc is None:
                continue
            a.pump.join()
            a.log.write(f"=== exit status {rc}\n")
            a.log.close()
            del self.active[i]
            self.free = sorted([*self.free, a.slot])
            self.state[i] = "done" if rc == 0 else "failed"
            took = self.tracker.finished(i, rc == 0)
            run = self.grid.runs[i]
            if self.on_end is not None:
                self.on_end(run, rc, took)
            if rc == 0:
                print(f"done   {run.call.label} ({format_seconds(took)})", file=self.out)
            else:
                self.failures.append((run.call.label, run.log, f"exit status {rc}"))
                print(f"FAILED {run.call.label} (exit status {rc}; log {run.log})", file=self.out)
            ended = True
        return ended

    def stop(self) -> None:
        print(f"\ngrid: stopping {len(self.active)} running run(s); the same command resumes them",
              file=self.out, flush=True)
        _stop(list(self.active.values()))

    def report(self) -> int:
        t = self.tracker
        print(f"grid finished in {format_seconds(time.monotonic() - t.start)}: {t.done}/{t.total} runs done "
              f"({t.already_done} already finished), {t.failed} failed, {t.blocked} not run", file=self.out)
        if self.failures or self.blocked:
            print(failure_report(self.failures, self.blocked, self.tail_lines), file=self.out)
            print("fix the cause and run the same command again: finished runs are skipped", file=self.out)
        print(f"results: {self.grid.results_command()}", file=self.out, flush=True)
        return 1 if self.failures or self.blocked else 0


def run_local(grid: Grid, jobs: int = 1, gpus: Optional[Sequence[str]] = None, status_every: float = 30.0,
              tail_lines: int = 20, echo: Optional[bool] = None, poll: float = 0.2,
              env: Optional[Mapping[str, str]] = None, out: Optional[IO[str]] = None,
              on_end: Optional[RunEnded] = None) -> int:
    """Run every unfinished run of ``grid``; returns 0 when all finished, 1 when some failed, 130 when stopped.

    Runs start in the grid's order as slots free up (an evaluation once its training run finished). ``echo``
    (default: when ``jobs == 1``) also streams each run's output to ``out``, as the sequential scripts did; the
    output always goes to the run's grid log. ``env``: the environment of the runs (default ``os.environ``;
    on CPU with several jobs, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` are set to cores / jobs unless ``env``
    sets them). ``out``: where the launcher's lines go (default ``sys.stdout``). ``on_end(run, status,
    seconds)`` is called for every run that ended in this call, from the scheduling thread.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    out = sys.stdout if out is None else out
    gpus = list(visible_gpus(os.environ if env is None else env) if gpus is None else gpus)
    sched = _Scheduler(grid, jobs, gpus, echo=jobs == 1 if echo is None else echo, tail_lines=tail_lines,
                       out=out, env=env, on_end=on_end)
    for run in grid.runs:
        if run.status == "finished":
            print(f"Results are available in {run.dir} (so skip this job)", file=out)
    where = f"pinned round-robin to GPU(s) {','.join(gpus)}" if gpus else "on CPU (no GPU visible)"
    print(f"grid: {len(sched.todo)} runs to do, {len(grid.runs) - len(sched.todo)} already finished; {jobs} at a "
          f"time, {where}; logs in {grid.log_dir}", file=out, flush=True)
    last_status = time.monotonic()
    with _StopRequests() as stop:
        while sched.busy() and stop.signum is None:
            sched.start_ready()
            ended = sched.reap()
            now = time.monotonic()
            if ended or now - last_status >= status_every:
                print(sched.tracker.line(), file=out, flush=True)
                last_status = now
            if not ended:
                time.sleep(poll)
        if stop.signum is not None:
            sched.stop()
            return 130
    return sched.report()
