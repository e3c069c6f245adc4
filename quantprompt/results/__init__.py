"""Results: evaluation logs -> seed-averaged paper-like tables, storage sizes, figures.

Light at import (no torch, no matplotlib): ``plots`` imports matplotlib when used, ``sizes`` imports torch
only to read checkpoints.

>>> from quantprompt.results import build_report, render
>>> print(render(build_report("output", setting="base2new"), fmt="github"))
"""

from __future__ import annotations

from .aggregate import Stat, harmonic_mean, summarize
from .comparison import compare
from .logs import EvalBlock, LogInfo, parse_log, parse_log_text
from .paired import (
    Comparison,
    MethodComparison,
    PairedStat,
    UnitResult,
    holm,
    holm_intervals,
    pair_runs,
    paired_interval,
    verdict,
)
from .sizes import SizeInfo, format_kb, run_size
from .tables import FORMATS, SETTINGS, Report, Table, build_report, render
from .tree import Run, scan

__all__ = [
    "Comparison",
    "MethodComparison",
    "PairedStat",
    "UnitResult",
    "holm",
    "holm_intervals",
    "pair_runs",
    "paired_interval",
    "verdict",
    "EvalBlock",
    "FORMATS",
    "LogInfo",
    "Report",
    "Run",
    "SETTINGS",
    "SizeInfo",
    "Stat",
    "Table",
    "build_report",
    "compare",
    "format_kb",
    "harmonic_mean",
    "parse_log",
    "parse_log_text",
    "render",
    "run_size",
    "scan",
    "summarize",
]
