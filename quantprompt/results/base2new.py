"""Base-to-new tables (QPrompt Table 1, CoCoOp Table 1).

A summary ``Method | Size | Base | New | H`` averaged over the datasets, then Base, New and H per dataset
(``layout="paper"``), or CoCoOp's one small table per dataset (``layout="per-dataset"``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

from .aggregate import Stat, harmonic_mean, mean
from .collect import SeedGrid, average_datasets, missing_reason, seed_values, seeds_text, size_cell
from .names import Method, dataset_key, dataset_label, dataset_sort, label_methods
from .report import Table
from .tree import Run

__all__ = ["base2new_tables", "group_base2new", "base_phase"]

PHASES = ("train_base", "test_base", "test_new")


def group_base2new(runs: list[Run], warnings: list[str]) -> dict[tuple, list[Run]]:
    """(trainer, cfg, dataset key, phase) -> runs; a phase folder that is none of ``PHASES`` is a warning."""
    by: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        by[(r.trainer, r.cfg, dataset_key(r.dataset), r.phase)].append(r)
    for ph in sorted({r.phase for r in runs} - set(PHASES)):
        warnings.append(f"base2new: phase folder '{ph}' is not train_base, test_base or test_new; ignored")
    return by


def base_phase(by: dict[tuple, list[Run]], trainer: str, cfg: str, dataset: str) -> str:
    """Where a method's base accuracy on a dataset comes from: ``test_base`` (MaPLe's reproduce script) when
    it exists, else the final test of ``train_base``."""
    return "test_base" if by.get((trainer, cfg, dataset, "test_base")) else "train_base"


def base2new_tables(
    runs: list[Run],
    keyword: str,
    ci95: bool,
    seeds: Optional[Sequence[int]],
    sizes: bool,
    layout: str,
    warnings: list[str],
) -> list[Table]:
    by = group_base2new(runs, warnings)
    methods = label_methods(Method(t, c) for (t, c, _, _) in by)
    datasets = dataset_sort(d for (_, _, d, _) in by)
    base, new = SeedGrid(seeds), SeedGrid(seeds)
    seen: set = set()
    for m in methods:
        for d in datasets:
            phase = base_phase(by, m.trainer, m.cfg, d)
            bvals = seed_values(by.get((m.trainer, m.cfg, d, phase), []), keyword, warnings)
            nvals = seed_values(by.get((m.trainer, m.cfg, d, "test_new"), []), keyword, warnings)
            base.set((m.key, d), bvals)
            new.set((m.key, d), nvals)
            seen |= set(bvals) | set(nvals)
    base.finalize_expected(seen)
    new.expected = base.expected
    stats: dict[tuple, tuple[Optional[Stat], Optional[Stat]]] = {}
    complete, present, reasons = {}, {}, {}
    for m in methods:
        for d in datasets:
            b, n = base.stat((m.key, d), ci95, m.trainer), new.stat((m.key, d), ci95, m.trainer)
            stats[(m.key, d)] = (b, n)
            present[(m.key, d)] = b is not None or n is not None
            complete[(m.key, d)] = b is not None and n is not None and b.complete and n.complete
            if not complete[(m.key, d)] and present[(m.key, d)]:
                why = []
                if b is None or not b.complete:
                    why.append("base " + missing_reason(b, base.expected))
                if n is None or not n.complete:
                    why.append("new " + missing_reason(n, base.expected))
                reasons[(m.key, d)] = ", ".join(why)
    avg_ds = average_datasets(
        methods,
        [d for d in datasets if any(present.get((m.key, d)) for m in methods)],
        complete,
        present,
        reasons,
        warnings,
        "base2new",
    )
    shown = [d for d in datasets if any(present.get((m.key, d)) for m in methods)]

    def h(b: Optional[Stat], n: Optional[Stat]) -> Optional[float]:
        return harmonic_mean(b.mean, n.mean) if b is not None and n is not None else None

    avg: dict[tuple, tuple[Optional[float], Optional[float], Optional[float]]] = {}
    for m in methods:
        if avg_ds:
            bm = mean([stats[(m.key, d)][0].mean for d in avg_ds])  # type: ignore[union-attr]
            nm = mean([stats[(m.key, d)][1].mean for d in avg_ds])  # type: ignore[union-attr]
            avg[m.key] = (bm, nm, harmonic_mean(bm, nm))
        else:
            avg[m.key] = (None, None, None)
    size_col = {
        m.key: size_cell(
            [r for (t, c, _, p), rs in by.items() if (t, c) == m.key and p == "train_base" for r in rs],
            warnings,
            m.label,
            m.trainer,
        )
        if sizes
        else None
        for m in methods
    }
    avg_names = ", ".join(dataset_label(d) for d in avg_ds) or "none"
    common = (
        f"Accuracy (%) on base and new classes, mean over {seeds_text(base.expected)}"
        ". H = 2·B·N/(B+N) from the seed-mean accuracies."
    )
    summary_caption = (
        f"{common} Average over {len(avg_ds)} dataset(s) ({avg_names}); the average H is the "
        "harmonic mean of the averaged base and new accuracies (as in CoCoOp/MaPLe/QPrompt), "
        "not the mean of per-dataset H."
    )
    tables: list[Table] = []
    headers = ["Method"] + (["Size"] if sizes else []) + ["Base", "New", "H"]
    rows = []
    for m in methods:
        rows.append([m.label] + ([size_col[m.key]] if sizes else []) + list(avg[m.key]))
    tables.append(
        Table(
            f"Base-to-new generalization: average over {len(avg_ds)} datasets", headers, rows, summary_caption
        )
    )
    if layout == "per-dataset":
        for d in shown:
            rows = []
            for m in methods:
                b, n = stats[(m.key, d)]
                rows.append([m.label, b, n, h(b, n)])
            tables.append(
                Table(
                    f"Base-to-new generalization: {dataset_label(d)}",
                    ["Method", "Base", "New", "H"],
                    rows,
                    common,
                )
            )
        return tables
    ds_headers = [dataset_label(d) for d in shown] + ["Average"]
    for idx, name in ((0, "Base"), (1, "New")):
        rows = []
        for m in methods:
            rows.append([m.label] + [stats[(m.key, d)][idx] for d in shown] + [avg[m.key][idx]])
        tables.append(
            Table(
                f"Base-to-new generalization: {name} accuracy per dataset",
                ["Method"] + ds_headers,
                rows,
                f"{common} Average over {len(avg_ds)} dataset(s) ({avg_names}).",
            )
        )
    rows = []
    for m in methods:
        rows.append([m.label] + [h(*stats[(m.key, d)]) for d in shown] + [avg[m.key][2]])
    tables.append(
        Table("Base-to-new generalization: H per dataset", ["Method"] + ds_headers, rows, summary_caption)
    )
    return tables
