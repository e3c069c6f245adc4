"""What a grid prints while it runs and when it ends: a summary line, per-run events, the failure report.

Shared by the launchers so that a run on one machine and an array on SLURM read the same.
"""

from __future__ import annotations

import datetime
import os
import shlex
import socket
import time
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Sequence

__all__ = ["Tracker", "format_seconds", "open_log", "tail", "failure_report"]


def format_seconds(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Tracker:
    """Counts of a grid's units (runs, or array tasks) and an estimate of the time left.

    The estimate assumes the remaining units take as long as the ones of the same kind finished so far in this
    call (train and test runs differ by orders of magnitude), ``workers`` at a time.
    """

    def __init__(self, total: int, workers: int, unit: str = "runs", already_done: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.workers = max(1, workers)
        self.unit = unit
        self.already_done = already_done
        self.clock = clock
        self.start = clock()
        self.done = already_done
        self.failed = 0
        self.blocked = 0
        self.running: dict[object, tuple[str, float]] = {}  # key -> (kind, start time)
        self.durations: dict[str, list[float]] = {}
        self._kinds_left: dict[str, int] = {}

    def add(self, kind: str, count: int = 1) -> None:
        """Declare ``count`` units of ``kind`` still to run (for the estimate)."""
        self._kinds_left[kind] = self._kinds_left.get(kind, 0) + count

    def started(self, key: object, kind: str) -> None:
        self.running[key] = (kind, self.clock())

    def finished(self, key: object, ok: bool) -> float:
        kind, t0 = self.running.pop(key)
        took = self.clock() - t0
        self._kinds_left[kind] = max(0, self._kinds_left.get(kind, 0) - 1)
        if ok:
            self.done += 1
            self.durations.setdefault(kind, []).append(took)
        else:
            self.failed += 1
        return took

    def skipped(self, kind: str, count: int = 1) -> None:
        """Units that will not run because the one they wait for failed."""
        self.blocked += count
        self._kinds_left[kind] = max(0, self._kinds_left.get(kind, 0) - count)

    @property
    def queued(self) -> int:
        return self.total - self.done - self.failed - self.blocked - len(self.running)

    def eta(self) -> Optional[float]:
        """Seconds left, or None before anything finished in this call."""
        means = {k: sum(v) / len(v) for k, v in self.durations.items() if v}
        if not means:
            return None if (self.running or self.queued) else 0.0
        overall = sum(sum(v) for v in self.durations.values()) / sum(len(v) for v in self.durations.values())
        now = self.clock()
        work = 0.0
        running_kinds: dict[str, int] = {}
        for kind, t0 in self.running.values():
            work += max(0.0, means.get(kind, overall) - (now - t0))
            running_kinds[kind] = running_kinds.get(kind, 0) + 1
        for kind, left in self._kinds_left.items():
            work += max(0, left - running_kinds.get(kind, 0)) * means.get(kind, overall)
        return work / self.workers

    def line(self) -> str:
        eta = self.eta()
        skip = f" ({self.already_done} already finished)" if self.already_done else ""
        parts = [f"{self.done}/{self.total} {self.unit} done{skip}", f"{len(self.running)} running",
                 f"{self.queued} queued", f"{self.failed} failed"]
        if self.blocked:
            parts.append(f"{self.blocked} not run (their train run failed)")
        when = "ETA ?" if eta is None else f"ETA {format_seconds(eta)}"
        return f"[grid {format_seconds(self.clock() - self.start)}] " + ", ".join(parts) + f" | {when}"


def open_log(path: Path, label: str, argv: Sequence[str], env: Mapping[str, str]) -> IO[str]:
    """Open a run's grid log for appending (a rerun keeps the earlier attempts above) and write its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by the caller)
    gpu = env.get("CUDA_VISIBLE_DEVICES")
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    f.write(f"=== {label}: started {stamp} on {socket.gethostname()} (grid pid {os.getpid()})"
            + (f", CUDA_VISIBLE_DEVICES={gpu}" if gpu is not None else "") + "\n")
    f.write("$ " + shlex.join(argv) + "\n")
    f.flush()
    return f


def tail(path: Optional[Path], lines: int) -> list[str]:
    """The last ``lines`` lines of a text file ([] when it does not exist)."""
    if path is None or not Path(path).is_file():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024 * max(1, lines // 50 + 1)))
        text = f.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def failure_report(failed: Sequence[tuple[str, Optional[Path], str]], blocked: Sequence[str],
                   tail_lines: int) -> str:
    """The end-of-grid report: each failed run (label, log, reason) with the last lines of its log."""
    out: list[str] = []
    for label, log, reason in failed:
        out.append(f"FAILED {label}: {reason}" + (f"; log {log}" if log else ""))
        out += [f"    | {line}" for line in tail(log, tail_lines)]
    for label in blocked:
        out.append(f"NOT RUN {label}: the run it evaluates failed")
    return "\n".join(out)
