"""From runs to table cells: a run's final value, per-seed values, seed statistics, sizes, shared averages.

Shared by every setting's table builder. Incomplete data never raises: each problem becomes a warning line.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from .aggregate import Stat, summarize
from .names import Method, dataset_label
from .sizes import format_kb, run_size
from .tree import Run, is_zeroshot

__all__ = [
    "SeedGrid",
    "average_datasets",
    "missing_reason",
    "run_value",
    "seed_values",
    "seeds_text",
    "size_cell",
    "spread_text",
]


def run_value(run: Run, keyword: str, warnings: list[str]) -> Optional[float]:
    """The run's final value of ``keyword`` or None plus a warning saying why."""
    if run.log is None:
        warnings.append(f"{run.path}: no log.txt (run not started, or its log was removed); left out")
        return None
    log = run.log
    if log.final is None:
        if log.problems:
            warnings.append(f"{run.log_path}: malformed log ({'; '.join(log.problems[:3])}); left out")
        else:
            where = f" (stopped at epoch {log.last_epoch}/{log.max_epoch})" if log.last_epoch else ""
            warnings.append(f"{run.log_path}: unfinished run, no final {keyword}{where}; left out")
        return None
    if keyword not in log.final:
        detail = f" ({'; '.join(log.problems[:3])})" if log.problems else ""
        warnings.append(
            f"{run.log_path}: malformed log, final result has no readable '* {keyword}' line"
            f"{detail}; left out"
        )
        return None
    if log.problems:
        warnings.append(f"{run.log_path}: malformed lines ({'; '.join(log.problems[:3])}); final result used")
    return log.final[keyword]


def seed_values(runs: Iterable[Run], keyword: str, warnings: list[str]) -> dict[Optional[int], float]:
    out: dict[Optional[int], float] = {}
    for r in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0)):
        v = run_value(r, keyword, warnings)
        if v is not None:
            out[r.seed] = v
    return out


class SeedGrid:
    """values[(method_key, dataset)] -> {seed: value}; expected seeds shared by the table."""

    def __init__(self, expected: Optional[Sequence[int]]) -> None:
        self.cells: dict[tuple, dict[Optional[int], float]] = {}
        self.expected = set(expected) if expected else None

    def set(self, key: tuple, values: dict[Optional[int], float]) -> None:
        self.cells[key] = values

    def finalize_expected(self, seen_seeds: set) -> None:
        if self.expected is None:
            self.expected = {s for s in seen_seeds if s is not None}

    def stat(self, key: tuple, ci95: bool, trainer: str) -> Optional[Stat]:
        vals = self.cells.get(key)
        if not vals:
            return None
        seeds = sorted(vals, key=lambda s: -1 if s is None else s)
        st = summarize([vals[s] for s in seeds], ci95=ci95, seeds=seeds)
        if not is_zeroshot(trainer) and self.expected:
            st.complete = self.expected.issubset({s for s in seeds if s is not None})
        return st


def missing_reason(st: Optional[Stat], expected: Optional[set]) -> str:
    if st is None:
        return "no result"
    miss = sorted((expected or set()) - set(st.seeds))
    return f"missing seed(s) {', '.join(map(str, miss))}" if miss else "incomplete"


def size_cell(runs: list[Run], warnings: list[str], label: str, trainer: str = "") -> str:
    if is_zeroshot(trainer):
        return format_kb(0)  # zero-shot CLIP learns nothing
    sizes: list[int] = []
    problems: list[str] = []
    for r in runs:
        info, problem = run_size(r.path, r.trainer)
        if info is not None:
            sizes.append(info.payload_bytes)
        elif problem:
            problems.append(problem)
    if not sizes:
        if problems:
            warnings.append(
                f"Size of {label}: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        return "-"
    lo, hi = min(sizes), max(sizes)
    if lo == hi:
        return format_kb(lo)
    return f"{format_kb(lo)}-{format_kb(hi)}"


def average_datasets(
    methods: list[Method],
    datasets: list[str],
    complete: dict[tuple, bool],
    present: dict[tuple, bool],
    reasons: dict[tuple, str],
    warnings: list[str],
    what: str,
) -> list[str]:
    """Datasets complete for every method; a warning for each one left out."""
    keep = []
    for d in datasets:
        if all(complete.get((m.key, d), False) for m in methods):
            keep.append(d)
            continue
        have = [m.label for m in methods if present.get((m.key, d), False)]
        if len(methods) > 1 and len(have) == 1:
            warnings.append(
                f"{what}: dataset {dataset_label(d)} present for {have[0]} only; left out of averages"
            )
        else:
            bad = [
                f"{m.label}: {reasons.get((m.key, d), 'no result')}"
                for m in methods
                if not complete.get((m.key, d), False)
            ]
            warnings.append(
                f"{what}: dataset {dataset_label(d)} incomplete ({'; '.join(bad)}); left out of averages"
            )
    return keep


def seeds_text(expected: Optional[set]) -> str:
    if not expected:
        return "one run"
    return f"{len(expected)} seed(s) ({', '.join(map(str, sorted(expected)))})"


def spread_text(ci95: bool) -> str:
    return "95% CI (Student t)" if ci95 else "std"
