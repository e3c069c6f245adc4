"""Paired comparisons of every method against a baseline on an output tree (``parse_test_res.py --compare``).

Units and metrics per setting (a unit is what two runs must share to be a pair):

* base-to-new: unit (dataset, shots, seed); metrics ``Base``, ``New`` and ``H`` (H of that seed's base and new
  accuracies, so the H difference is paired too).
* few-shot: unit (dataset, shots, seed); one metric per number of shots, ``"<K> shots"`` (the units with K
  shots), and ``"all shots"`` (every unit) when the tree has more than one K.
* cross-dataset (xd) and domain generalization (dg): unit (source dataset, shots, seed); metrics the source
  accuracy ``"<source> (source)"``, each target's accuracy (its label, e.g. ``ImageNet-V2``) and ``Average``:
  the mean over the targets every method of the table was evaluated on (a target left out is a warning).

A method is a row of the tables (trainer and config, labelled as the tables label them). Zero-shot CLIP learns
nothing and its result does not depend on the seed: a zero-shot method with one result per dataset is paired
with every (shots, seed) unit of that dataset; with several seeds it is paired seed by seed like any method.
Units one side lacks (a missing seed, an unfinished run, a dataset only one method ran) are listed in a table
of their own and left out of the differences, never dropped silently. The statistics are
:mod:`quantprompt.results.paired`'s: the Student-t interval over units, optionally Holm-adjusted over every
row of a comparison.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

from .aggregate import harmonic_mean
from .base2new import PHASES, base_phase, group_base2new
from .collect import run_value
from .fewshot import group_fewshot
from .names import SOURCE, Method, dataset_key, dataset_label, label_methods
from .paired import Comparison, PairedStat, UnitResult, check_confidence, holm_intervals, pair_runs
from .report import Report, Table
from .transfer import group_transfer
from .tree import Run, is_zeroshot, scan

__all__ = ["COMPARE_SETTINGS", "RunUnit", "SettingResults", "setting_results", "resolve_method", "compare"]

COMPARE_SETTINGS = ("base2new", "fewshot", "xd", "dg")
_TITLES = {
    "base2new": "base-to-new",
    "fewshot": "few-shot",
    "xd": "cross-dataset",
    "dg": "domain generalization",
}


class RunUnit(NamedTuple):
    """The identity two runs share when they are a pair."""

    dataset: str
    shots: Optional[int]
    seed: Optional[int]

    def __str__(self) -> str:
        parts = [dataset_label(self.dataset)]
        if self.shots is not None:
            parts.append(f"{self.shots} shots")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts)


class SettingResults(NamedTuple):
    """One setting's values per (method label, unit), for :func:`~quantprompt.results.paired.pair_runs`."""

    setting: str
    methods: list[str]  # row labels, in the tables' order
    metrics: list[str]
    results: list[UnitResult]


def _broadcast_zeroshot(
    values: dict[tuple[str, RunUnit], dict[str, float]],
    zeroshot: dict[tuple[str, str], list[tuple[RunUnit, dict[str, float]]]],
    per_unit: Any = None,
) -> None:
    """Pair a zero-shot method's single result on a dataset with every unit other methods have there.

    ``per_unit(unit, values) -> values`` adapts the metrics to the unit (few-shot: the unit's shots)."""
    units_of: dict[str, set[RunUnit]] = defaultdict(set)
    for _, unit in values:
        units_of[unit.dataset].add(unit)
    for (label, dataset), entries in zeroshot.items():
        if len(entries) == 1 and units_of.get(dataset):
            for unit in units_of[dataset]:
                vals = dict(entries[0][1])
                values[(label, unit)] = per_unit(unit, vals) if per_unit else vals
        else:
            for unit, vals in entries:
                values[(label, unit)] = per_unit(unit, vals) if per_unit else vals


def _results(
    setting: str,
    methods: list[Method],
    metrics: list[str],
    values: dict[tuple[str, RunUnit], dict[str, float]],
) -> SettingResults:
    labels = [m.label for m in methods]
    order = {label: i for i, label in enumerate(labels)}
    items = sorted(values.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1]))
    results = [UnitResult(label, unit, vals) for (label, unit), vals in items]
    return SettingResults(setting, labels, metrics, results)


