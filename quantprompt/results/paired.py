"""Paired comparisons: a method minus a baseline over the same units, with intervals and verdicts.

A *unit* is one run identity both sides share: the same dataset, seed, shots and split (base-to-new: dataset
and seed, base and new being two metrics of the unit). Pairing removes what the two runs have in common -- the
seed's few-shot sample and initialisation, the dataset's difficulty -- so the spread left is the spread of the
*difference*, usually far smaller than the seed spread of either side. Unpaired means of three seeds cannot
see an effect of one point that a paired test of the same runs sees clearly.

Which interval, and why
    The Student-t interval of the mean paired difference, ``mean ± t(1 - a/2, n-1) · sd / sqrt(n)`` over the n
    units (``sd`` with ``ddof=1``), and the two-sided paired t-test's p-value (``scipy.stats.ttest_rel`` on
    the two sides gives the same number). Not a bootstrap over units: a study has few units (5 to 30), and
    percentile bootstrap intervals under-cover at such n (they are too narrow: the bootstrap distribution of a
    mean of 5 values cannot be wider than the 5 values allow, and it ignores that ``sd`` itself is estimated).
    The t interval is exact when the differences are normal and robust enough to mild skew at these n; it is
    also what a reader can recompute from the table.

Edge cases, never errors
    One unit: the mean is the difference, the interval ``(-inf, inf)`` and the p-value ``nan`` (nothing can be
    said). All differences equal: the interval has zero width at the mean, ``p = 0`` if the mean is not 0,
    else 1 (a deterministic difference, e.g. two methods that are bit-identical on every unit, or a constant
    shift).

Families of claims (Holm)
    With twenty claims, one 95 % interval in twenty excludes 0 by chance. :func:`holm` gives Holm's step-down
    adjusted p-values, and :func:`holm_intervals` intervals that agree with them: the claims are ranked by
    their unadjusted p-value, and the claim ranked ``i`` of ``m`` gets the level ``alpha / (m - i + 1)`` (the
    step-down levels: ``alpha / m`` for the most significant claim, ``alpha`` for the least), except that once
    Holm stops (the first claim it cannot reject, rank ``r``) every later claim keeps rank ``r``'s level. So
    an adjusted interval excludes 0 if and only if its Holm-adjusted p-value is below ``alpha``: the intervals
    carry exactly Holm's decisions, which control the family-wise error rate at ``alpha``. (For intervals
    whose *values* hold jointly, use the Bonferroni level ``alpha / m`` for every claim: ``paired_interval(d,
    1 - alpha / m)``.)

Verdicts
    :func:`verdict` reads an interval against the direction a claim states: ``supported`` when it excludes 0
    on the claimed side, ``contradicted`` when it excludes 0 on the other side, ``inconclusive`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, Optional, Sequence

__all__ = [
    "PairedStat",
    "paired_interval",
    "holm",
    "holm_intervals",
    "verdict",
    "VERDICTS",
    "UnitResult",
    "Unmatched",
    "MethodComparison",
    "Comparison",
    "pair_runs",
]

VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class PairedStat:
    """Mean paired difference (method - baseline) over ``n`` units, its interval ``[lo, hi]`` at
    ``confidence``, the two-sided paired t-test's ``p_value`` and the sample standard deviation ``sd`` of the
    differences."""

    mean: float
    lo: float
    hi: float
    n: int
    p_value: float
    sd: float
    confidence: float = 0.95

    @property
    def sign(self) -> int:
        """+1 when the interval lies above 0, -1 when below, 0 when it holds 0 (or cannot be computed)."""
        if self.lo > 0:
            return 1
        if self.hi < 0:
            return -1
        return 0

    @property
    def excludes_zero(self) -> bool:
        return self.sign != 0


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float strictly between 0 and 1, else a ValueError naming it."""
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1 (e.g. 0.95)")
    return c


def _differences(diffs: Iterable[float]) -> list[float]:
    values = [float(d) for d in diffs]
    if not values:
        raise ValueError("paired_interval: no paired differences (n = 0); pair at least one unit")
    bad = [d for d in values if not math.isfinite(d)]
    if bad:
        raise ValueError(f"paired_interval: differences must be finite numbers, got {bad[0]!r}")
    return values


