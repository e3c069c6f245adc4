"""The study's report: one row per claim (markdown and CSV), the method means behind them, and figures.

Written whole into a temporary name and renamed, so an interrupted study never leaves a half report.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence

from .analysis import ClaimResult, unit_values
from .plan import StudyLayout
from .protocol import Protocol

__all__ = ["verdict_counts", "claims_markdown", "claims_csv", "write_report", "method_means"]

VERDICTS = ("supported", "contradicted", "inconclusive")


def verdict_counts(results: Sequence[ClaimResult]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in results) for v in VERDICTS}


def _num(x: Optional[float], digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:+.{digits}f}"


def _interval(stat: Any) -> str:
    return "-" if stat is None else f"[{_num(stat.lo)}, {_num(stat.hi)}]"


def _units(units: Sequence[tuple]) -> str:
    return "; ".join("/".join(str(x) for x in u) for u in units)


def claims_markdown(results: Sequence[ClaimResult], protocol: Protocol) -> str:
    level = f"{protocol.confidence * 100:g}%"
    adj = "Holm-adjusted " if protocol.multiplicity == "holm" else ""
    lines = [f"| claim | paper | statement | test | method - baseline | mean diff | {adj}{level} CI | "
             f"unadjusted {level} CI | n | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.claim
        metric = c.metric if not c.baseline_metric else f"{c.metric} vs {c.baseline_metric}"
        mean = r.stat.mean if r.stat is not None else None
        lines.append(f"| {c.id} | {c.source} | {c.statement} | {c.test} | {c.method} - {c.baseline} ({metric}) | "
                     f"{_num(mean)} | {_interval(r.adjusted)} | {_interval(r.stat)} | {r.n} | **{r.verdict}** |")
    return "\n".join(lines)


def claims_csv(results: Sequence[ClaimResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["claim", "source", "statement", "setting", "method", "baseline", "metric", "baseline_metric",
                "test", "n", "method_mean", "baseline_mean", "mean_diff", "sd_diff", "ci_lo", "ci_hi",
                "adj_ci_lo", "adj_ci_hi", "p_value", "verdict", "units_only_method", "units_only_baseline"])
    for r in results:
        c, s, a = r.claim, r.stat, r.adjusted
        w.writerow([c.id, c.source, c.statement, c.setting, c.method, c.baseline, c.metric,
                    c.baseline_metric or c.metric, c.test, r.n, r.method_mean, r.baseline_mean,
                    s.mean if s else "", s.sd if s else "", s.lo if s else "", s.hi if s else "",
                    a.lo if a else "", a.hi if a else "", s.p_value if s else "", r.verdict,
                    _units(r.only_method), _units(r.only_baseline)])
    return buf.getvalue()


def method_means(protocol: Protocol, layout: StudyLayout) -> str:
    """Context for the claims: each base-to-new method's mean base / new / H over the units *every* listed
    method has (means over different units would not be comparable), per dataset and averaged."""
    if "base2new" not in {c.setting for c in protocol.claims}:
        return ""
    used = {m for c in protocol.claims if c.setting == "base2new" for m in (c.method, c.baseline)}
    methods = [m for m in protocol.settings["base2new"]["methods"] if m in used]
    vals = {m: {k: unit_values(protocol, layout, "base2new", m, k) for k in ("base", "new", "H")} for m in methods}
    common = set.intersection(*(set(v["H"]) for v in vals.values())) if vals else set()
    if not common:
        return "No unit (dataset, seed) has finished for every base-to-new method yet."
    datasets = sorted({u[0] for u in common})
    head = " | ".join(f"{d} base | {d} new | {d} H" for d in datasets)
    rows = [f"Over the {len(common)} units every method has: {', '.join('/'.join(map(str, u)) for u in sorted(common))}.",
            "", f"| method | {head} | mean H |", "|---" * (2 + 3 * len(datasets)) + "|"]
    for m in methods:
        cells = []
        for d in datasets:
            units = [u for u in common if u[0] == d]
            cells += [f"{sum(vals[m][k][u] for u in units) / len(units):.2f}" for k in ("base", "new", "H")]
        mean_h = sum(vals[m]["H"][u] for u in common) / len(common)
        rows.append(f"| {m} | {' | '.join(cells)} | {mean_h:.2f} |")
    return "\n".join(rows)


def _atomic_write(path: Path, text: str) -> None:
    from quantprompt.atomic import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _figures(results: Sequence[ClaimResult], protocol: Protocol, layout: StudyLayout, folder: Path) -> list[Path]:
    """claims.png (adjusted intervals), curves.png (per-epoch base / new), fewshot.png (accuracy vs shots)."""
    from quantprompt.results.plots import _pyplot, _save, read_per_epoch
    from quantprompt.results.tree import scan

    plt = _pyplot()
    paths: list[Path] = []
    shown = [r for r in results if r.adjusted is not None and r.n]
    if shown:
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(shown) + 1.2))
        colours = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:gray"}
        for i, r in enumerate(shown):
            lo = r.adjusted.lo if math.isfinite(r.adjusted.lo) else r.adjusted.mean
            hi = r.adjusted.hi if math.isfinite(r.adjusted.hi) else r.adjusted.mean
            ax.plot([lo, hi], [i, i], color=colours[r.verdict], lw=2)
            ax.plot([r.adjusted.mean], [i], "o", color=colours[r.verdict])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(shown)), [r.claim.id for r in shown], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("paired difference, method - baseline (accuracy points)")
        ax.set_title("claims: mean and adjusted interval (green supported, red contradicted, grey inconclusive)",
                     fontsize=8)
        paths.append(_save(fig, folder / "claims.png"))

    b2n = protocol.settings.get("base2new", {})
    curve_methods = [m for m in b2n.get("per_epoch", [])
                     if any(m in (c.method, c.baseline) and c.setting == "base2new" for c in protocol.claims)]
    if curve_methods:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
        for m in curve_methods:
            for ax, split in zip(axes, ("base", "new")):
                per_epoch: dict[int, list[float]] = {}
                runs, _ = scan(layout.runs / m)
                for r in runs:  # the units the curve claims read: per-epoch datasets, the protocol's seeds
                    if (r.setting == "base2new" and r.phase == "train_base" and r.shots == protocol.shots
                            and r.dataset in b2n.get("per_epoch_datasets", ()) and r.seed in protocol.seeds):
                        for e, v in read_per_epoch(r.path).get(split, {}).items():
                            per_epoch.setdefault(e, []).append(v)
                if not per_epoch:
                    continue
                es = sorted(per_epoch)
                mean = [sum(per_epoch[e]) / len(per_epoch[e]) for e in es]
                lo = [min(per_epoch[e]) for e in es]
                hi = [max(per_epoch[e]) for e in es]
                line, = ax.plot(es, mean, label=m)
                ax.fill_between(es, lo, hi, color=line.get_color(), alpha=0.12)
        for ax, split in zip(axes, ("base", "new")):
            ax.set_title(f"{split} classes, {', '.join(b2n.get('per_epoch_datasets', ()))} (mean over seeds, "
                         "band: min-max)", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy (%)")
        axes[1].legend(fontsize=7)
        paths.append(_save(fig, folder / "curves.png"))

    fs = protocol.settings.get("fewshot")
    fs_methods = sorted({m for c in protocol.claims if c.setting == "fewshot" for m in (c.method, c.baseline)})
    if fs and fs_methods:
        fig, ax = plt.subplots(figsize=(5, 4))
        for m in fs_methods:
            vals = unit_values(protocol, layout, "fewshot", m, "accuracy")
            ks = [k for k in fs["shots"] if any(u[1] == k for u in vals)]
            if not ks:
                continue
            means = [sum(v for u, v in vals.items() if u[1] == k) / sum(1 for u in vals if u[1] == k) for k in ks]
            ax.plot(ks, means, marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
        paths.append(_save(fig, folder / "fewshot.png"))
    return paths


def write_report(results: Sequence[ClaimResult], protocol: Protocol, layout: StudyLayout, info: dict[str, Any],
                 figures: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``claims.csv`` and the figures under ``<output>/report/``; returns their paths."""
    folder = layout.output / "report"
    counts = verdict_counts(results)
    adj = ("Holm-adjusted (step-down: the claim with the i-th smallest p-value of m gets level alpha/(m-i+1); an "
           "adjusted interval excludes 0 exactly when the Holm-adjusted p-value is below alpha)"
           if protocol.multiplicity == "holm" else "not adjusted for multiplicity")
    unmatched = [r for r in results if r.only_method or r.only_baseline]
    parts = [
        "# Claims study: report",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| verdicts | {counts['supported']} supported, {counts['contradicted']} contradicted, "
        f"{counts['inconclusive']} inconclusive |",
        "",
        "Each row: the paired difference method - baseline over the units both have (base-to-new: dataset x seed; "
        "dg / xd: seed, mean over targets; few-shot: shots x seed), a Student-t interval, " + adj + ". "
        f"Verdicts by the protocol's rule (margin {protocol.margin:g} points for equivalent / noninferior claims).",
        "",
        claims_markdown(results, protocol),
        "",
    ]
    means = method_means(protocol, layout)
    if means:
        parts += ["## Base-to-new means behind the claims", "", means, ""]
    if unmatched:
        parts += ["## Units one side lacks (not paired)", ""]
        parts += [f"- {r.claim.id}: only {r.claim.method}: {_units(r.only_method) or '-'}; only "
                  f"{r.claim.baseline}: {_units(r.only_baseline) or '-'}" for r in unmatched]
        parts.append("")
    parts += ["## Changes to the protocol after seeing quantized results", ""]
    parts += [f"- {c}" for c in protocol.changes] or ["- none"]
    paths = {"markdown": folder / "report.md", "csv": folder / "claims.csv"}
    if figures:
        for p in _figures(results, protocol, layout, folder):
            paths[p.stem] = p
        parts += ["", "## Figures", ""] + [f"![{k}]({p.name})" for k, p in paths.items() if p.suffix == ".png"]
    _atomic_write(paths["csv"], claims_csv(results))
    _atomic_write(paths["markdown"], "\n".join(parts) + "\n")
    return paths