def _base2new(runs: list[Run], keyword: str, warnings: list[str]) -> Optional[SettingResults]:
    by = group_base2new(runs, warnings)
    methods = label_methods(Method(t, c) for (t, c, _, _) in by)
    label = {m.key: m.label for m in methods}
    values: dict[tuple[str, RunUnit], dict[str, float]] = defaultdict(dict)
    zeroshot: dict[tuple[str, str], dict[RunUnit, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (t, c, d, phase), rs in sorted(by.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if phase not in PHASES or (phase != "test_new" and phase != base_phase(by, t, c, d)):
            continue
        metric = "New" if phase == "test_new" else "Base"
        for r in rs:
            v = run_value(r, keyword, warnings)
            if v is None:
                continue
            unit = RunUnit(d, r.shots, r.seed)
            if is_zeroshot(t):
                zeroshot[(label[(t, c)], d)][unit][metric] = v
            else:
                values[(label[(t, c)], unit)][metric] = v
    _broadcast_zeroshot(values, {k: list(v.items()) for k, v in zeroshot.items()})
    for vals in values.values():
        if "Base" in vals and "New" in vals:
            vals["H"] = harmonic_mean(vals["Base"], vals["New"])
    if not values:
        return None
    return _results("base2new", methods, ["Base", "New", "H"], values)


def _fewshot(
    runs: list[Run], zs_runs: list[Run], keyword: str, warnings: list[str]
) -> Optional[SettingResults]:
    by = group_fewshot(runs)
    zs_by: dict[tuple, list[Run]] = defaultdict(list)
    for r in zs_runs:
        zs_by[(r.trainer, r.cfg, dataset_key(r.dataset))].append(r)
    methods = label_methods([Method(t, c) for (t, c, _, _) in by] + [Method(t, c) for (t, c, _) in zs_by])
    label = {m.key: m.label for m in methods}
    shots_list = sorted({s for (_, _, _, s) in by if s is not None})
    if not shots_list:
        return None
    many = len(shots_list) > 1

    def per_unit(unit: RunUnit, vals: dict[str, float]) -> dict[str, float]:
        v = vals["value"]
        return {f"{unit.shots} shots": v, **({"all shots": v} if many else {})}

    values: dict[tuple[str, RunUnit], dict[str, float]] = {}
    for (t, c, d, shots), rs in by.items():
        for r in rs:
            v = run_value(r, keyword, warnings)
            if v is not None:
                unit = RunUnit(d, shots, r.seed)
                values[(label[(t, c)], unit)] = per_unit(unit, {"value": v})
    trained = {unit.dataset for (_, unit) in values}
    zeroshot: dict[tuple[str, str], list[tuple[RunUnit, dict[str, float]]]] = defaultdict(list)
    for (t, c, d), rs in zs_by.items():
        if d not in trained:  # zero-shot has no shots: it pairs only with trained runs of its dataset
            warnings.append(
                f"few-shot: {label[(t, c)]} has a result on {dataset_label(d)}, where no trained method has "
                "one; nothing to pair it with"
            )
            continue
        for r in rs:
            v = run_value(r, keyword, warnings)
            if v is not None:
                zeroshot[(label[(t, c)], d)].append((RunUnit(d, None, r.seed), {"value": v}))
    _broadcast_zeroshot(values, zeroshot, per_unit)
    metrics = [f"{s} shots" for s in shots_list] + (["all shots"] if many else [])
    return _results("fewshot", methods, metrics, values)


def _transfer(
    kind: str,
    eval_runs: list[Run],
    train_runs: list[Run],
    zs_runs: list[Run],
    keyword: str,
    warnings: list[str],
) -> Optional[SettingResults]:
    g = group_transfer(kind, eval_runs, train_runs, zs_runs)
    if g is None:
        return None
    methods = label_methods(Method(t, c) for (t, c) in g.method_keys)
    source_metric = f"{dataset_label(SOURCE)} (source)"
    metric_of = {d: dataset_label(d) for d in g.targets}
    values: dict[tuple[str, RunUnit], dict[str, float]] = defaultdict(dict)
    zeroshot: dict[tuple[str, str], dict[RunUnit, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for m in methods:
        source_runs = g.source_by.get(m.key) or g.targets_by.get((m.trainer, m.cfg, SOURCE), [])
        sources = [(source_metric, r) for r in source_runs]
        sources += [(source_metric, r) for r in g.zs_by.get((m.trainer, m.cfg, SOURCE), [])]
        targets = [
            (metric_of[d], r)
            for d in g.targets
            for r in g.targets_by.get((m.trainer, m.cfg, d), []) + g.zs_by.get((m.trainer, m.cfg, d), [])
        ]
        for metric, r in sources + targets:
            v = run_value(r, keyword, warnings)
            if v is None:
                continue
            unit = RunUnit(SOURCE, r.shots, r.seed)
            if is_zeroshot(m.trainer):
                zeroshot[(m.label, SOURCE)][unit][metric] = v
            else:
                values[(m.label, unit)][metric] = v
    _broadcast_zeroshot(values, {k: list(v.items()) for k, v in zeroshot.items()})
    if not values:
        return None
    what = _TITLES[kind]
    have = {label: set() for label in (m.label for m in methods)}
    for (label, _), vals in values.items():
        have[label] |= set(vals)
    averaged = [d for d in g.targets if all(metric_of[d] in h for h in have.values())]
    for d in g.targets:
        if d not in averaged:
            lacking = [label for label, h in have.items() if metric_of[d] not in h]
            warnings.append(
                f"{what}: target {dataset_label(d)} has no result for {', '.join(lacking)}; left out of the "
                "paired Average"
            )
    for vals in values.values():
        if averaged and all(metric_of[d] in vals for d in averaged):
            vals["Average"] = math.fsum(vals[metric_of[d]] for d in averaged) / len(averaged)
    metrics = [source_metric] + [metric_of[d] for d in g.targets] + (["Average"] if averaged else [])
    return _results(kind, methods, metrics, values)


def setting_results(
    runs: Sequence[Run], setting: str, keyword: str = "accuracy", warnings: Optional[list[str]] = None
) -> Optional[SettingResults]:
    """The per-unit values of one setting's runs (None when the runs hold none of that setting)."""
    if setting not in COMPARE_SETTINGS:
        raise ValueError(f"setting={setting!r} is not one of {', '.join(COMPARE_SETTINGS)}")
    w = warnings if warnings is not None else []
    by_setting: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_setting[r.setting].append(r)
    if setting == "base2new":
        return _base2new(by_setting["base2new"], keyword, w) if by_setting["base2new"] else None
    if setting in ("xd", "dg"):
        if not by_setting["evaluation"]:
            return None
        return _transfer(
            setting, by_setting["evaluation"], by_setting["train"], by_setting["zeroshot"], keyword, w
        )
    fs_runs = by_setting["fewshot"] + (by_setting["train"] if not by_setting["evaluation"] else [])
    return _fewshot(fs_runs, by_setting["zeroshot"], keyword, w) if fs_runs else None


def resolve_method(name: str, labels: Sequence[str]) -> Optional[str]:
    """The row label ``name`` means: the label itself, case aside, or the one label of that trainer
    (``CoOp`` for ``CoOp (vit_b16_ep50)`` when CoOp ran with one config only). None when it means none or
    several."""
    exact = [label for label in labels if label.lower() == name.lower()]
    if len(exact) == 1:
        return exact[0]
    prefix = [label for label in labels if label.lower().startswith(name.lower() + " (")]
    return prefix[0] if len(prefix) == 1 else None


def _holm_adjust(comp: Comparison) -> None:
    keys = [(mc, metric) for mc in comp.methods.values() for metric in comp.metrics if mc.stats[metric]]
    adjusted = holm_intervals([mc.diffs(metric) for mc, metric in keys], comp.confidence)
    for (mc, metric), stat in zip(keys, adjusted):
        mc.stats[metric] = stat


def _excludes(stat: Optional[PairedStat]) -> str:
    if stat is None:
        return "-"
    return {1: "yes (> 0)", -1: "yes (< 0)", 0: "no"}[stat.sign]


def _tables(comp: Comparison, setting: str, holm: bool) -> list[Table]:
    title = _TITLES[setting]
    pct = f"{100 * comp.confidence:g}%"
    headers = ["Method", "Metric", f"Diff vs {comp.baseline}", "CI low", "CI high", "n", "p", "CI excludes 0"]
    rows: list[list[Any]] = []
    for mc in comp.methods.values():
        for metric in comp.metrics:
            s = mc.stats[metric]
            if s is None:
                rows.append([mc.method, metric, None, None, None, 0, None, "-"])
                continue
            p = None if math.isnan(s.p_value) else f"{s.p_value:.3g}"
            rows.append([mc.method, metric, s.mean, s.lo, s.hi, s.n, p, _excludes(s)])
    unit = "(source dataset, shots, seed)" if setting in ("xd", "dg") else "(dataset, shots, seed)"
    unmatched = [(mc, u) for mc in comp.methods.values() for u in mc.unmatched]
    caption = (
        f"Mean over the paired units {unit} of method minus {comp.baseline}, in points; {pct} Student-t "
        "interval over the n units; p: two-sided paired t-test. "
    )
    if holm:
        caption += (
            f"Holm-adjusted over the {sum(1 for r in rows if r[2] is not None)} rows: the row ranked i of m "
            f"by p has the interval at level 1 - alpha/(m - i + 1) (alpha = {1 - comp.confidence:g}), p is "
            "Holm-adjusted, and an interval excludes 0 exactly when Holm rejects. "
        )
    caption += (
        f"{len(unmatched)} unit(s) without a pair, listed below and left out."
        if unmatched
        else "Every unit paired."
    )
    tables = [Table(f"Paired differences against {comp.baseline}: {title}", headers, rows, caption)]
    if unmatched:
        rows = [
            [mc.method, str(u.unit), mc.method if u.side == "method" else comp.baseline, ", ".join(u.metrics)]
            for mc, u in unmatched
        ]
        tables.append(
            Table(
                f"Units without a pair against {comp.baseline}: {title}",
                ["Method", "Unit", "Only in", "Metrics"],
                rows,
                "Results one side has and the other lacks (missing seed, unfinished run, dataset or target "
                "run by one side only); left out of the differences above.",
            )
        )
    return tables


def compare(
    source: Union[str, Path, Sequence[Run]],
    setting: str,
    baseline: str,
    keyword: str = "accuracy",
    confidence: float = 0.95,
    holm: bool = False,
) -> Report:
    """Every method against ``baseline``: tables to :func:`~quantprompt.results.render`, the
    :class:`~quantprompt.results.paired.Comparison` of each setting in ``report.data["compare"][setting]``.

    ``setting``: one of ``COMPARE_SETTINGS`` or ``"auto"`` (each setting the tree holds where the baseline
    ran). An unknown ``baseline`` raises a ValueError whose one line lists the methods found.
    """
    if setting != "auto" and setting not in COMPARE_SETTINGS:
        raise ValueError(f"setting={setting!r} is not one of auto, {', '.join(COMPARE_SETTINGS)}")
    check_confidence(confidence)
    report = Report()
    if isinstance(source, (str, Path)):
        runs, report.warnings = scan(source)
    else:
        runs = list(source)
    wanted = COMPARE_SETTINGS if setting == "auto" else (setting,)
    found: dict[str, SettingResults] = {}
    for s in wanted:
        res = setting_results(runs, s, keyword, report.warnings)
        if res is not None:
            found[s] = res
    where = source if isinstance(source, (str, Path)) else "the given runs"
    if not found:
        raise ValueError(f"no {'' if setting == 'auto' else setting + ' '}runs to compare under {where}")
    chosen = {s: resolve_method(baseline, res.methods) for s, res in found.items()}
    if not any(chosen.values()):
        listing = "; ".join(f"{s}: {', '.join(res.methods)}" for s, res in found.items())
        raise ValueError(f"unknown baseline {baseline!r}; methods found: {listing}")
    report.data["compare"] = {}
    for s, res in found.items():
        if chosen[s] is None:
            report.warnings.append(
                f"{_TITLES[s]}: no method {baseline!r} ({', '.join(res.methods)}); not compared"
            )
            continue
        comp = pair_runs(res.results, chosen[s], res.metrics, confidence)
        if holm:
            _holm_adjust(comp)
            comp.holm = True
        report.data["compare"][s] = comp
        report.tables += _tables(comp, s, holm)
    return report
