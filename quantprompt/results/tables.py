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
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from .aggregate import Stat, harmonic_mean, mean, summarize
from .sizes import format_kb, run_size
from .tree import Run, is_zeroshot, scan

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

FORMATS = ("terminal", "github", "latex", "csv")
SETTINGS = ("auto", "base2new", "dg", "xd", "fewshot")

# canonical key -> (label, short label used in transfer tables)
_DATASETS = {
    "imagenet": ("ImageNet", "ImageNet"),
    "caltech101": ("Caltech101", "Caltech101"),
    "oxford_pets": ("OxfordPets", "Pets"),
    "stanford_cars": ("StanfordCars", "Cars"),
    "oxford_flowers": ("Flowers102", "Flowers"),
    "food101": ("Food101", "Food101"),
    "fgvc_aircraft": ("FGVCAircraft", "Aircraft"),
    "sun397": ("SUN397", "SUN397"),
    "dtd": ("DTD", "DTD"),
    "eurosat": ("EuroSAT", "EuroSAT"),
    "ucf101": ("UCF101", "UCF101"),
    "imagenetv2": ("ImageNet-V2", "-V2"),
    "imagenet_sketch": ("ImageNet-Sketch", "-Sketch"),
    "imagenet_a": ("ImageNet-A", "-A"),
    "imagenet_r": ("ImageNet-R", "-R"),
}
_ALIASES = {
    "oxfordpets": "oxford_pets",
    "pets": "oxford_pets",
    "stanfordcars": "stanford_cars",
    "cars": "stanford_cars",
    "oxfordflowers": "oxford_flowers",
    "flowers102": "oxford_flowers",
    "flowers": "oxford_flowers",
    "fgvcaircraft": "fgvc_aircraft",
    "aircraft": "fgvc_aircraft",
    "describabletextures": "dtd",
    "imagenet_v2": "imagenetv2",
    "imagenetsketch": "imagenet_sketch",
    "imageneta": "imagenet_a",
    "imagenetr": "imagenet_r",
    "sun": "sun397",
}
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SOURCE = "imagenet"
_METHOD_ORDER = [
    "zeroshotclip",
    "zsclip",
    "clip",
    "coop",
    "noisecoop",
    "cocoop",
    "qcoop",
    "qcocoop",
    "maple",
    "qmaple",
    "p4q",
]


def dataset_key(name: str) -> str:
    """Folder or class name of a dataset -> canonical key (``Caltech101`` and ``caltech101`` agree)."""
    k = name.strip().lower().replace("-", "_")
    k = _ALIASES.get(k, _ALIASES.get(k.replace("_", ""), k))
    return k


def dataset_label(key: str, short: bool = False) -> str:
    if key in _DATASETS:
        return _DATASETS[key][1 if short else 0]
    return key


def _dataset_sort(keys: Iterable[str]) -> list[str]:
    order = list(_DATASETS)
    return sorted(set(keys), key=lambda k: (order.index(k) if k in order else len(order), k))


def method_display(trainer: str) -> str:
    return "CLIP" if is_zeroshot(trainer) else trainer


