"""Paired statistics: known differences -> known intervals and p-values, Holm on textbook values, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from quantprompt.results.paired import (
    PairedStat,
    UnitResult,
    holm,
    holm_intervals,
    pair_runs,
    paired_interval,
    verdict,
)


def test_interval_by_hand() -> None:
    # diffs 1..5: mean 3, sd sqrt(2.5), se sqrt(0.5), t(0.975, 4) = 2.7764451052
    st = paired_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(0.5)
    assert st.mean == 3.0 and st.n == 5 and st.sd == pytest.approx(math.sqrt(2.5))
    assert (st.lo, st.hi) == pytest.approx((3.0 - half, 3.0 + half))
    assert (st.lo, st.hi) == pytest.approx((1.0367568385, 4.9632431615))
    assert st.confidence == 0.95 and st.sign == 1 and st.excludes_zero


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_interval_matches_scipy_ttest_rel(confidence: float) -> None:
    rng = np.random.default_rng(7)
    a = 60 + rng.normal(0, 3, size=8)
    b = a - 1.0 + rng.normal(0, 1.5, size=8)  # a correlated baseline, as two methods on the same seeds
    st = paired_interval(list(a - b), confidence)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(confidence)
    assert st.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert (st.lo, st.hi) == pytest.approx((float(ci.low), float(ci.high)), rel=1e-9)
    assert st.mean == pytest.approx(float(np.mean(a - b)))
    assert st.sd == pytest.approx(float(np.std(a - b, ddof=1)))
    d = a - b  # and by t.ppf directly
    half = stats.t.ppf(0.5 + confidence / 2, 7) * np.std(d, ddof=1) / math.sqrt(8)
    assert st.hi - st.lo == pytest.approx(2 * half)


def test_one_unit_and_zero_variance_are_not_errors() -> None:
    one = paired_interval([2.5])
    assert one.mean == 2.5 and one.n == 1 and one.lo == -math.inf and one.hi == math.inf
    assert math.isnan(one.p_value) and math.isnan(one.sd) and one.sign == 0
    assert verdict(one, +1) == "inconclusive"
    same = paired_interval([0.1, 0.1, 0.1])  # float mean of these is not 0.1 exactly; the spread is 0
    assert (same.mean, same.lo, same.hi, same.sd, same.p_value) == (0.1, 0.1, 0.1, 0.0, 0.0)
    assert verdict(same, +1) == "supported" and verdict(same, -1) == "contradicted"
    tie = paired_interval([0.0, 0.0, 0.0, 0.0])  # bit-identical methods
    assert (tie.lo, tie.hi, tie.p_value) == (0.0, 0.0, 1.0) and verdict(tie, +1) == "inconclusive"


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ValueError, match="no paired differences"):
        paired_interval([])
    with pytest.raises(ValueError, match="finite.*nan"):
        paired_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence=1.5"):
        paired_interval([1.0, 2.0], 1.5)
    with pytest.raises(ValueError, match="direction=0"):
        verdict(paired_interval([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="p-values must lie in"):
        holm([0.5, 1.2])


def test_verdict_rules() -> None:
    above = PairedStat(mean=2.0, lo=0.5, hi=3.5, n=5, p_value=0.01, sd=1.0)
    below = PairedStat(mean=-2.0, lo=-3.5, hi=-0.5, n=5, p_value=0.01, sd=1.0)
    across = PairedStat(mean=0.4, lo=-0.5, hi=1.3, n=5, p_value=0.3, sd=1.0)
    touching = PairedStat(
        mean=1.0, lo=0.0, hi=2.0, n=5, p_value=0.05, sd=1.0
    )  # 0 is inside a closed interval
    assert [verdict(s, +1) for s in (above, below, across, touching)] == [
        "supported",
        "contradicted",
        "inconclusive",
        "inconclusive",
    ]
    assert [verdict(s, -1) for s in (above, below, across)] == ["contradicted", "supported", "inconclusive"]


def test_holm_textbook_values() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []
    adj = holm([0.01, float("nan"), 0.02])  # a one-unit claim counts in m and stays nan
    assert adj[0] == pytest.approx(0.03) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.04)


def test_holm_is_monotone_and_at_least_the_raw_p() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 12))))
        adj = holm(p)
        order = np.argsort(p, kind="stable")
        assert all(adj[i] >= p[i] for i in range(len(p))) and max(adj) <= 1.0
        assert all(adj[order[k]] <= adj[order[k + 1]] for k in range(len(p) - 1))


def test_holm_intervals_exclude_zero_iff_adjusted_p_below_alpha() -> None:
    # p = 0.035 and 0.047: each below 0.05 alone, Holm adjusts both to 0.069 -> neither interval may exclude 0
    # (the second one's own step-down level alpha/1 would, were Holm not already stopped at the first)
    tight = holm_intervals([[1.0, 2.0, 0.8, 1.5, 0.0], [1.0, 2.0, 0.5, 1.5, 0.0]], 0.95)
    assert [round(s.p_value, 4) for s in tight] == [0.0694, 0.0694]
    assert (
        not any(s.excludes_zero for s in tight) and paired_interval([1.0, 2.0, 0.5, 1.5, 0.0]).excludes_zero
    )
    rng = np.random.default_rng(3)
    seen = {True: 0, False: 0}
    for trial in range(60):
        m = int(rng.integers(2, 9))
        family = [
            list(rng.normal(rng.uniform(-2.0, 2.0), 1.5, size=int(rng.integers(3, 10)))) for _ in range(m)
        ]
        if trial % 10 == 0:
            family.append([1.0])  # a one-unit claim in the family
        adjusted = holm_intervals(family, 0.95)
        raw = [paired_interval(d) for d in family]
        expected_p = holm([s.p_value for s in raw])
        for s, r, p in zip(adjusted, raw, expected_p):
            assert s.mean == r.mean and s.n == r.n
            assert s.p_value == p or (math.isnan(s.p_value) and math.isnan(p))
            assert s.excludes_zero == (s.p_value < 0.05)
            assert s.lo <= r.lo and s.hi >= r.hi  # never narrower than the unadjusted interval
            seen[s.excludes_zero] += 1
    assert seen[True] > 10 and seen[False] > 10  # both cases were exercised


def test_holm_interval_levels_are_the_step_down_levels() -> None:
    # three clear effects and one null: the clearest gets alpha/4, then alpha/3, alpha/2; the null alpha/1
    family = [
        [5.0, 5.2, 4.9, 5.1, 5.0],
        [1.0, 1.4, 0.8, 1.2, 1.1],
        [3.0, 3.1, 2.8, 3.3, 2.9],
        [0.1, -0.2, 0.3, -0.1],
    ]
    out = holm_intervals(family, 0.95)
    p = [paired_interval(d).p_value for d in family]
    ranks = {i: r for r, i in enumerate(sorted(range(4), key=lambda i: p[i]), start=1)}
    for i, s in enumerate(out[:3]):
        assert s.confidence == pytest.approx(1 - 0.05 / (4 - ranks[i] + 1))
        assert s.excludes_zero
    assert ranks[3] == 4 and out[3].confidence == pytest.approx(0.95) and not out[3].excludes_zero
    # once Holm stops, later claims keep the stopping rank's level
    stop = holm_intervals([[0.1, -0.2, 0.3, -0.1], [0.2, -0.3, 0.1, -0.1, 0.05]], 0.95)
    assert [s.confidence for s in stop] == pytest.approx([0.975, 0.975])  # rank 1 of 2 stops Holm


def test_pair_runs_pairs_by_unit_and_lists_the_unmatched() -> None:
    runs = [UnitResult("CoOp", ("dtd", 16, s), {"base": 80.0 + s, "new": 50.0}) for s in (1, 2, 3)]
    runs += [UnitResult("QCoOp", ("dtd", 16, s), {"base": 79.0 + s, "new": 52.0 + s}) for s in (1, 2, 4)]
    runs.append(("QCoOp", ("dtd", 16, 3), {"base": 82.0, "new": None}))  # plain tuples work; None = no result
    comp = pair_runs(runs, "CoOp", ["base", "new"])
    assert list(comp.methods) == ["QCoOp"] and comp.baseline == "CoOp"
    q = comp["QCoOp"]
    assert q.diffs("base") == [-1.0, -1.0, -1.0] and q.stats["base"].n == 3
    assert q.stats["base"].mean == -1.0 and q.stats["base"].p_value == 0.0  # constant shift
    assert [u for u, _, _ in q.pairs["new"]] == [("dtd", 16, 1), ("dtd", 16, 2)]
    assert q.diffs("new") == [3.0, 4.0] and q.stats["new"].mean == 3.5
    assert q.only_in_method == [("dtd", 16, 4)]
    assert q.only_in_baseline == [("dtd", 16, 3)]  # seed 3 has base on both sides, new on the baseline's only
    assert [(u.unit, u.side, u.metrics) for u in q.unmatched] == [
        (("dtd", 16, 4), "method", ("base", "new")),
        (("dtd", 16, 3), "baseline", ("new",)),
    ]
    with pytest.raises(ValueError, match="unknown baseline 'MaPLe'; methods found: CoOp, QCoOp"):
        pair_runs(runs, "MaPLe", ["base"])
    with pytest.raises(ValueError, match="two results for unit"):
        pair_runs(runs + [UnitResult("CoOp", ("dtd", 16, 1), {"base": 1.0})], "CoOp", ["base"])
    with pytest.raises(KeyError, match="compared: QCoOp"):
        comp["NoSuch"]
    none = pair_runs([UnitResult("A", 1, {"x": 1.0}), UnitResult("B", 2, {"x": 2.0})], "A", ["x"])
    assert (
        none["B"].stats["x"] is None and none["B"].only_in_method == [2] and none["B"].only_in_baseline == [1]
    )
