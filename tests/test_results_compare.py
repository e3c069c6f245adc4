"""--compare on synthetic CoOp-layout trees with known paired differences, for every setting."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_results_tables import B2N, make_b2n, make_transfer

from quantprompt.results import compare, holm, render
from quantprompt.results.aggregate import harmonic_mean
from quantprompt.results.comparison import RunUnit
from quantprompt.results.parse import main as parse_main
from quantprompt.results.synthetic import write_log


def _arrays(method: str, baseline: str, idx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit values (datasets in B2N order, seeds 1..3) of base (idx 0) or new (idx 1)."""
    a = [v for (t, _), cells in B2N.items() if t == method for v in cells[idx]]
    b = [v for (t, _), cells in B2N.items() if t == baseline for v in cells[idx]]
    return np.array(a), np.array(b)


def test_base2new_known_differences_match_ttest_rel(tmp_path: Path) -> None:
    report = compare(make_b2n(tmp_path / "output"), "base2new", "CoOp")
    comp = report.data["compare"]["base2new"]
    assert (
        comp.baseline == "CoOp" and comp.metrics == ("Base", "New", "H") and list(comp.methods) == ["QCoOp"]
    )
    q = comp["QCoOp"]
    assert q.unmatched == []
    units = [u for u, _, _ in q.pairs["Base"]]
    assert units == [RunUnit(d, 16, s) for d in ("caltech101", "dtd") for s in (1, 2, 3)]
    assert q.diffs("Base") == [-2.0, -2.0, -2.0, -2.0, -1.0, 0.0]  # QCoOp - CoOp, known from B2N
    for metric, idx in (("Base", 0), ("New", 1)):
        a, b = _arrays("QCoOp", "CoOp", idx)
        ref = stats.ttest_rel(a, b)
        ci = ref.confidence_interval(0.95)
        st = q.stats[metric]
        assert st.n == 6 and st.mean == pytest.approx(float(np.mean(a - b)))
        assert (st.lo, st.hi) == pytest.approx((float(ci.low), float(ci.high)))
        assert st.p_value == pytest.approx(float(ref.pvalue))
    assert q.stats["Base"].mean == -1.5 and q.stats["New"].mean == 9.0
    (ab, bb), (an, bn) = _arrays("QCoOp", "CoOp", 0), _arrays("QCoOp", "CoOp", 1)
    h_diffs = [harmonic_mean(x, y) - harmonic_mean(u, v) for x, y, u, v in zip(ab, an, bb, bn)]
    assert q.diffs("H") == pytest.approx(h_diffs)  # H per unit (seed), then paired
    text = render(report, fmt="terminal")
    assert "Paired differences against CoOp: base-to-new" in text and "Every unit paired." in text
    assert "yes (< 0)" in text and "yes (> 0)" in text  # base down, new up


def test_unmatched_units_are_listed_not_dropped(tmp_path: Path) -> None:
    cells = dict(B2N)
    cells[("CoOp", "dtd")] = ([80.0, 80.0, 80.0], [50.0, 52.0, None])  # CoOp's dtd seed 3 has no new result
    cells[("QCoOp", "eurosat")] = ([70.0] * 3, [50.0] * 3)  # a dataset only QCoOp ran
    report = compare(make_b2n(tmp_path / "output", cells), "base2new", "CoOp")
    q = report.data["compare"]["base2new"]["QCoOp"]
    assert q.stats["Base"].n == 6 and q.stats["New"].n == 5 and q.stats["H"].n == 5
    assert [(u.unit, u.side, u.metrics) for u in q.unmatched] == [
        (RunUnit("dtd", 16, 3), "method", ("New", "H")),
        *[(RunUnit("eurosat", 16, s), "method", ("Base", "New", "H")) for s in (1, 2, 3)],
    ]
    assert q.only_in_method[0] == ("dtd", 16, 3) and q.only_in_baseline == []
    text = render(report, fmt="github")
    assert "4 unit(s) without a pair" in text
    assert "Units without a pair against CoOp: base-to-new" in text
    assert "| QCoOp    | DTD, 16 shots, seed 3     | QCoOp     | New, H       |" in text
    assert "| QCoOp    | EuroSAT, 16 shots, seed 1 | QCoOp     | Base, New, H |" in text


