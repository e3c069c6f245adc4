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
from typing import IO, Mapping, Optional, Sequence

from .plan import Grid
from .progress import Tracker, failure_report, format_seconds, open_log

__all__ = ["visible_gpus", "slot_env", "run_local"]


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


def _pump(proc: subprocess.Popen, log: IO[str], echo: bool) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()


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


def run_local(grid: Grid, jobs: int = 1, gpus: Optional[Sequence[str]] = None, status_every: float = 30.0,
              tail_lines: int = 20, echo: Optional[bool] = None, poll: float = 0.2) -> int:
    """Run every unfinished run of ``grid``; returns 0 when all finished, 1 when some failed, 130 when stopped.

    ``echo`` (default: when ``jobs == 1``) also streams each run's output here, as the sequential scripts did;
    the output always goes to the run's grid log.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    echo = jobs == 1 if echo is None else echo
    base_env = dict(os.environ)
    gpus = list(visible_gpus(base_env) if gpus is None else gpus)
    out = sys.stdout
    todo = grid.todo()
    for run in grid.runs:
        if run.status == "finished":
            print(f"Results are available in {run.dir} (so skip this job)", file=out)
    where = (f"pinned round-robin to GPU(s) {','.join(gpus)}" if gpus else "on CPU (no GPU visible)")
    print(f"grid: {len(todo)} runs to do, {len(grid.runs) - len(todo)} already finished; {jobs} at a time, "
          f"{where}; logs in {grid.log_dir}", file=out, flush=True)
    tracker = Tracker(total=len(grid.runs), workers=min(jobs, max(1, len(todo))),
                      already_done=len(grid.runs) - len(todo))
    for i in todo:
        tracker.add(grid.runs[i].call.kind)
    state = {i: "queued" for i in todo}  # queued | running | done | failed | blocked
    failures: list[tuple[str, object, str]] = []
    blocked: list[str] = []
    free = list(range(jobs))
    active: dict[int, _Active] = {}
    last_status = time.monotonic()

    def ready(i: int) -> Optional[bool]:
        """True: can start; False: must wait; None: never (what it waits for failed)."""
        after = grid.runs[i].after
        if after is None or grid.runs[after].status == "finished":
            return True
        s = state[after]
        return True if s == "done" else (None if s in ("failed", "blocked") else False)

    with _StopRequests() as stop:
        while any(s in ("queued", "running") for s in state.values()) and stop.signum is None:
            for i in [i for i in todo if state[i] == "queued"]:
                ok = ready(i)
                if ok is None:
                    state[i] = "blocked"
                    blocked.append(grid.runs[i].call.label)
                    tracker.skipped(grid.runs[i].call.kind)
                elif ok and free:
                    slot = free.pop(0)
                    run = grid.runs[i]
                    env = slot_env(base_env, slot, jobs, gpus)
                    assert run.log is not None
                    log = open_log(run.log, run.call.label, run.argv, env)
                    proc = subprocess.Popen(run.argv, cwd=grid.cwd, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, errors="replace",
                                            start_new_session=True)
                    pump = threading.Thread(target=_pump, args=(proc, log, echo), daemon=True)
                    pump.start()
                    active[i] = _Active(i, slot, proc, log, pump)
                    state[i] = "running"
                    tracker.started(i, run.call.kind)
                    gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""
                    print(f"start  {run.call.label}{gpu}", file=out, flush=True)
            finished = False
            for i, a in list(active.items()):
                rc = a.proc.poll()
                if rc is None:
                    continue
                a.pump.join()
                a.log.write(f"=== exit status {rc}\n")
                a.log.close()
                del active[i]
                free.append(a.slot)
                free.sort()
                state[i] = "done" if rc == 0 else "failed"
                took = tracker.finished(i, rc == 0)
                run = grid.runs[i]
                if rc == 0:
                    print(f"done   {run.call.label} ({format_seconds(took)})", file=out)
                else:
                    failures.append((run.call.label, run.log, f"exit status {rc}"))
                    print(f"FAILED {run.call.label} (exit status {rc}; log {run.log})", file=out)
                finished = True
            now = time.monotonic()
            if finished or now - last_status >= status_every:
                print(tracker.line(), file=out, flush=True)
                last_status = now
            if not finished:
                time.sleep(poll)
        if stop.signum is not None:
            print(f"\ngrid: stopping {len(active)} running run(s); the same command resumes them", file=out,
                  flush=True)
            _stop(list(active.values()))
            return 130
    print(f"grid finished in {format_seconds(time.monotonic() - tracker.start)}: "
          f"{tracker.done}/{tracker.total} runs done ({tracker.already_done} already finished), "
          f"{tracker.failed} failed, {tracker.blocked} not run", file=out)
    if failures or blocked:
        print(failure_report(failures, blocked, tail_lines), file=out)  # type: ignore[arg-type]
        print("fix the cause and run the same command again: finished runs are skipped", file=out)
    print(f"results: {grid.results_command()}", file=out, flush=True)
    return 1 if failures or blocked else 0
