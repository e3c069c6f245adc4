"""``quantprompt study``: the protocol's checks, the statistics on known paired data, and a small study end to end.

The end-to-end study runs on the CI world CLIP with one-epoch recipes: it checks the report's structure and that
the numbers in it are the paired differences of the runs' own logs, never the verdicts (the CI CLIP proves
plumbing, not accuracy).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from quantprompt.results.synthetic import write_log
from quantprompt.study.analysis import analyse, decide, unit_values
from quantprompt.study.plan import StudyLayout, calls_for
from quantprompt.study.protocol import ProtocolError, load_protocol, parse_protocol

SMALL = {
    "version": 1, "clip": "quick", "seeds": [1, 2, 3], "shots": 2, "per_class": [4, 1, 4], "confidence": 0.95,
    "multiplicity": "holm", "margin": 1.0,
    "methods": {
        "zsclip": {"trainer": "ZeroshotCLIP", "config": "demo", "scripts": "zsclip"},
        "coop": {"trainer": "CoOp", "config": "demo", "scripts": "coop", "opts": {"OPTIM.MAX_EPOCH": 1}},
        "qcoop": {"trainer": "QCoOp", "config": "demo", "scripts": "qcoop", "opts": {"OPTIM.MAX_EPOCH": 1}},
    },
    "settings": {
        "base2new": {"datasets": ["world_shapes"], "methods": ["zsclip", "coop", "qcoop"], "per_epoch": ["coop"]},
        "dg": {"source": "world_shapes", "targets": ["world_paintings"], "methods": ["coop", "qcoop"]},
        "fewshot": {"datasets": ["world_shapes"], "shots": [1], "methods": ["zsclip", "qcoop"]},
    },
    "claims": [
        {"id": "b2n-H", "source": "Table 1", "statement": "Q beats CoOp", "setting": "base2new", "method": "qcoop",
         "baseline": "coop", "metric": "H", "test": "greater"},
        {"id": "curve", "source": "Fig. 2", "statement": "new falls", "setting": "base2new", "method": "coop",
         "baseline": "coop", "metric": "new@last", "baseline_metric": "new@1", "test": "less"},
        {"id": "dg", "source": "Table 2", "statement": "Q transfers", "setting": "dg", "method": "qcoop",
         "baseline": "coop", "metric": "accuracy", "test": "noninferior"},
        {"id": "fs-zs", "source": "Fig. 5", "statement": "Q beats zero-shot", "setting": "fewshot",
         "method": "qcoop", "baseline": "zsclip", "metric": "accuracy", "test": "greater"},
    ],
}


def small(**changes) -> dict:
    data = copy.deepcopy(SMALL)
    data.update(changes)
    return data


def test_the_shipped_protocol_is_valid_and_covers_the_issue_s_claims() -> None:
    p = load_protocol()
    assert len(p.seeds) >= 5 and p.multiplicity == "holm"
    ids = {c.id for c in p.claims}
    for needed in ("T1-qcoop1-H", "T1-qcoop1-new", "T1-qcoop2-H", "T1-qcoop4-H", "T1-qcocoop-H", "T1-qmaple-H",
                   "T6-new-1v2", "T6-new-2v4", "T5-qat-new", "T4-norm", "T4-cac", "F2-noise0.1-base",
                   "F2-noise0.001-new", "F2-noise0.01-new", "F2-noisematched-new", "S3-quant-vs-noise",
                   "F2-coop-new-falls", "T2-dg", "T3-xd", "F5-fewshot-coop", "P4Q-w8-vs-coop", "P4Q-w4-vs-ptq"):
        assert needed in ids
    assert len(p.settings["base2new"]["datasets"]) >= 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seeds": None}, "'seeds' must be list"),
        ({"confidence": "high"}, "'confidence' must be int/float"),
        ({"clip": "huge"}, "'clip' must be a world CLIP profile"),
        ({"shots": 9}, "'shots' must be in 1..4"),
        ({"methods": {**SMALL["methods"], "bad": {"trainer": "CoOp", "config": "demo"}}}, "'methods.bad.scripts' is missing"),
        ({"settings": {**SMALL["settings"], "base2new": {**SMALL["settings"]["base2new"], "datasets": ["nope"]}}},
         "unknown world dataset 'nope'"),
        ({"claims": [{**SMALL["claims"][0], "test": "bigger"}]}, "'claims.b2n-H.test' must be one of greater"),
        ({"claims": [{**SMALL["claims"][0], "metric": "accuracy"}]}, "'claims.b2n-H.metric' must be one of base, new, H"),
        ({"claims": [{**SMALL["claims"][0], "method": "maple"}]}, "'claims.b2n-H.method' names 'maple'"),
        ({"claims": [{**SMALL["claims"][1], "method": "qcoop", "baseline": "qcoop"}]}, "needs 'qcoop' in settings"),
    ],
)
def test_a_bad_protocol_key_is_one_error_naming_it(change: dict, message: str) -> None:
    data = small(**change)
    if data.get("seeds") is None:
        del data["seeds"]
        message = "'seeds' is missing"
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_protocol(data)


def test_unknown_claims_are_listed(tmp_path: Path) -> None:
    p = parse_protocol(small())
    with pytest.raises(ProtocolError, match="unknown claim 'nope'; claims: b2n-H, curve, dg, fs-zs"):
        p.select(["nope"])
    assert [c.id for c in p.select(["dg"]).claims] == ["dg"]
    path = tmp_path / "p.yaml"
    path.write_text("version: [1\n")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(path)


@pytest.mark.parametrize(
    "test, lo, hi, verdict",
    [("greater", 0.1, 2, "supported"), ("greater", -2, -0.1, "contradicted"), ("greater", -1, 1, "inconclusive"),
     ("less", -2, -0.1, "supported"), ("less", 0.1, 2, "contradicted"),
     ("equivalent", -0.5, 0.9, "supported"), ("equivalent", 0.2, 3, "contradicted"),
     ("equivalent", -2, 0.5, "inconclusive"), ("noninferior", -0.9, 3, "supported"),
     ("noninferior", -4, -1.5, "contradicted"), ("noninferior", -3, 1, "inconclusive"),
     ("greater", float("-inf"), float("inf"), "inconclusive")],
)
def test_the_verdict_rule(test: str, lo: float, hi: float, verdict: str) -> None:
    assert decide(test, lo, hi, margin=1.0) == verdict


def _fake_runs(root: Path, method: str, trainer: str, base: dict, new: dict) -> None:
    for (dataset, seed), b in base.items():
        common = f"{dataset}/shots_2/{trainer}/demo/seed{seed}"
        write_log(root / "runs" / method / "base2new/train_base" / common, b, "coop", trainer=trainer)
        if (dataset, seed) in new:
            write_log(root / "runs" / method / "base2new/test_new" / common, new[(dataset, seed)], "eval",
                      trainer=trainer)


def test_known_paired_data_give_known_differences_intervals_and_unmatched_units(tmp_path: Path) -> None:
    from scipy import stats

    p = parse_protocol(small()).select(["b2n-H"])
    layout = StudyLayout(tmp_path, tmp_path / "clip.safetensors")
    units = [("world_shapes", s) for s in (1, 2, 3)]
    coop_base, coop_new = [80.0, 82.0, 81.0], [50.0, 52.0, 49.0]
    q_base, q_new = [79.0, 80.0, 80.0], [56.0, 55.0, 58.0]
    _fake_runs(tmp_path, "coop", "CoOp", dict(zip(units, coop_base)), dict(zip(units, coop_new)))
    # qcoop lacks the new-class run of seed 3: unit 3 is listed, not paired
    _fake_runs(tmp_path, "qcoop", "QCoOp", dict(zip(units, q_base)), dict(zip(units[:2], q_new[:2])))
    (r,) = analyse(p, layout)

    def h(b: float, n: float) -> float:
        return 2 * b * n / (b + n)

    diffs = [h(q_base[i], q_new[i]) - h(coop_base[i], coop_new[i]) for i in range(2)]
    assert r.units == units[:2] and r.diffs == pytest.approx(diffs)
    assert r.only_baseline == [units[2]] and r.only_method == []
    half = stats.t.ppf(0.975, 1) * stats.tstd(diffs) / math.sqrt(2)
    mean = sum(diffs) / 2
    assert (r.stat.lo, r.stat.hi) == pytest.approx((mean - half, mean + half))
    assert (r.adjusted.lo, r.adjusted.hi) == pytest.approx((r.stat.lo, r.stat.hi))  # one claim: no adjustment
    assert r.verdict == ("supported" if r.adjusted.lo > 0 else "inconclusive")
    assert unit_values(p, layout, "base2new", "coop", "new") == dict(zip(units, coop_new))


def test_holm_widens_intervals_over_a_family_of_claims(tmp_path: Path) -> None:
    p = parse_protocol(small()).select(["b2n-H"])
    two = replace(p, claims=[p.claims[0], replace(p.claims[0], id="b2n-H-again")])
    layout = StudyLayout(tmp_path, tmp_path / "clip.safetensors")
    units = [("world_shapes", s) for s in (1, 2, 3)]
    _fake_runs(tmp_path, "coop", "CoOp", dict(zip(units, [80.0, 82.0, 81.0])), dict(zip(units, [50.0, 52.0, 49.0])))
    _fake_runs(tmp_path, "qcoop", "QCoOp", dict(zip(units, [79.0, 80.0, 80.0])), dict(zip(units, [56.0, 55.0, 58.0])))
    first, second = analyse(two, layout)
    # two claims: the first is tested at alpha/2 (a wider interval); the second at alpha/1 only once the first
    # excludes 0, else it keeps the first's level (Holm stops there)
    assert first.adjusted.hi - first.adjusted.lo > first.stat.hi - first.stat.lo
    assert second.adjusted.hi - second.adjusted.lo >= second.stat.hi - second.stat.lo - 1e-9
    assert first.adjusted.p_value >= first.stat.p_value


def test_the_plan_runs_each_method_under_its_own_root_with_its_options(tmp_path: Path) -> None:
    p = parse_protocol(small())
    calls = calls_for(p, StudyLayout(tmp_path, tmp_path / "clip.safetensors"))
    b2n = [c for c in calls if c.script.startswith("base2new")]
    assert len(b2n) == 2 * (3 + 3)  # each compared method per seed, train + test; zero-shot is in no b2n claim
    assert [c.args[:3] for c in calls if c.method == "zsclip"] == [("world_shapes", "1", "1")]  # once: few-shot
    coop = next(c for c in b2n if c.method == "coop")
    assert str(tmp_path / "runs" / "coop") in coop.opts and "TEST.PER_EPOCH" in coop.opts and coop.tag == "coop"
    q = next(c for c in b2n if c.method == "qcoop")
    assert "TEST.PER_EPOCH" not in q.opts and q.opts[q.opts.index("OPTIM.MAX_EPOCH") + 1] == "1"
    fewshot = [c for c in calls if c.script == "fewshot.sh"]
    assert [c.args[:3] for c in fewshot] == [("world_shapes", "1", "1"), ("world_shapes", "1", "1"),
                                              ("world_shapes", "1", "2"), ("world_shapes", "1", "3")]
    seeds = [c.args[1] if c.script.startswith("base2new") else c.args[0] for c in calls if c.script != "fewshot.sh"
             and not c.script.endswith("_test.sh") or c.script == "base2new_test.sh"]
    assert set(seeds) == {"1", "2", "3"}
    assert seeds == sorted(seeds)  # seed by seed: a study stopped early holds every claim at fewer seeds


def test_a_small_study_runs_end_to_end_and_resumes(ci_world_clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from quantprompt.study.cli import run_study

    cache, settings, _cached = ci_world_clip
    for key in ("PYTHON", "NCTX", "QUANTPROMPT_CACHE", "PYTHONPATH", "QUANTPROMPT_ENV_INFO"):
        monkeypatch.delenv(key, raising=False)  # run_study sets these for its scripts; restored after the test
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    p = parse_protocol(small(seeds=[1, 2]))
    out = tmp_path / "study"
    logs: list[str] = []
    first = run_study(p, out, cache_dir=str(cache), jobs=2, pretrain_settings=settings, status_every=600,
                      log=logs.append)
    assert first["rc"] == 0, logs
    assert "grid: 19 runs to do, 0 already finished" in capsys.readouterr().out
    report = (out / "report" / "report.md").read_text()
    rows = list(csv.DictReader(io.StringIO((out / "report" / "claims.csv").read_text())))
    assert [r["claim"] for r in rows] == ["b2n-H", "curve", "dg", "fs-zs"]
    for r in rows:
        assert r["verdict"] in ("supported", "contradicted", "inconclusive") and f"**{r['verdict']}**" in report
    by_id = {r["claim"]: r for r in rows}
    assert [int(by_id[c]["n"]) for c in ("b2n-H", "curve", "dg", "fs-zs")] == [2, 2, 2, 2]
    # the report's numbers are the runs' own: the mean paired difference of H, recomputed from the logs
    layout = first["layout"]
    h = {m: unit_values(p, layout, "base2new", m, "H") for m in ("qcoop", "coop")}
    assert sorted(h["coop"]) == [("world_shapes", 1), ("world_shapes", 2)]
    expected = sum(h["qcoop"][u] - h["coop"][u] for u in h["coop"]) / 2
    assert float(by_id["b2n-H"]["mean_diff"]) == pytest.approx(expected)
    per_epoch = json.loads(next((out / "runs/coop/base2new/train_base").rglob("per_epoch_eval.json")).read_text())
    assert per_epoch and {"epoch", "new"} <= set(per_epoch[-1])
    for name in ("claims.png", "curves.png", "fewshot.png"):
        assert (out / "report" / name).stat().st_size > 1000
    assert "Holm-adjusted" in report and "commit" in report and "| command | quantprompt study |" in report
    assert len(list(layout.logs.rglob("*.log"))) == 19  # one log per run, none shared

    again = run_study(p, out, cache_dir=str(cache), jobs=2, pretrain_settings=settings, status_every=600,
                      log=logs.append)  # the same command again: every run is finished, nothing reruns
    assert again["rc"] == 0 and again["counts"] == first["counts"]
    assert "grid: 0 runs to do, 19 already finished" in capsys.readouterr().out
