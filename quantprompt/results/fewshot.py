"""Few-shot tables: one per number of shots, plus the average over datasets per shots (the data of Fig. 5)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Optional, Sequence

from .aggregate import mean
from .collect import SeedGrid, average_datasets, missing_reason, seed_values, seeds_text, size_cell
from .names import Method, dataset_key, dataset_label, dataset_sort, label_methods
from .report import Table
from .tree import Run, is_zeroshot

__all__ = ["fewshot_tables", "group_fewshot"]

_SHOTS_TAG_RE = re.compile(r"_\d+shots")


def group_fewshot(runs: list[Run]) -> dict[tuple, list[Run]]:
    """(trainer, method config key, dataset key, shots) -> runs.

    A method is (trainer, variant): CoOp's few-shot scripts pick a different config per number of shots
    (e.g. rn50_ep50 for 1-2 shots, rn50 for 16) under one variant folder (nctx16_cscFalse_ctpend). The config
    name joins the key only for a trainer that has two configs for the same variant, dataset and shots.
    """

    def variant(r: Run) -> str:
        return r.cfg.split("/", 1)[1] if "/" in r.cfg else ""

    def base_cfg(r: Run) -> str:
        return _SHOTS_TAG_RE.sub("", r.cfg.split("/", 1)[0])

    cfgs_at: dict[tuple, set] = defaultdict(set)
    for r in runs:
        cfgs_at[(r.trainer, variant(r), dataset_key(r.dataset), r.shots)].add(base_cfg(r))
    keep_cfg = {k[0] for k, v in cfgs_at.items() if len(v) > 1}
    by: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        key_cfg = _SHOTS_TAG_RE.sub("", r.cfg) if r.trainer in keep_cfg else variant(r)
        by[(r.trainer, key_cfg, dataset_key(r.dataset), r.shots)].append(r)
    return by


def fewshot_tables(
    runs: list[Run],
    zs_runs: list[Run],
    keyword: str,
    ci95: bool,
    seeds: Optional[Sequence[int]],
    sizes: bool,
    warnings: list[str],
    data: dict[str, Any],
) -> list[Table]:
    by = group_fewshot(runs)
    shots_list = sorted({s for (_, _, _, s) in by if s is not None})
    zs_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in zs_runs:
        zs_by[(r.trainer, r.cfg, dataset_key(r.dataset))].append(r)
    methods = label_methods([Method(t, c) for (t, c, _, _) in by] + [Method(t, c) for (t, c, _) in zs_by])
    tables: list[Table] = []
    summary: dict[tuple, dict[int, Optional[float]]] = defaultdict(dict)
    summary_ds: dict[int, list[str]] = {}
    for shots in shots_list:
        datasets = dataset_sort(d for (_, _, d, s) in by if s == shots)
        grid = SeedGrid(seeds)
        seen: set = set()
        for m in methods:
            for d in datasets:
                src = (
                    zs_by.get((m.trainer, m.cfg, d), [])
                    if is_zeroshot(m.trainer)
                    else by.get((m.trainer, m.cfg, d, shots), [])
                )
                vals = seed_values(src, keyword, warnings) if src else {}
                grid.set((m.key, d), vals)
                seen |= set(vals)
        grid.finalize_expected(seen)
        stats = {(m.key, d): grid.stat((m.key, d), ci95, m.trainer) for m in methods for d in datasets}
        present = {k: v is not None for k, v in stats.items()}
        complete = {k: v is not None and v.complete for k, v in stats.items()}
        reasons = {k: missing_reason(v, grid.expected) for k, v in stats.items()}
        shot_methods = [m for m in methods if any(present[(m.key, d)] for d in datasets)]
        avg_ds = average_datasets(
            shot_methods, datasets, complete, present, reasons, warnings, f"few-shot ({shots} shots)"
        )
        summary_ds[shots] = avg_ds
        rows = []
        for m in shot_methods:
            average = mean([stats[(m.key, d)].mean for d in avg_ds]) if avg_ds else None  # type: ignore
            summary[m.key][shots] = average
            size = None
            if sizes:
                size = size_cell(
                    [r for d in datasets for r in by.get((m.trainer, m.cfg, d, shots), [])][:3],
                    warnings,
                    m.label,
                    m.trainer,
                )
            rows.append(
                [m.label] + ([size] if sizes else []) + [stats[(m.key, d)] for d in datasets] + [average]
            )
        headers = (
            ["Method"] + (["Size"] if sizes else []) + [dataset_label(d) for d in datasets] + ["Average"]
        )
        caption = (
            f"Few-shot learning with {shots} shot(s) per class: accuracy (%), mean over "
            f"{seeds_text(grid.expected)}. Average over {len(avg_ds)} dataset(s)."
        )
        tables.append(Table(f"Few-shot learning: {shots} shots", headers, rows, caption))
    data["fewshot"] = {
        "shots": shots_list,
        "curves": {
            m.label: dict(summary[m.key])
            for m in methods
            if summary.get(m.key) and not is_zeroshot(m.trainer)
        },
        "zeroshot": {
            m.label: [v for v in summary[m.key].values() if v is not None]
            for m in methods
            if summary.get(m.key) and is_zeroshot(m.trainer)
        },
        "datasets": {s: list(summary_ds[s]) for s in shots_list},
    }
    if len(shots_list) > 1:
        rows = [
            [m.label] + [summary[m.key].get(s) for s in shots_list] for m in methods if summary.get(m.key)
        ]
        caption = (
            "Few-shot learning: accuracy (%) averaged over the datasets complete for every method at each "
            "number of shots ("
            + "; ".join(f"{s}: {len(summary_ds[s])}" for s in shots_list)
            + " dataset(s)); the data of the few-shot curves."
        )
        tables.insert(
            0,
            Table(
                "Few-shot learning: average over datasets",
                ["Method"] + [f"{s} shots" for s in shots_list],
                rows,
                caption,
            ),
        )
    return tables
