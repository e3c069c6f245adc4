"""Domain generalization (Table 2) and cross-dataset transfer (Table 3) tables.

``Method | Size | ImageNet (source) | targets... | Average`` where the average is over the targets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

from .aggregate import mean
from .collect import SeedGrid, average_datasets, missing_reason, seed_values, seeds_text, size_cell
from .names import (
    DATASETS,
    DG_TARGETS,
    SOURCE,
    Method,
    dataset_key,
    dataset_label,
    dataset_sort,
    label_methods,
)
from .report import Table
from .tree import Run, is_zeroshot

__all__ = ["transfer_table", "group_transfer", "TransferRuns", "is_target"]


def is_target(kind: str, dataset: str) -> bool:
    """Whether a dataset key is a target of a ``dg`` (ImageNet's variants) or ``xd`` (any other) table."""
    if kind == "dg":
        return dataset in DG_TARGETS
    return dataset not in DG_TARGETS and dataset != SOURCE


@dataclass
class TransferRuns:
    """The runs of one transfer table, grouped: evaluations ``(trainer, cfg, dataset) -> runs`` (the source
    included when it was evaluated), source trainings ``(trainer, cfg) -> runs``, zero-shot runs ``(trainer,
    cfg, dataset) -> runs``; the table's methods and its targets in column order."""

    targets_by: dict[tuple, list[Run]]
    source_by: dict[tuple, list[Run]]
    zs_by: dict[tuple, list[Run]]
    method_keys: set[tuple[str, str]]
    targets: list[str]


def group_transfer(
    kind: str, eval_runs: list[Run], train_runs: list[Run], zs_runs: list[Run]
) -> Optional[TransferRuns]:
    """Group the runs of a ``dg`` or ``xd`` table; None when no method was evaluated on a target of it."""
    is_dg = kind == "dg"

    def wanted(d: str) -> bool:
        return is_target(kind, d)

    targets_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in eval_runs:
        d = dataset_key(r.dataset)
        if wanted(d) or d == SOURCE:
            targets_by[(r.trainer, r.cfg, d)].append(r)
    method_keys = {(t, c) for (t, c, d) in targets_by if d != SOURCE}
    if not method_keys:
        return None
    source_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in train_runs:
        if dataset_key(r.dataset) == SOURCE and (r.trainer, r.cfg) in method_keys:
            source_by[(r.trainer, r.cfg)].append(r)
    zs_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in zs_runs:
        d = dataset_key(r.dataset)
        if wanted(d) or d == SOURCE:
            zs_by[(r.trainer, r.cfg, d)].append(r)
            if wanted(d):  # a zero-shot row only where it has a target of this table
                method_keys.add((r.trainer, r.cfg))
    all_targets = dataset_sort(d for (_, _, d) in list(targets_by) + list(zs_by) if d != SOURCE)
    if not is_dg:
        all_targets = [d for d in dataset_sort(list(DATASETS)) if d in all_targets] + [
            d for d in all_targets if d not in DATASETS
        ]
    return TransferRuns(targets_by, source_by, zs_by, method_keys, all_targets)


def transfer_table(
    kind: str,
    eval_runs: list[Run],
    train_runs: list[Run],
    zs_runs: list[Run],
    keyword: str,
    ci95: bool,
    seeds: Optional[Sequence[int]],
    sizes: bool,
    warnings: list[str],
) -> Optional[Table]:
    is_dg = kind == "dg"
    g = group_transfer(kind, eval_runs, train_runs, zs_runs)
    if g is None:
        return None
    targets_by, source_by, zs_by, all_targets = g.targets_by, g.source_by, g.zs_by, g.targets
    methods = label_methods(Method(t, c) for (t, c) in g.method_keys)
    grid = SeedGrid(seeds)
    seen: set = set()
    for m in methods:
        src_runs = (
            source_by.get(m.key)
            or targets_by.get((m.trainer, m.cfg, SOURCE), [])
            or zs_by.get((m.trainer, m.cfg, SOURCE), [])
        )
        vals = seed_values(src_runs, keyword, warnings)
        grid.set((m.key, SOURCE), vals)
        seen |= set(vals)
        for d in all_targets:
            vals = seed_values(
                targets_by.get((m.trainer, m.cfg, d), []) + zs_by.get((m.trainer, m.cfg, d), []),
                keyword,
                warnings,
            )
            grid.set((m.key, d), vals)
            seen |= set(vals)
    grid.finalize_expected(seen)
    stats = {
        (m.key, d): grid.stat((m.key, d), ci95, m.trainer) for m in methods for d in [SOURCE] + all_targets
    }
    present = {k: v is not None for k, v in stats.items()}
    complete = {k: v is not None and v.complete for k, v in stats.items()}
    reasons = {k: missing_reason(v, grid.expected) for k, v in stats.items()}
    what = "domain generalization" if is_dg else "cross-dataset"
    avg_ds = average_datasets(methods, all_targets, complete, present, reasons, warnings, what)
    for m in methods:
        if not present[(m.key, SOURCE)] and not is_zeroshot(m.trainer):
            warnings.append(
                f"{what}: no source ({dataset_label(SOURCE)}) result for {m.label} (expected "
                f"{SOURCE}/{m.trainer}/{m.cfg}/seed<N>/log.txt)"
            )
    headers = (
        ["Method"]
        + (["Size"] if sizes else [])
        + [f"{dataset_label(SOURCE)} (source)"]
        + [dataset_label(d, short=True) for d in all_targets]
        + ["Average"]
    )
    rows = []
    for m in methods:
        size = size_cell(source_by.get(m.key, []), warnings, m.label, m.trainer) if sizes else None
        average = mean([stats[(m.key, d)].mean for d in avg_ds]) if avg_ds else None  # type: ignore
        rows.append(
            [m.label]
            + ([size] if sizes else [])
            + [stats[(m.key, SOURCE)]]
            + [stats[(m.key, d)] for d in all_targets]
            + [average]
        )
    title = "Domain generalization" if is_dg else "Cross-dataset transfer"
    caption = (
        f"{title}: accuracy (%), trained on {dataset_label(SOURCE)} and evaluated on the targets; mean over "
        f"{seeds_text(grid.expected)}. Average over the {len(avg_ds)} target "
        f"dataset(s) ({', '.join(dataset_label(d) for d in avg_ds) or 'none'}), source excluded."
    )
    return Table(title, headers, rows, caption)