@dataclass
class Table:
    """A rendered-agnostic table: cells are str, float, Stat or None (shown as '-')."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""
    spread: str = "std"  # what "±" means in cells: "std" | "95% CI (Student t)"


@dataclass
class Report:
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: numbers behind the figures: ``data["fewshot"] = {"shots": [...], "curves": {label: {shots: acc}}}``
    data: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# collecting values


@dataclass
class _Method:
    trainer: str
    cfg: str
    label: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.trainer, self.cfg)


def _method_sort_key(m: _Method) -> tuple:
    t = m.trainer.lower()
    return (_METHOD_ORDER.index(t) if t in _METHOD_ORDER else len(_METHOD_ORDER), t, m.cfg)


def _label_methods(methods: Iterable[_Method]) -> list[_Method]:
    methods = sorted({m.key: m for m in methods}.values(), key=_method_sort_key)
    per_trainer = Counter(m.trainer for m in methods)
    for m in methods:
        name = method_display(m.trainer)
        m.label = name if per_trainer[m.trainer] == 1 else f"{name} ({m.cfg})"
    return methods


def _run_value(run: Run, keyword: str, warnings: list[str]) -> Optional[float]:
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


def _seed_values(runs: Iterable[Run], keyword: str, warnings: list[str]) -> dict[Optional[int], float]:
    out: dict[Optional[int], float] = {}
    for r in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0)):
        v = _run_value(r, keyword, warnings)
        if v is not None:
            out[r.seed] = v
    return out


class _Grid:
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


def _missing(st: Optional[Stat], expected: Optional[set]) -> str:
    if st is None:
        return "no result"
    miss = sorted((expected or set()) - set(st.seeds))
    return f"missing seed(s) {', '.join(map(str, miss))}" if miss else "incomplete"


def _size_cell(runs: list[Run], warnings: list[str], label: str, trainer: str = "") -> str:
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


def _average_datasets(
    methods: list[_Method],
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


def _seeds_text(expected: Optional[set]) -> str:
    if not expected:
        return "one run"
    return f"{len(expected)} seed(s) ({', '.join(map(str, sorted(expected)))})"


def _spread_text(ci95: bool) -> str:
    return "95% CI (Student t)" if ci95 else "std"


# ----------------------------------------------------------------------------------------------------------
# base-to-new


def _base2new(
    runs: list[Run],
    keyword: str,
    ci95: bool,
    seeds: Optional[Sequence[int]],
    sizes: bool,
    layout: str,
    warnings: list[str],
) -> list[Table]:
    by: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        by[(r.trainer, r.cfg, dataset_key(r.dataset), r.phase)].append(r)
    unknown_phases = sorted({r.phase for r in runs} - {"train_base", "test_base", "test_new"})
    for ph in unknown_phases:
        warnings.append(f"base2new: phase folder '{ph}' is not train_base, test_base or test_new; ignored")
    methods = _label_methods(_Method(t, c) for (t, c, _, _) in by)
    datasets = _dataset_sort(d for (_, _, d, _) in by)
    base, new = _Grid(seeds), _Grid(seeds)
    seen: set = set()
    for m in methods:
        for d in datasets:
            base_phase = "test_base" if by.get((m.trainer, m.cfg, d, "test_base")) else "train_base"
            bvals = _seed_values(by.get((m.trainer, m.cfg, d, base_phase), []), keyword, warnings)
            nvals = _seed_values(by.get((m.trainer, m.cfg, d, "test_new"), []), keyword, warnings)
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
                    why.append("base " + _missing(b, base.expected))
                if n is None or not n.complete:
                    why.append("new " + _missing(n, base.expected))
                reasons[(m.key, d)] = ", ".join(why)
    avg_ds = _average_datasets(
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
        m.key: _size_cell(
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
        f"Accuracy (%) on base and new classes, mean over {_seeds_text(base.expected)}"
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


# ----------------------------------------------------------------------------------------------------------
# domain generalization and cross-dataset transfer


def _transfer(
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

    def wanted(d: str) -> bool:
        return (d in DG_TARGETS) if is_dg else (d not in DG_TARGETS and d != SOURCE)

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
    methods = _label_methods(_Method(t, c) for (t, c) in method_keys)
    all_targets = _dataset_sort(d for (_, _, d) in list(targets_by) + list(zs_by) if d != SOURCE)
    if not is_dg:
        all_targets = [d for d in _dataset_sort(list(_DATASETS)) if d in all_targets] + [
            d for d in all_targets if d not in _DATASETS
        ]
    grid = _Grid(seeds)
    seen: set = set()
    for m in methods:
        src_runs = (
            source_by.get(m.key)
            or targets_by.get((m.trainer, m.cfg, SOURCE), [])
            or zs_by.get((m.trainer, m.cfg, SOURCE), [])
        )
        vals = _seed_values(src_runs, keyword, warnings)
        grid.set((m.key, SOURCE), vals)
        seen |= set(vals)
        for d in all_targets:
            vals = _seed_values(
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
    reasons = {k: _missing(v, grid.expected) for k, v in stats.items()}
    what = "domain generalization" if is_dg else "cross-dataset"
    avg_ds = _average_datasets(methods, all_targets, complete, present, reasons, warnings, what)
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
        size = _size_cell(source_by.get(m.key, []), warnings, m.label, m.trainer) if sizes else None
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
        f"{_seeds_text(grid.expected)}. Average over the {len(avg_ds)} target "
        f"dataset(s) ({', '.join(dataset_label(d) for d in avg_ds) or 'none'}), source excluded."
    )
    return Table(title, headers, rows, caption)


# ----------------------------------------------------------------------------------------------------------
# few-shot


_SHOTS_TAG_RE = re.compile(r"_\d+shots")


def _fewshot(
    runs: list[Run],
    zs_runs: list[Run],
    keyword: str,
    ci95: bool,
    seeds: Optional[Sequence[int]],
    sizes: bool,
    warnings: list[str],
    data: dict[str, Any],
) -> list[Table]:
    # A method is (trainer, variant): CoOp's few-shot scripts pick a different config per number of shots
    # (e.g. rn50_ep50 for 1-2 shots, rn50 for 16) under one variant folder (nctx16_cscFalse_ctpend). The
    # config name joins the key only for a trainer that has two configs for the same variant, dataset and
    # shots.
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
    shots_list = sorted({s for (_, _, _, s) in by if s is not None})
    zs_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in zs_runs:
        zs_by[(r.trainer, r.cfg, dataset_key(r.dataset))].append(r)
    methods = _label_methods([_Method(t, c) for (t, c, _, _) in by] + [_Method(t, c) for (t, c, _) in zs_by])
    tables: list[Table] = []
    summary: dict[tuple, dict[int, Optional[float]]] = defaultdict(dict)
    summary_ds: dict[int, list[str]] = {}
    for shots in shots_list:
        datasets = _dataset_sort(d for (_, _, d, s) in by if s == shots)
        grid = _Grid(seeds)
        seen: set = set()
        for m in methods:
            for d in datasets:
                src = (
                    zs_by.get((m.trainer, m.cfg, d), [])
                    if is_zeroshot(m.trainer)
                    else by.get((m.trainer, m.cfg, d, shots), [])
                )
                vals = _seed_values(src, keyword, warnings) if src else {}
                grid.set((m.key, d), vals)
                seen |= set(vals)
        grid.finalize_expected(seen)
        stats = {(m.key, d): grid.stat((m.key, d), ci95, m.trainer) for m in methods for d in datasets}
        present = {k: v is not None for k, v in stats.items()}
        complete = {k: v is not None and v.complete for k, v in stats.items()}
        reasons = {k: _missing(v, grid.expected) for k, v in stats.items()}
        shot_methods = [m for m in methods if any(present[(m.key, d)] for d in datasets)]
        avg_ds = _average_datasets(
            shot_methods, datasets, complete, present, reasons, warnings, f"few-shot ({shots} shots)"
        )
        summary_ds[shots] = avg_ds
        rows = []
        for m in shot_methods:
            average = mean([stats[(m.key, d)].mean for d in avg_ds]) if avg_ds else None  # type: ignore
            summary[m.key][shots] = average
            size = None
            if sizes:
                size = _size_cell(
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
            f"{_seeds_text(grid.expected)}. Average over {len(avg_ds)} dataset(s)."
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


# ----------------------------------------------------------------------------------------------------------


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
        report.tables += _base2new(by_setting["base2new"], keyword, ci95, seeds, sizes, layout, w)
    for kind in ("dg", "xd"):
        if kind in want and by_setting["evaluation"]:
            t = _transfer(
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
        report.tables += _fewshot(
            fs_runs, by_setting["zeroshot"], keyword, ci95, seeds, sizes, w, report.data
        )
    for t in report.tables:
        t.spread = _spread_text(ci95)
    if not report.tables:
        found = ", ".join(f"{k}: {len(v)}" for k, v in sorted(by_setting.items())) or "no runs"
        where = source if isinstance(source, (str, Path)) else "the given runs"
        w.append(f"no table for setting '{setting}' ({found} found under {where})")
    return report


# ----------------------------------------------------------------------------------------------------------
# rendering


def _fmt(cell: Any, decimals: int, show_spread: bool, missing: str = "-") -> str:
    if cell is None:
        return missing
    if isinstance(cell, Stat):
        text = f"{cell.mean:.{decimals}f}"
        if show_spread and cell.spread is not None:
            text += f" ± {cell.spread:.{decimals}f}"
        if not cell.complete:
            text += f" (n={cell.n})"
        return text
    if isinstance(cell, float):
        return f"{cell:.{decimals}f}"
    return str(cell)


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("±", r"$\pm$"),
        ("·", r"$\cdot$"),
    ):
        text = text.replace(a, b)
    return text


def _latex_tabular(headers: list[str], cells: list[list[str]]) -> str:
    """booktabs tabular; cells are escaped here (bold marks from ``bold_best`` are kept)."""

    def esc(text: str) -> str:
        if text.startswith(_BOLD[0]) and text.endswith(_BOLD[1]):
            return "\\textbf{" + _latex_escape(text[len(_BOLD[0]) : -len(_BOLD[1])]) + "}"
        return _latex_escape(text)

    lines = ["\\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", "\\toprule"]
    lines.append(" & ".join(_latex_escape(h) for h in headers) + " \\\\")
    lines.append("\\midrule")
    for row in cells:
        lines.append(" & ".join(esc(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


_BOLD = ("\x00B<", ">B\x00")  # placeholder around best cells, turned into **x** or \textbf{x}


def _best_cells(rows: list[list[Any]]) -> set[tuple[int, int]]:
    """(row, column) of the highest numeric value of each column (ties: all of them)."""
    best: set[tuple[int, int]] = set()
    n_cols = max((len(r) for r in rows), default=0)
    for j in range(1, n_cols):
        vals = {}
        for i, row in enumerate(rows):
            c = row[j] if j < len(row) else None
            v = c.mean if isinstance(c, Stat) else c if isinstance(c, float) else None
            if v is not None:
                vals[i] = v
        if len(vals) > 1:
            top = max(vals.values())
            best |= {(i, j) for i, v in vals.items() if v == top}
    return best


def render(
    report: Report,
    fmt: str = "terminal",
    decimals: int = 2,
    show_spread: bool = False,
    bold_best: bool = False,
) -> str:
    """Tables and the warnings block as text in one of ``FORMATS``.

    ``bold_best``: the highest value of each column in bold (GitHub ``**x**``, LaTeX ``\\textbf``), as the papers
    mark the best method; ignored for terminal and csv.

    csv: one block per table (a ``# title`` line, a header row, the rows; blocks separated by a blank line);
    warnings are then left to the caller (the CLI prints them to stderr). LaTeX: booktabs tables in ``table``
    environments with the caption; warnings as ``%`` comments.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    from tabulate import tabulate

    out: list[str] = []
    for t in report.tables:
        cells = [[_fmt(c, decimals, show_spread, "" if fmt == "csv" else "-") for c in row] for row in t.rows]
        if bold_best and fmt in ("github", "latex"):
            for i, j in _best_cells(t.rows):
                cells[i][j] = _BOLD[0] + cells[i][j] + _BOLD[1]
            if fmt == "github":
                cells = [[c.replace(_BOLD[0], "**").replace(_BOLD[1], "**") for c in row] for row in cells]
        caption = t.caption + (f" Cells: mean ± {t.spread}." if show_spread else "")
        if fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([f"# {t.title}"])
            writer.writerow(t.headers)
            writer.writerows(cells)
            out.append(buf.getvalue())
        elif fmt == "latex":
            body = _latex_tabular(t.headers, cells)
            out.append(
                "\\begin{table}[t]\n\\centering\n\\caption{"
                + _latex_escape(t.title)
                + ". "
                + _latex_escape(caption)
                + "}\n"
                + body
                + "\\end{table}\n"
            )
        elif fmt == "github":
            body = tabulate(cells, headers=t.headers, tablefmt="github", disable_numparse=True)
            out.append(f"**{t.title}**\n\n{body}\n\n_{caption}_\n")
        else:
            body = tabulate(cells, headers=t.headers, tablefmt="simple", disable_numparse=True)
            out.append(f"{t.title}\n{'=' * len(t.title)}\n{body}\n{caption}\n")
    if report.warnings and fmt != "csv":
        if fmt == "latex":
            out.append("% Warnings:\n" + "\n".join(f"% - {w}" for w in report.warnings) + "\n")
        elif fmt == "github":
            out.append("> **Warnings**\n>\n" + "\n".join(f"> - {w}" for w in report.warnings) + "\n")
        else:
            out.append("Warnings:\n" + "\n".join(f"  - {w}" for w in report.warnings) + "\n")
    return "\n".join(out)
