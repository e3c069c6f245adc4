"""The same trainers under real Dassl.pytorch, when it is installed (the engine path is tested elsewhere)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dassl") is None,
    reason="Dassl.pytorch is not importable here; the trainers' engine path is covered by test_trainers_e2e.py",
)


@pytest.mark.parametrize("trainer", ["QCoOp", "CoOp", "QMaPLe", "P4Q"])
def test_trainer_runs_under_dassl(tmp_path: Path, trainer: str) -> None:
    from quantprompt.testing import make_dataset

    make_dataset(tmp_path / "data", "Caltech101", n_classes=4, images_per_class=8, seed=0)
    out = tmp_path / "out"
    env = dict(os.environ, QUANTPROMPT_BACKEND="dassl", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(tmp_path / "data"), "--seed", "1",
           "--trainer", trainer, "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
           "--config-file", str(REPO / f"configs/trainers/{trainer}/tiny.yaml"), "--output-dir", str(out),
           # the tiny configs' one warmup epoch: our trainers build their LR schedules with the engine's
           # schedulers, which run on torch >= 2.7 (Dassl's own warmup wrapper does not, unpatched)
           "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2", "USE_CUDA", "False"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert re.search(r"^\* accuracy: [\d.]+%$", log, re.M)
    folder = out / ("MultiModalPromptLearner" if "MaPLe" in trainer else "prompt_learner")
    assert (folder / "model.pth.tar-2").is_file()
    if trainer.startswith("Q") or trainer == "P4Q":
        assert (folder / "model.qpt-2").is_file()
    if trainer == "QCoOp":  # --eval-only from the packed prompt gives the checkpoint's accuracy
        accs = []
        for load_qpt in ("False", "True"):
            ev = [*cmd[:cmd.index("--output-dir")], "--output-dir", str(tmp_path / f"eval{load_qpt}"),
                  "--model-dir", str(out), "--load-epoch", "2", "--eval-only", "DATASET.NUM_SHOTS", "2",
                  "DATASET.SUBSAMPLE_CLASSES", "new", "TEST.LOAD_QPT", load_qpt, "USE_CUDA", "False"]
            res = subprocess.run(ev, env=env, capture_output=True, text=True, cwd=tmp_path)
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
            accs.append(re.findall(r"^\* accuracy: ([\d.]+)%$", (tmp_path / f"eval{load_qpt}" / "log.txt").read_text(),
                                   re.M)[-1])
        assert accs[0] == accs[1]
