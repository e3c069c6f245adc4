"""Figures from synthetic logs and snapshots: decodable PNGs of reasonable size; one command each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from quantprompt.results import plots
from quantprompt.results.plotcli import main as plot_main
from quantprompt.results.synthetic import write_log

REPO = Path(__file__).resolve().parents[1]


def assert_png(path: Path, min_bytes: int = 8_000) -> None:
    assert path.is_file() and path.stat().st_size > min_bytes
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        assert im.size[0] > 300 and im.size[1] > 200
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not a blank canvas


def make_fewshot(root: Path) -> Path:
    for shots, base in ((1, 60.0), (2, 64.0), (4, 68.0), (8, 71.0), (16, 73.0)):
        for ds, off in (("caltech101", 20.0), ("dtd", -10.0)):
            for trainer, gain in (("CoOp", 0.0), ("QCoOp", 1.5)):
                write_log(
                    root / f"{ds}/{trainer}/rn50_{shots}shots/nctx16_cscFalse_ctpend/seed1",
                    base + off + gain,
                    "coop",
                )
    write_log(root / "ZeroshotCLIP/rn50/caltech101", 80.0, "eval")
    write_log(root / "ZeroshotCLIP/rn50/dtd", 40.0, "eval")
    return root


def make_epoch_runs(root: Path) -> Path:
    for cfg, drift in (("noise_0", -1.0), ("noise_0.01", -0.3), ("noise_0.1", 0.2)):
        for ds in ("dtd", "eurosat"):
            run = root / f"base2new/train_base/{ds}/shots_16/NoiseCoOp/{cfg}/seed1"
            write_log(run, 80.0, "dassl", max_epoch=5, per_epoch={"test": [70.0 + 2 * e for e in range(5)]})
            text = (run / "log.txt").read_text()
            # our trainers' one-line form: base and new per epoch
            lines = [
                f"per-epoch evaluation: epoch [{e}/5] base {70 + 2 * e:.2f}% new {65 + drift * e:.2f}%"
                for e in range(1, 6)
            ]
            (run / "log.txt").write_text(
                text.replace("Finish training", "\n".join(lines) + "\nFinish training")
            )
    return root


def make_snapshots(run: Path, epochs: int = 6) -> Path:
    rng = np.random.default_rng(0)
    folder = run / "prompt_snapshots"
    folder.mkdir(parents=True)
    w = rng.normal(0, 0.02, size=(4, 512)).astype(np.float32)
    for e in range(epochs + 1):
        save_file(
            {"ctx": w, "ctx.quantized": np.sign(w).astype(np.float32) * 0.02},
            str(folder / f"epoch-{e}.safetensors"),
        )
        w = w * 1.3 + rng.normal(0, 0.005 / (e + 1), size=w.shape).astype(np.float32)
    return run


def test_fewshot_curves(tmp_path: Path) -> None:
    out = plots.fewshot_curves(make_fewshot(tmp_path / "output"), tmp_path / "fig5.png")
    assert_png(out)


def test_epoch_curves_from_root_and_explicit_runs(tmp_path: Path) -> None:
    root = make_epoch_runs(tmp_path / "output")
    data = plots.epoch_data(
        {
            "a": [
                root / "base2new/train_base/dtd/shots_16/NoiseCoOp/noise_0.1/seed1",
                root / "base2new/train_base/eurosat/shots_16/NoiseCoOp/noise_0.1/seed1",
            ]
        }
    )
    assert data["a"]["base"] == {1: 72.0, 2: 74.0, 3: 76.0, 4: 78.0, 5: 80.0}
    assert data["a"]["new"][5] == pytest.approx(66.0)
    assert_png(plots.epoch_curves(root, tmp_path / "fig2.png"))
    with pytest.raises(ValueError, match="TEST.PER_EPOCH"):
        plots.epoch_curves(root, tmp_path / "x.png", splits=["nothing"])


def test_per_epoch_json_is_preferred(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_log(run, 80.0, "dassl", per_epoch={"test": [1.0, 2.0, 3.0]})
    (run / "per_epoch_eval.json").write_text('[{"epoch": 1, "base": 70.5, "new": 60.25}]')
    assert plots.read_per_epoch(run) == {"base": {1: 70.5}, "new": {1: 60.25}}


def test_histograms_and_kl(tmp_path: Path) -> None:
    run = make_snapshots(tmp_path / "seed1")
    snaps = plots.read_snapshots(run)
    assert sorted(snaps) == list(range(7)) and snaps[0].shape == (2048,)
    assert set(np.unique(plots.read_snapshots(run, quantized=True)[0]).round(4)) == {-0.02, 0.02}
    assert plots.kl_divergence(snaps[1], snaps[1]) == pytest.approx(0.0, abs=1e-12)
    assert plots.kl_divergence(snaps[1], snaps[0]) > 0
    assert_png(plots.weight_histograms(run, tmp_path / "fig3.png", epochs=[0, 2, 4, 6]))
    assert_png(plots.kl_trend({"CoOp on EuroSAT": run}, tmp_path / "fig6.png"), min_bytes=5_000)
    with pytest.raises(FileNotFoundError, match="SAVE_PROMPT_SNAPSHOTS"):
        plots.read_snapshots(tmp_path)


def test_plot_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_fewshot(tmp_path / "fs")
    run = make_snapshots(tmp_path / "seed1")
    erun = make_epoch_runs(tmp_path / "ep")
    assert plot_main(["fewshot", str(root), "-o", str(tmp_path / "a.png")]) == 0
    assert plot_main(["hist", str(run), "-o", str(tmp_path / "b.png"), "--bins", "30"]) == 0
    assert plot_main(["kl", f"QCoOp={run}", "-o", str(tmp_path / "c.png")]) == 0
    dtd = erun / "base2new/train_base/dtd/shots_16/NoiseCoOp"
    assert (
        plot_main(
            [
                "epochs",
                "--run",
                f"std 0={dtd}/noise_0/seed1",
                "--run",
                f"std 0.1={dtd}/noise_0.1/seed1",
                "-o",
                str(tmp_path / "d.png"),
            ]
        )
        == 0
    )
    for name in "abcd":
        assert_png(tmp_path / f"{name}.png", min_bytes=5_000)
    assert plot_main(["hist", str(tmp_path / "fs"), "-o", str(tmp_path / "e.png")]) == 2  # bad input: exit 2
    assert "error:" in capsys.readouterr().err


def test_tools_plot_script_runs(tmp_path: Path) -> None:
    run = make_snapshots(tmp_path / "seed1", epochs=2)
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "plot.py"), "kl", str(run), "-o", str(tmp_path / "k.png")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert_png(tmp_path / "k.png", min_bytes=5_000)


def test_results_import_is_light() -> None:
    code = "import sys, quantprompt.results; print(sorted({'matplotlib', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
