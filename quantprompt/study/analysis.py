"""From a study's output tree to one verdict per claim: unit values, paired differences, adjusted intervals.

A *unit* is what a pair shares: base-to-new (dataset, seed); dg / xd (seed), the accuracy averaged over the
setting's targets; few-shot (dataset, shots, seed). Zero-shot CLIP learns nothing and samples nothing, so its
one run per dataset stands for every seed. Units only one side has are listed in the report, never dropped
silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .plan import StudyLayout, method_root
from .protocol import Claim, Protocol

__all__ = ["ClaimResult", "unit_values", "analyse", "decide"]

Unit = tuple


def _h(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _epoch_value(curve: dict[int, float], which: str) -> Optional[float]:
    if not curve:
        return None
    epoch = max(curve) if which == "last" else int(which)
    return curve.get(epoch)


def unit_values(protocol: Protocol, layout: StudyLayout, setting: str, method: str, metric: str
                ) -> dict[Unit, float]:
    """``{unit: value}`` of one method's metric in one setting, read from its runs' logs."""
    from quantprompt.results.plots import read_per_epoch
    from quantprompt.results.tree import scan

    m = protocol.methods[method]
    runs, _warnings = scan(method_root(layout, method))
    s = protocol.settings[setting]
    seeds = protocol.seeds
    out: dict[Unit, float] = {}

    def acc(run: Any) -> Optional[float]:
        return run.log.accuracy() if run.log is not None else None

    if setting == "base2new":
        base: dict[Unit, float] = {}
        new: dict[Unit, float] = {}
        curves: dict[Unit, dict[str, dict[int, float]]] = {}
        for r in runs:
            if r.setting != "base2new" or r.dataset not in s["datasets"] or r.shots != protocol.shots:
                continue
            value = acc(r)
            if value is None:
                continue
            unit_seeds = seeds if m.zero_shot else [r.seed]
            for seed in unit_seeds:
                if seed not in seeds:
                    continue
                unit = (r.dataset, seed)
                if r.phase == "train_base":
                    base[unit] = value
                    if "@" in metric and r.dataset in s["per_epoch_datasets"]:
                        curves[unit] = read_per_epoch(r.path)
                elif r.phase == "test_new":
                    new[unit] = value
        if metric == "base":
            return base
        if metric == "new":
            return new
        if metric == "H":
            return {u: _h(base[u], new[u]) for u in base if u in new}
        split, which = metric.split("@")
        for unit, curve in curves.items():
            value = _epoch_value(curve.get(split, {}), which)
            if value is not None:
                out[unit] = value
        return out

    if setting in ("dg", "xd"):
        per_seed: dict[int, dict[str, float]] = {}
        for r in runs:
            if r.setting == "evaluation" and r.dataset in s["targets"] and r.seed in seeds and acc(r) is not None:
                per_seed.setdefault(r.seed, {})[r.dataset] = acc(r)
        return {(seed,): sum(v.values()) / len(v) for seed, v in per_seed.items() if set(v) == set(s["targets"])}

    for r in runs:  # few-shot: CoOp's main.sh tree (".../<cfg>_<K>shots/nctx.../seed<N>") and zero-shot folders
        value = acc(r)
        if value is None or r.dataset not in s["datasets"]:
            continue
        if m.zero_shot and r.setting in ("zeroshot", "train"):
            for k in s["shots"]:
                for seed in seeds:
                    out[(r.dataset, k, seed)] = value
        elif r.setting == "train" and "/nctx" in r.cfg and r.shots in s["shots"] and r.seed in seeds:
            out[(r.dataset, r.shots, r.seed)] = value
    return out


@dataclass
class ClaimResult:
    claim: Claim
    diffs: list[float]
    units: list[Unit]
    method_mean: Optional[float]
    baseline_mean: Optional[float]
    only_method: list[Unit] = field(default_factory=list)
    only_baseline: list[Unit] = field(default_factory=list)
    stat: Any = None            # PairedStat at the stated confidence (unadjusted)
    adjusted: Any = None        # PairedStat at the Holm step-down level (or the unadjusted one)
    verdict: str = "inconclusive"

    @property
    def n(self) -> int:
        return len(self.diffs)


def decide(test: str, lo: float, hi: float, margin: float) -> str:
    """The protocol's verdict rule on an interval [lo, hi] of the difference (method - baseline)."""
    if any(math.isnan(x) for x in (lo, hi)):
        return "inconclusive"
    if test == "greater":
        return "supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if test == "less":
        return "supported" if hi < 0 else "contradicted" if lo > 0 else "inconclusive"
    if test == "equivalent":
        if -margin < lo and hi < margin:
            return "supported"
        return "contradicted" if lo > 0 or hi < 0 else "inconclusive"
    if test == "noninferior":
        return "supported" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    raise ValueError(f"unknown claim test {test!r}")


def analyse(protocol: Protocol, layout: StudyLayout) -> list[ClaimResult]:
    """Every claim's paired differences, intervals (Holm-adjusted over the claims analysed) and verdict."""
    from quantprompt.results.paired import holm_intervals, paired_interval

    cache: dict[tuple[str, str, str], dict[Unit, float]] = {}

    def values(setting: str, method: str, metric: str) -> dict[Unit, float]:
        key = (setting, method, metric)
        if key not in cache:
            cache[key] = unit_values(protocol, layout, setting, method, metric)
        return cache[key]

    results: list[ClaimResult] = []
    for c in protocol.claims:
        a = values(c.setting, c.method, c.metrics[0])
        b = values(c.setting, c.baseline, c.metrics[1])
        units = sorted(set(a) & set(b))
        diffs = [a[u] - b[u] for u in units]
        results.append(ClaimResult(
            c, diffs, units,
            sum(a[u] for u in units) / len(units) if units else None,
            sum(b[u] for u in units) / len(units) if units else None,
            sorted(set(a) - set(b)), sorted(set(b) - set(a))))
    measured = [r for r in results if r.n >= 2]
    for r in results:
        r.stat = paired_interval(r.diffs, protocol.confidence) if r.n else None
        r.adjusted = r.stat
    if protocol.multiplicity == "holm" and measured:
        for r, adj in zip(measured, holm_intervals([r.diffs for r in measured], protocol.confidence)):
            r.adjusted = adj
    for r in results:
        if r.adjusted is not None:
            r.verdict = decide(r.claim.test, r.adjusted.lo, r.adjusted.hi, protocol.margin)
    return results