def test_cli_compare_formats_and_unknown_baseline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_b2n(tmp_path / "output")
    assert parse_main([str(root), "--table", "base2new", "--compare", "CoOp", "--format", "github"]) == 0
    out = capsys.readouterr().out
    assert "| Method   | Metric   | Diff vs CoOp   | CI low   | CI high   | n   | p" in out
    assert "| QCoOp    | Base     | -1.50          |" in out
    assert (
        parse_main([str(root), "--table", "base2new", "--compare", "coop", "--format", "csv"]) == 0
    )  # any case
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out.strip())))
    assert rows[0] == ["# Paired differences against CoOp: base-to-new"]
    assert rows[2][:3] == ["QCoOp", "Base", "-1.50"] and rows[2][5] == "6"
    assert parse_main([str(root), "--table", "base2new", "--compare", "CoOp", "--format", "latex"]) == 0
    assert "QCoOp & New & 9.00" in capsys.readouterr().out
    assert parse_main([str(root), "--table", "base2new", "--compare", "MaPLe"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: unknown baseline 'MaPLe'; methods found: base2new: CoOp, QCoOp\n"
    out_file = tmp_path / "cmp.md"
    assert parse_main([str(root), "--compare", "CoOp", "--decimals", "3", "-o", str(out_file)]) == 0
    assert "-1.500" in out_file.read_text()  # --table defaults to every setting found


def test_holm_adjusted_compare(tmp_path: Path) -> None:
    root = make_b2n(tmp_path / "output")
    plain = compare(root, "base2new", "CoOp").data["compare"]["base2new"]
    adjusted = compare(root, "base2new", "CoOp", holm=True).data["compare"]["base2new"]
    assert adjusted.holm and not plain.holm
    raw = [plain["QCoOp"].stats[m].p_value for m in plain.metrics]
    assert [adjusted["QCoOp"].stats[m].p_value for m in plain.metrics] == pytest.approx(holm(raw))
    for m in plain.metrics:
        a, r = adjusted["QCoOp"].stats[m], plain["QCoOp"].stats[m]
        assert a.lo <= r.lo and a.hi >= r.hi and a.excludes_zero == (a.p_value < 0.05)


def make_fewshot(root: Path) -> dict:
    acc = {}  # (trainer, dataset, shots, seed) -> accuracy
    for shots in (1, 2):
        for ds, base in (("caltech101", 80.0), ("dtd", 40.0)):
            for seed in (1, 2):
                acc[("CoOp", ds, shots, seed)] = base + shots + seed
                acc[("QCoOp", ds, shots, seed)] = base + shots + seed + (1.0 if shots == 1 else 0.5 * seed)
    for (trainer, ds, shots, seed), a in acc.items():
        write_log(root / f"{ds}/{trainer}/rn50_{shots}shots/nctx16_cscFalse_ctpend/seed{seed}", a, "coop")
    write_log(root / "ZeroshotCLIP/rn50/caltech101", 79.0, "eval")
    write_log(root / "ZeroshotCLIP/rn50/dtd", 41.0, "eval")
    return acc


def test_fewshot_per_shots_and_zero_shot_paired_with_every_seed(tmp_path: Path) -> None:
    root = tmp_path / "output"
    acc = make_fewshot(root)
    comp = compare(root, "fewshot", "CoOp").data["compare"]["fewshot"]
    assert comp.metrics == ("1 shots", "2 shots", "all shots") and list(comp.methods) == ["CLIP", "QCoOp"]
    q = comp["QCoOp"]
    assert q.diffs("1 shots") == [1.0] * 4 and q.stats["1 shots"].mean == 1.0
    assert q.diffs("2 shots") == [0.5, 1.0, 0.5, 1.0] and q.stats["2 shots"].n == 4
    assert q.stats["all shots"].n == 8 and q.stats["all shots"].mean == pytest.approx(0.875)
    # zero-shot CLIP (no seed, no shots) against every (shots, seed) unit of its dataset
    vs_clip = compare(root, "fewshot", "CLIP").data["compare"]["fewshot"]["CoOp"]
    units = [u for u, _, _ in vs_clip.pairs["1 shots"]]
    assert units == [
        RunUnit("caltech101", 1, 1),
        RunUnit("caltech101", 1, 2),
        RunUnit("dtd", 1, 1),
        RunUnit("dtd", 1, 2),
    ]
    expected = [acc[("CoOp", d, 1, s)] - z for d, z in (("caltech101", 79.0), ("dtd", 41.0)) for s in (1, 2)]
    assert vs_clip.diffs("1 shots") == pytest.approx(expected) and vs_clip.unmatched == []


def test_transfer_per_target_and_average(tmp_path: Path) -> None:
    root = make_transfer(tmp_path / "output")
    report = compare(root, "auto", "CoOp")
    assert set(report.data["compare"]) == {"xd", "dg"}
    xd = report.data["compare"]["xd"]
    assert xd.metrics == ("ImageNet (source)", "Caltech101", "OxfordPets", "Average")
    q = xd["QCoOp"]
    assert [u for u, _, _ in q.pairs["Average"]] == [RunUnit("imagenet", 16, s) for s in (1, 2, 3)]
    for metric, diff in (
        ("ImageNet (source)", -0.9),
        ("Caltech101", 0.4),
        ("OxfordPets", 1.4),
        ("Average", 0.9),
    ):
        assert q.stats[metric].mean == pytest.approx(diff) and q.stats[metric].n == 3
        assert q.stats[metric].sign == (1 if diff > 0 else -1)
    dg = report.data["compare"]["dg"]
    assert dg.metrics == ("ImageNet (source)", "ImageNet-V2", "ImageNet-Sketch", "Average")
    clip = compare(root, "dg", "CLIP").data["compare"]["dg"][
        "CoOp"
    ]  # zero-shot: one run per target, all seeds
    assert clip.diffs("ImageNet-V2") == pytest.approx([64.2 - 0.5 - 60.8, 64.2 - 60.8, 64.2 + 0.5 - 60.8])
    assert clip.stats["Average"].mean == pytest.approx((64.2 + 48.0) / 2 - (60.8 + 46.2) / 2)
    assert clip.stats["ImageNet (source)"].mean == pytest.approx(71.5 - 66.7)


def test_transfer_missing_target_run_is_listed(tmp_path: Path) -> None:
    root = make_transfer(tmp_path / "output")
    (root / "evaluation/QCoOp/vit_b16_16shots/oxford_pets/seed3/log.txt").unlink()
    report = compare(root, "xd", "CoOp")
    q = report.data["compare"]["xd"]["QCoOp"]
    assert q.stats["OxfordPets"].n == 2 and q.stats["Average"].n == 2 and q.stats["Caltech101"].n == 3
    assert [(u.unit, u.side, u.metrics) for u in q.unmatched] == [
        (RunUnit("imagenet", 16, 3), "baseline", ("OxfordPets", "Average"))
    ]
    assert any("seed3: no log.txt" in w for w in report.warnings)
    assert "ImageNet, 16 shots, seed 3" in render(report)


def test_bad_setting_and_empty_tree(tmp_path: Path) -> None:
    root = make_b2n(tmp_path / "output")
    with pytest.raises(ValueError, match="setting='table1' is not one of auto, base2new"):
        compare(root, "table1", "CoOp")
    with pytest.raises(ValueError, match="no xd runs to compare"):
        compare(root, "xd", "CoOp")


def test_base2new_zero_shot_run_once_pairs_with_every_seed(tmp_path: Path) -> None:
    # the demo runs zero-shot CLIP for the first seed only: it learns nothing, its result holds for every seed
    root = make_b2n(tmp_path / "output")
    make_b2n(
        root, {("ZeroshotCLIP", "caltech101"): ([85.0], [65.0]), ("ZeroshotCLIP", "dtd"): ([70.0], [55.0])}
    )
    comp = compare(root, "base2new", "CLIP").data["compare"]["base2new"]
    assert comp.baseline == "CLIP" and list(comp.methods) == ["CoOp", "QCoOp"]
    coop = comp["CoOp"]
    assert coop.unmatched == [] and coop.stats["New"].n == 6
    assert coop.diffs("New") == [60.0 - 65, 61.0 - 65, 62.0 - 65, 50.0 - 55, 52.0 - 55, 54.0 - 55]
    assert coop.diffs("H")[0] == pytest.approx(harmonic_mean(90.0, 60.0) - harmonic_mean(85.0, 65.0))


def test_fewshot_zero_shot_alone_on_a_dataset_and_bad_confidence(tmp_path: Path) -> None:
    root = tmp_path / "output"
    make_fewshot(root)
    write_log(root / "ZeroshotCLIP/rn50/eurosat", 50.0, "eval")  # no trained method ran EuroSAT
    report = compare(root, "fewshot", "CLIP")
    comp = report.data["compare"]["fewshot"]
    assert comp.metrics == ("1 shots", "2 shots", "all shots")  # no "None shots"
    warnings = "\n".join(report.warnings)
    assert "few-shot: CLIP has a result on EuroSAT, where no trained method has one" in warnings
    assert comp["CoOp"].stats["all shots"].n == 8
    with pytest.raises(ValueError, match="confidence=95"):
        compare(root, "fewshot", "CLIP", confidence=95)
