"""Paper-like tables from an output tree: rows are methods, columns datasets plus an average.

* base-to-new (QPrompt Table 1, CoCoOp Table 1): a summary ``Method | Size | Base | New | H`` averaged over
  the datasets, then Base, New and H per dataset (``layout="paper"``), or CoCoOp's one small table per dataset
  (``layout="per-dataset"``).
* domain generalization (Table 2) and cross-dataset transfer (Table 3): ``Method | Size | ImageNet (source) |
  targets... | Average`` where the average is over the targets.
* few-shot: one table per number of shots, plus the average over datasets per shots (the data of Fig. 5).

Incomplete data never raises: each problem becomes a line of :attr:`Report.warnings`, and a dataset that is
not complete for every method of a table (missing seeds, unfinished or malformed runs, present for one method
only) is shown where it exists but left out of every method's average, so averages always compare the same
datasets.

The work is split by job: :mod:`.names` (dataset and method names), :mod:`.collect` (runs -> cells),
:mod:`.base2new`, :mod:`.transfer` and :mod:`.fewshot` (one setting's tables each), :mod:`.rendering` (text).
This module picks the builders for a setting and keeps the names it always exported.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence, Union

from .base2new import base2new_tables
from .collect import spread_text
from .fewshot import fewshot_tables
from .names import dataset_key, dataset_label, method_display
from .rendering import FORMATS, render
from .report import Report, Table
from .transfer import transfer_table
from .tree import Run, scan

__all__ = [
    "Table",
    "Report",
    "build_report",
    "render",
    "FORMATS",
    "SETTINGS",
    "dataset_key",
    "dataset_label",
    "method_display",
]

SETTINGS = ("auto", "base2new", "dg", "xd", "fewshot")


def build_report(
    source: Union[str, Path, Sequence[Run]],
    setting: str = "auto",
    keyword: str = "accuracy",
    ci95: bool = False,
    seeds: Optional[Sequence[int]] = None,
    sizes: bool = True,
    layout: str = "paper",
) -> Report:
    """Scan a tree (or take runs) and build the tables of ``setting`` ("auto": every setting found)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r} is not one of {', '.join(SETTINGS)}")
    if layout not in ("paper", "per-dataset"):
        raise ValueError(f"layout={layout!r} is not one of paper, per-dataset")
    report = Report()
    if isinstance(source, (str, Path)):
        runs, report.warnings = scan(source)
    else:
        runs = list(source)
    by_setting: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_setting[r.setting].append(r)
    w = report.warnings
    want = {setting} if setting != "auto" else {"base2new", "dg", "xd", "fewshot"}
    if "base2new" in want and by_setting["base2new"]:
        report.tables += base2new_tables(by_setting["base2new"], keyword, ci95, seeds, sizes, layout, w)
    for kind in ("dg", "xd"):
        if kind in want and by_setting["evaluation"]:
            t = transfer_table(
                kind,
                by_setting["evaluation"],
                by_setting["train"],
                by_setting["zeroshot"],
                keyword,
                ci95,
                seeds,
                sizes,
                w,
            )
            if t is not None:
                report.tables.append(t)
    fs_runs = by_setting["fewshot"] + (
        by_setting["train"] if setting == "fewshot" or not by_setting["evaluation"] else []
    )
    if "fewshot" in want and fs_runs:
        report.tables += fewshot_tables(
            fs_runs, by_setting["zeroshot"], keyword, ci95, seeds, sizes, w, report.data
        )
    for t in report.tables:
        t.spread = spread_text(ci95)
    if not report.tables:
        found = ", ".join(f"{k}: {len(v)}" for k, v in sorted(by_setting.items())) or "no runs"
        where = source if isinstance(source, (str, Path)) else "the given runs"
        w.append(f"no table for setting '{setting}' ({found} found under {where})")
    return report
