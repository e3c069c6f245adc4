"""Tables from synthetic trees with known accuracies: means, stds, CIs, H, averages, warnings, formats."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from quantprompt.results import build_report, render
from quantprompt.results.aggregate import harmonic_mean, summarize, t_quantile_975
from quantprompt.results.parse import main as parse_main
from quantprompt.results.synthetic import write_log
from quantprompt.results.tables import Table

B2N = {  # (trainer, dataset): (base accuracies of seeds 1..3, new accuracies of seeds 1..3)
    ("CoOp", "caltech101"): ([90.0, 91.0, 92.0], [60.0, 61.0, 62.0]),
    ("CoOp", "dtd"): ([80.0, 80.0, 80.0], [50.0, 52.0, 54.0]),
    ("QCoOp", "caltech101"): ([88.0, 89.0, 90.0], [70.0, 71.0, 72.0]),
    ("QCoOp", "dtd"): ([78.0, 79.0, 80.0], [60.0, 60.0, 60.0]),
}


def make_b2n(root: Path, cells: dict = B2N, style: str = "coop") -> Path:
    for (trainer, dataset), (base, new) in cells.items():
        for i, (b, n) in enumerate(zip(base, new), start=1):
            common = f"{dataset}/shots_16/{trainer}/vit_b16_c4/seed{i}"
            if b is not None:
                write_log(root / "base2new/train_base" / common, b, style, trainer=trainer)
            if n is not None:
                write_log(root / "base2new/test_new" / common, n, "eval", trainer=trainer)
    return root


def rows_by_method(table: Table) -> dict[str, list]:
    return {row[0]: row[1:] for row in table.rows}


def test_stat_definitions() -> None:
    st = summarize([60.0, 61.0, 62.0])
    assert st.mean == 61.0 and st.spread == pytest.approx(math.sqrt(2 / 3)) and st.n == 3
    ci = summarize([60.0, 61.0, 62.0], ci95=True)
    assert t_quantile_975(2) == pytest.approx(4.302652729911275)
    assert ci.spread == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))
    assert summarize([70.0], ci95=True).spread is None
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_base2new_exact_numbers(tmp_path: Path) -> None:
    report = build_report(make_b2n(tmp_path / "output"), sizes=False)
    assert report.warnings == []
    summary, base, new, h = report.tables
    s = rows_by_method(summary)
    assert s["CoOp"] == pytest.approx([85.5, 56.5, 2 * 85.5 * 56.5 / 142.0])
    assert s["QCoOp"] == pytest.approx([84.0, 65.5, 2 * 84.0 * 65.5 / 149.5])
    # the average H is H of the averaged B and N, not the mean of per-dataset H
    per_ds_h = [harmonic_mean(91, 61), harmonic_mean(80, 52)]
    assert s["CoOp"][2] != pytest.approx(sum(per_ds_h) / 2)
    assert "not the mean of per-dataset H" in summary.caption
    b = rows_by_method(base)
    assert base.headers == ["Method", "Caltech101", "DTD", "Average"]
    assert b["CoOp"][0].mean == 91.0 and b["CoOp"][0].spread == pytest.approx(math.sqrt(2 / 3))
    assert b["CoOp"][0].n == 3 and b["CoOp"][2] == 85.5
    n = rows_by_method(new)
    assert n["CoOp"][1].mean == 52.0 and n["CoOp"][1].spread == pytest.approx(math.sqrt(8 / 3))
    hh = rows_by_method(h)
    assert hh["CoOp"][:2] == pytest.approx(per_ds_h)
    text = render(report, show_spread=True)
    assert "91.00 ± 0.82" in text and "68.04" in text


def test_base2new_ci95_and_per_dataset_layout(tmp_path: Path) -> None:
    report = build_report(make_b2n(tmp_path / "output"), sizes=False, ci95=True, layout="per-dataset")
    titles = [t.title for t in report.tables]
    assert titles[1:] == ["Base-to-new generalization: Caltech101", "Base-to-new generalization: DTD"]
    cal = rows_by_method(report.tables[1])
    assert cal["CoOp"][1].spread == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert cal["CoOp"][2] == pytest.approx(harmonic_mean(91.0, 61.0))
    assert "95% CI" in render(report, show_spread=True)


def test_test_base_phase_preferred_over_train_base(tmp_path: Path) -> None:
    root = make_b2n(tmp_path / "output", {("MaPLe", "dtd"): ([80.0, 80.0, 80.0], [70.0, 70.0, 70.0])})
    for i in (1, 2, 3):
        write_log(root / f"base2new/test_base/dtd/shots_16/MaPLe/vit_b16_c4/seed{i}", 82.0, "eval")
    report = build_report(root, sizes=False)
    assert rows_by_method(report.tables[0])["MaPLe"][:2] == [82.0, 70.0]


def test_broken_tree_every_warning_case(tmp_path: Path) -> None:
    cells = dict(B2N)
    cells[("QCoOp", "eurosat")] = ([70.0, 70.0, 70.0], [50.0, 50.0, 50.0])  # present for one method only
    cells[("CoOp", "dtd")] = ([80.0, 80.0, None], [50.0, 52.0, None])  # seed 3 missing entirely
    root = make_b2n(tmp_path / "output", cells)
    # unfinished run: QCoOp caltech101 seed 3 training stopped at epoch 1 of 3
    write_log(
        root / "base2new/train_base/caltech101/shots_16/QCoOp/vit_b16_c4/seed3",
        None,
        "dassl",
        finished=False,
        stop_epoch=1,
    )
    # malformed log: a final block whose accuracy is not a number
    bad = root / "base2new/test_new/caltech101/shots_16/QCoOp/vit_b16_c4/seed2/log.txt"
    bad.write_text(bad.read_text().replace("* accuracy: 71.0%", "* accuracy: n/a%"))
    # seed folder without a log, and a log in a folder that fits no layout
    (root / "base2new/test_new/dtd/shots_16/QCoOp/vit_b16_c4/seed4").mkdir(parents=True)
    write_log(root / "misc/notes", 50.0)
    report = build_report(root, sizes=False)  # never raises
    w = "\n".join(report.warnings)
    assert "dataset EuroSAT present for QCoOp only; left out of averages" in w
    assert "unfinished run, no final accuracy (stopped at epoch 1/3)" in w
    assert "malformed log" in w and "'n/a' is not a number" in w
    assert "seed4: no log.txt" in w
    assert "fits no known layout" in w
    assert "dataset DTD incomplete" in w and "missing seed(s) 3" in w
    assert "dataset Caltech101 incomplete" in w
    # every dataset is incomplete for someone: no average, but the cells that exist are shown
    summary = report.tables[0]
    assert "0 datasets" in summary.title
    assert rows_by_method(summary)["CoOp"] == [None, None, None]
    base = rows_by_method(report.tables[1])
    assert base["CoOp"][1].n == 2 and not base["CoOp"][1].complete  # DTD: seeds 1, 2 only
    text = render(report)
    assert "80.00 (n=2)" in text and "Warnings:" in text


def test_average_excludes_incomplete_dataset_for_all_methods(tmp_path: Path) -> None:
    cells = dict(B2N)
    cells[("CoOp", "dtd")] = ([80.0, 80.0, None], [50.0, 52.0, None])
    report = build_report(make_b2n(tmp_path / "output", cells), sizes=False)
    s = rows_by_method(report.tables[0])
    assert s["CoOp"][:2] == [91.0, 61.0] and s["QCoOp"][:2] == [89.0, 71.0]  # Caltech101 only
    assert "Average over 1 dataset(s) (Caltech101)" in report.tables[0].caption


def test_expected_seeds_option(tmp_path: Path) -> None:
    report = build_report(make_b2n(tmp_path / "output"), sizes=False, seeds=[1, 2, 3, 4])
    assert any("missing seed(s) 4" in w for w in report.warnings)


def make_transfer(root: Path) -> Path:
    accs = {
        "CoOp": {
            "imagenet": 71.5,
            "imagenetv2": 64.2,
            "imagenet_sketch": 48.0,
            "caltech101": 93.7,
            "oxford_pets": 89.1,
        },
        "QCoOp": {
            "imagenet": 70.6,
            "imagenetv2": 63.8,
            "imagenet_sketch": 48.9,
            "caltech101": 94.1,
            "oxford_pets": 90.5,
        },
    }
    for trainer, per in accs.items():
        for seed, delta in ((1, -0.5), (2, 0.0), (3, 0.5)):
            for ds, acc in per.items():
                if ds == "imagenet":
                    write_log(root / f"imagenet/{trainer}/vit_b16_16shots/seed{seed}", acc + delta, "coop")
                else:
                    write_log(
                        root / f"evaluation/{trainer}/vit_b16_16shots/{ds}/seed{seed}", acc + delta, "eval"
                    )
    write_log(root / "ZeroshotCLIP/vit_b16/imagenetv2", 60.8, "eval")  # eval logs: Dassl's one decimal
    write_log(root / "ZeroshotCLIP/vit_b16/imagenet_sketch", 46.2, "eval")
    write_log(root / "ZeroshotCLIP/vit_b16/imagenet", 66.7, "eval")
    return root


def test_domain_generalization_and_cross_dataset(tmp_path: Path) -> None:
    root = make_transfer(tmp_path / "output")
    dg = build_report(root, setting="dg", sizes=False)
    assert dg.warnings == []
    (t,) = dg.tables
    assert t.headers == ["Method", "ImageNet (source)", "-V2", "-Sketch", "Average"]
    r = rows_by_method(t)
    assert [c.mean for c in r["CoOp"][:3]] == pytest.approx([71.5, 64.2, 48.0])
    assert r["CoOp"][0].spread == pytest.approx(math.sqrt(1 / 6))
    assert r["CoOp"][3] == pytest.approx((64.2 + 48.0) / 2)
    assert r["CLIP"][3] == pytest.approx((60.8 + 46.2) / 2) and r["CLIP"][0].mean == 66.7
    xd = build_report(root, setting="xd", sizes=False)
    (t,) = xd.tables
    assert t.headers == ["Method", "ImageNet (source)", "Caltech101", "Pets", "Average"]
    assert rows_by_method(t)["QCoOp"][3] == pytest.approx((94.1 + 90.5) / 2)
    assert "source excluded" in t.caption


def test_fewshot_tables_group_configs_per_shots(tmp_path: Path) -> None:
    root = tmp_path / "output"
    acc = {(1, "caltech101"): 87.0, (1, "dtd"): 44.0, (2, "caltech101"): 88.0, (2, "dtd"): 46.0}
    for (shots, ds), a in acc.items():
        cfg = "rn50_ep50" if shots == 1 else "rn50"  # CoOp's scripts change config with the shots
        for seed in (1, 2):
            write_log(root / f"{ds}/CoOp/{cfg}_{shots}shots/nctx16_cscFalse_ctpend/seed{seed}", a, "coop")
    write_log(root / "ZeroshotCLIP/rn50/caltech101", 86.0, "eval")
    write_log(root / "ZeroshotCLIP/rn50/dtd", 42.0, "eval")
    report = build_report(root, sizes=False)
    assert report.warnings == []
    summary = report.tables[0]
    assert summary.headers == ["Method", "1 shots", "2 shots"]
    assert rows_by_method(summary) == {"CLIP": [64.0, 64.0], "CoOp": [65.5, 67.0]}
    assert report.data["fewshot"]["curves"] == {"CoOp": {1: 65.5, 2: 67.0}}
    one = report.tables[1]
    assert one.headers == ["Method", "Caltech101", "DTD", "Average"]


@pytest.mark.parametrize("fmt", ["terminal", "github", "latex", "csv"])
def test_every_output_format(tmp_path: Path, fmt: str) -> None:
    cells = dict(B2N)
    cells[("QCoOp", "eurosat")] = ([70.0] * 3, [50.0] * 3)
    report = build_report(make_b2n(tmp_path / "output", cells), sizes=False)
    text = render(report, fmt=fmt, show_spread=True)
    if fmt == "terminal":
        assert "Base-to-new generalization: average over 2 datasets\n=====" in text
        assert "Warnings:\n  - base2new: dataset EuroSAT" in text
    elif fmt == "github":
        assert "| Method   | Base   | New   | H     |" in text and "|----------|" in text
        assert "> **Warnings**" in text
    elif fmt == "latex":
        assert text.count("\\begin{tabular}{lrrr") == 4 and "\\toprule" in text and "\\caption{" in text
        assert "CoOp & 85.50 & 56.50 & 68.04 \\\\" in text
        assert "91.00 $\\pm$ 0.82" in text and "textbackslash" not in text  # escaped once, not twice
        assert "% - base2new: dataset EuroSAT" in text
    else:
        blocks = [b for b in text.strip().split("\n\n")]
        assert len(blocks) == 4
        rows = list(csv.reader(io.StringIO(blocks[0])))
        assert rows[0] == ["# Base-to-new generalization: average over 2 datasets"]
        assert rows[1] == ["Method", "Base", "New", "H"]
        assert rows[2][:3] == ["CoOp", "85.50", "56.50"]
        eurosat = list(csv.reader(io.StringIO(blocks[1])))
        assert eurosat[2][3] == ""  # CoOp has no EuroSAT: empty cell, not "-"
        assert "Warnings" not in text  # warnings go to stderr for csv


def test_bold_best_and_latex_escaping(tmp_path: Path) -> None:
    report = build_report(make_b2n(tmp_path / "output"), sizes=False)
    md = render(report, fmt="github", bold_best=True)
    assert "| QCoOp    | 84.00     | **65.50** | **73.61** |" in md  # best New and H of the summary
    assert "| CoOp     | **85.50** | 56.50     | 68.04     |" in md
    report.tables[0].rows[0][0] = "CoOp (vit_b16_c4)"
    tex = render(report, fmt="latex", bold_best=True)
    assert "CoOp (vit\\_b16\\_c4) & \\textbf{85.50} & 56.50 & 68.04 \\\\" in tex
    assert render(report, fmt="csv", bold_best=True) == render(report, fmt="csv")


def test_cli_table_mode_and_strict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_b2n(tmp_path / "output")
    out_file = tmp_path / "t.md"
    assert (
        parse_main([str(root), "--table", "base2new", "--format", "github", "--no-size", "-o", str(out_file)])
        == 0
    )
    out = capsys.readouterr().out
    assert "| CoOp" in out and out_file.read_text() in out
    assert parse_main([str(root), "--table", "--no-size", "--strict"]) == 0
    capsys.readouterr()
    write_log(root / "base2new/test_new/dtd/shots_16/CoOp/vit_b16_c4/seed4", None, "eval")  # unfinished
    assert parse_main([str(root), "--table", "--no-size"]) == 0
    assert parse_main([str(root), "--table", "--no-size", "--strict"]) == 1
    assert parse_main([str(root), "--table", "--no-size", "--format", "csv", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "Warnings:" in err and "seed4" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert parse_main([str(empty), "--table"]) == 1


def test_coop_usage_seed_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exp = tmp_path / "my_experiment"
    for seed, acc in ((1, 70.0), (2, 71.0), (3, 72.0)):
        write_log(exp / f"seed{seed}", acc, "coop")
    assert parse_main([str(exp)]) == 0
    out = capsys.readouterr().out
    assert f"Summary of directory: {exp}" in out
    assert "* accuracy: 71.00% +- 0.82% (n=3)" in out
    assert parse_main([str(exp), "--ci95"]) == 0
    assert f"+- {4.302652729911275 / math.sqrt(3):.2f}%" in capsys.readouterr().out
    assert parse_main([str(exp), "--keyword", "macro_f1"]) == 0
    assert "* macro_f1: 70.30%" in capsys.readouterr().out


def test_coop_usage_test_log_multi_exp_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "exps"
    for exp, accs in (("exp-1", (60.0, 62.0)), ("exp-2", (80.0, 82.0))):
        for seed, acc in enumerate(accs, start=1):
            write_log(root / exp / f"seed{seed}", acc, "eval")
    (root / "exp-2" / "seed3").mkdir()  # a seed folder with no log
    assert parse_main([str(root), "--multi-exp", "--test-log"]) == 0
    out = capsys.readouterr().out
    assert "Average performance\n* accuracy: 71.00%" in out
    assert "seed3: no log.txt" in out
    assert parse_main([str(root), "--multi-exp", "--strict"]) == 1
    capsys.readouterr()
    assert parse_main([str(root)]) == 1  # an output root given without --table
    assert "--table" in capsys.readouterr().err
