"""End to end through the engine: train QCoOp on the tiny CLIP; the results tools and deployment read what
the trainer wrote (log.txt, per-epoch evaluations, prompt snapshots, .qpt) and `classify` predicts exactly
what the trained model predicts on the same test images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

import train  # noqa: E402
from quantprompt.deploy import Classifier  # noqa: E402
from quantprompt.engine.compat import build_trainer, set_random_seed  # noqa: E402
from quantprompt.results import build_report, plots  # noqa: E402
from quantprompt.testing import make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("e2e")
    make_dataset(tmp / "data", "Caltech101", n_classes=4, images_per_class=6, seed=0)
    out = tmp / "output" / "base2new" / "train_base" / "caltech101" / "shots_16" / "QCoOp" / "tiny" / "seed1"
    args = train.build_parser().parse_args(
        [
            "--root",
            str(tmp / "data"),
            "--seed",
            "1",
            "--trainer",
            "QCoOp",
            "--dataset-config-file",
            str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file",
            str(REPO / "configs/trainers/QCoOp/tiny.yaml"),
            "--output-dir",
            str(out),
            "DATASET.NUM_SHOTS",
            "4",
            "DATASET.SUBSAMPLE_CLASSES",
            "base",
            "OPTIM.MAX_EPOCH",
            "1",
            "TEST.PER_EPOCH",
            "True",
            "TRAIN.SAVE_PROMPT_SNAPSHOTS",
            "True",
        ]
    )
    train.import_plugins()
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    from quantprompt.engine.compat import setup_logger

    setup_logger(cfg.OUTPUT_DIR)
    try:
        trainer = build_trainer(cfg)
        trainer.train()
    finally:
        train._restore_stdout()
    trainer.set_model_mode("eval")
    paths, preds, logits = [], [], []
    with torch.no_grad():
        for batch in trainer.test_loader:
            out_logits = trainer.model(batch["img"].to(trainer.device))
            logits.append(out_logits)
            preds += out_logits.argmax(dim=1).tolist()
            paths += list(batch["impath"])
    return {
        "root": tmp / "output",
        "run": out,
        "trainer": trainer,
        "paths": paths,
        "preds": preds,
        "logits": torch.cat(logits),
        "classnames": list(trainer.dm.dataset.classnames),
    }


def test_classify_matches_the_trained_model(trained: dict) -> None:
    qpt = trained["run"] / "prompt_learner" / "model.qpt-1"
    clf = Classifier(qpt, clip="tiny-vit")
    assert clf.classnames == trained["classnames"]
    preds = clf.classify(trained["paths"], topk=1)
    assert [p.topk[0][0] for p in preds] == [trained["classnames"][i] for i in trained["preds"]]
    images = torch.stack([clf._load_image(Path(p)) for p in trained["paths"]])
    torch.testing.assert_close(clf.logits(images), trained["logits"], rtol=0, atol=1e-4)


def test_results_read_what_the_trainer_wrote(trained: dict, tmp_path: Path) -> None:
    report = build_report(trained["root"], setting="base2new")
    # no test_new runs: the new column is missing, which is a warning, and the size comes from the .qpt
    summary = {row[0]: row for row in report.tables[0].rows}
    assert summary["QCoOp"][1] == "0.03KB"  # 4x48 context at 1 bit: 24 B of indices + 4 B of codebook
    base = {row[0]: row for row in report.tables[1].rows}
    log_acc = base["QCoOp"][1].mean
    correct = sum(int(p == lab) for p, lab in zip(trained["preds"], _labels(trained)))
    assert log_acc == pytest.approx(round(100 * correct / len(trained["preds"]), 1))
    assert any("new no result" in w for w in report.warnings)
    curves = plots.read_per_epoch(trained["run"])
    assert sorted(curves) == ["base", "new"] and sorted(curves["base"]) == [1]
    assert plots.epoch_curves(trained["root"], tmp_path / "fig2.png").stat().st_size > 5_000
    snaps = plots.read_snapshots(trained["run"])
    assert sorted(snaps) == [0, 1] and snaps[0].size == 4 * 48
    assert plots.kl_trend(trained["run"], tmp_path / "fig6.png").stat().st_size > 5_000
    assert (
        plots.weight_histograms(trained["run"], tmp_path / "fig3.png", quantized=True).stat().st_size > 5_000
    )


def _labels(trained: dict) -> list[int]:
    labels: list[int] = []
    for batch in trained["trainer"].test_loader:
        labels += batch["label"].tolist()
    return labels