def paired_interval(diffs: Sequence[float], confidence: float = 0.95) -> PairedStat:
    """Student-t interval and paired t-test of the differences ``diffs`` (see the module docstring)."""
    from scipy import stats

    c = check_confidence(confidence)
    d = _differences(diffs)
    n = len(d)
    if all(x == d[0] for x in d):  # zero spread, exactly (a float sd of equal values can be 1e-17)
        mean = d[0]
        if n == 1:
            return PairedStat(mean, -math.inf, math.inf, 1, math.nan, math.nan, c)
        return PairedStat(mean, mean, mean, n, 0.0 if mean != 0 else 1.0, 0.0, c)
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    t_stat = mean / se
    p_value = float(min(1.0, 2.0 * stats.t.sf(abs(t_stat), n - 1)))
    half = float(stats.t.ppf(1.0 - (1.0 - c) / 2.0, n - 1)) * se
    return PairedStat(mean, mean - half, mean + half, n, p_value, sd, c)


def _holm_order(p_values: Sequence[float]) -> list[int]:
    """Indices by ascending p (nan last, ties in input order)."""
    return sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i], i))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: for the p-values sorted ascending,
    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``. A ``nan`` p-value (a claim with one unit) counts in
    the family size ``m``, ranks last, and stays ``nan``."""
    ps = [float(p) for p in p_values]
    for p in ps:
        if not math.isnan(p) and not 0.0 <= p <= 1.0:
            raise ValueError(f"holm: p-values must lie in [0, 1] (or be nan), got {p!r}")
    m = len(ps)
    out = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(_holm_order(ps), start=1):
        if math.isnan(ps[i]):
            break
        running = max(running, min(1.0, (m - rank + 1) * ps[i]))
        out[i] = running
    return out


def holm_intervals(diffs_per_claim: Sequence[Sequence[float]], confidence: float = 0.95) -> list[PairedStat]:
    """Holm-adjusted intervals of a family of claims, in the input order (see the module docstring).

    Each :class:`PairedStat` carries its Holm-adjusted p-value and the confidence level of its interval; the
    interval excludes 0 if and only if the adjusted p-value is below ``1 - confidence``.
    """
    c = check_confidence(confidence)
    alpha = 1.0 - c
    raw = [paired_interval(d, c) for d in diffs_per_claim]
    m = len(raw)
    adjusted = holm([s.p_value for s in raw])
    out: list[Optional[PairedStat]] = [None] * m
    stopped_at: Optional[int] = None  # rank of the first claim Holm does not reject
    for rank, i in enumerate(_holm_order([s.p_value for s in raw]), start=1):
        if stopped_at is None and not adjusted[i] < alpha:  # nan compares False: stops too
            stopped_at = rank
        level_rank = rank if stopped_at is None else stopped_at
        level = 1.0 - alpha / (m - level_rank + 1)
        s = paired_interval(diffs_per_claim[i], level)
        out[i] = PairedStat(s.mean, s.lo, s.hi, s.n, adjusted[i], s.sd, level)
    return [s for s in out if s is not None]


def verdict(stat: PairedStat, direction: int) -> str:
    """``supported`` / ``contradicted`` / ``inconclusive`` for a claim that says the difference is > 0
    (``direction=+1``) or < 0 (``direction=-1``)."""
    if direction not in (1, -1):
        raise ValueError(f"direction={direction!r} must be +1 (claim: difference > 0) or -1 (difference < 0)")
    if stat.sign == 0:
        return "inconclusive"
    return "supported" if stat.sign == direction else "contradicted"


# ----------------------------------------------------------------------------------------------------------
# pairing runs by unit


@dataclass(frozen=True)
class UnitResult:
    """The values (metric -> number) one method reached on one unit (any hashable run identity)."""

    method: str
    unit: Hashable
    values: Mapping[str, float]


@dataclass(frozen=True)
class Unmatched:
    """A unit whose ``metrics`` exist on one ``side`` only ("method" or "baseline"): left out of the pairs."""

    unit: Hashable
    side: str
    metrics: tuple[str, ...]


@dataclass
class MethodComparison:
    """One method against the baseline.

    ``stats[metric]`` is None when no unit has the metric on both sides; ``pairs[metric]`` lists
    ``(unit, method value, baseline value)`` of the paired units in unit order (the differences behind
    the stat);
    ``unmatched`` lists every unit one side lacks, per metric, so nothing is dropped silently.
    """

    method: str
    baseline: str
    stats: dict[str, Optional[PairedStat]]
    pairs: dict[str, list[tuple[Any, float, float]]]
    unmatched: list[Unmatched] = field(default_factory=list)

    def diffs(self, metric: str) -> list[float]:
        return [a - b for _, a, b in self.pairs[metric]]

    @property
    def only_in_method(self) -> list[Any]:
        return [u.unit for u in self.unmatched if u.side == "method"]

    @property
    def only_in_baseline(self) -> list[Any]:
        return [u.unit for u in self.unmatched if u.side == "baseline"]


@dataclass
class Comparison:
    """Every other method against ``baseline`` on ``metrics``; ``comparison[method]`` is its row."""

    baseline: str
    metrics: tuple[str, ...]
    methods: dict[str, MethodComparison]
    confidence: float = 0.95
    holm: bool = False  # True when the stats are Holm-adjusted over every (method, metric) of the comparison

    def __getitem__(self, method: str) -> MethodComparison:
        if method not in self.methods:
            raise KeyError(
                f"no comparison for method {method!r}; compared: {', '.join(self.methods) or 'none'}"
            )
        return self.methods[method]


def unit_sort_key(unit: Any) -> tuple:
    """Orders units of mixed parts (numbers before text, None last), tuples part by part."""
    parts = unit if isinstance(unit, tuple) else (unit,)
    key = []
    for p in parts:
        if p is None:
            key.append((2, 0, ""))
        elif isinstance(p, (int, float)):
            key.append((0, p, ""))
        else:
            key.append((1, 0, str(p)))
    return tuple(key)


def _as_result(item: Any) -> UnitResult:
    if isinstance(item, UnitResult):
        return item
    if isinstance(item, tuple) and len(item) == 3:
        return UnitResult(str(item[0]), item[1], dict(item[2]))
    raise TypeError(
        f"pair_runs: expected UnitResult or (method, unit, values) tuples, got {type(item).__name__}"
    )


def pair_runs(
    runs: Iterable[Any],
    baseline: str,
    metrics: Sequence[str],
    confidence: float = 0.95,
) -> Comparison:
    """Pair every method's units with the baseline's and give each metric's :class:`PairedStat`.

    ``runs``: :class:`UnitResult` (or ``(method, unit, values)`` tuples); a value missing from ``values`` (or
    None) means the unit has no such result. Two results of one method on one unit are an error (the identity
    is not a unit). An unknown ``baseline`` raises a ValueError naming the methods found.
    """
    c = check_confidence(confidence)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("pair_runs: no metrics to compare")
    table: dict[str, dict[Any, dict[str, float]]] = {}
    for item in runs:
        r = _as_result(item)
        per_unit = table.setdefault(r.method, {})
        if r.unit in per_unit:
            raise ValueError(f"pair_runs: method {r.method!r} has two results for unit {r.unit!r}")
        per_unit[r.unit] = {k: float(v) for k, v in r.values.items() if k in metrics and v is not None}
    if baseline not in table:
        raise ValueError(f"unknown baseline {baseline!r}; methods found: {', '.join(table) or 'none'}")
    base = table[baseline]
    out: dict[str, MethodComparison] = {}
    for method, mine in table.items():
        if method == baseline:
            continue
        stats: dict[str, Optional[PairedStat]] = {}
        pairs: dict[str, list[tuple[Any, float, float]]] = {}
        for metric in metrics:
            units = sorted(
                (u for u in mine if metric in mine[u] and metric in base.get(u, {})), key=unit_sort_key
            )
            pairs[metric] = [(u, mine[u][metric], base[u][metric]) for u in units]
            stats[metric] = paired_interval([a - b for _, a, b in pairs[metric]], c) if units else None
        unmatched = []
        for side, have, other in (("method", mine, base), ("baseline", base, mine)):
            for u in sorted(have, key=unit_sort_key):
                lacking = tuple(m for m in metrics if m in have[u] and m not in other.get(u, {}))
                if lacking:
                    unmatched.append(Unmatched(u, side, lacking))
        out[method] = MethodComparison(method, baseline, stats, pairs, unmatched)
    return Comparison(baseline, metrics, out, c)
