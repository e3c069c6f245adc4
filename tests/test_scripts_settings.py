"""Cross-dataset, domain-generalization, few-shot and benchmark scripts: CoOp's output trees, tiny runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("settings")
    for name in ("ImageNet", "ImageNetV2", "Caltech101"):
        make_dataset(root / "data", name, n_classes=4, images_per_class=6, seed=0)
    (root / "cwd").mkdir()
    return {"data": root / "data", "out": root / "output", "cwd": root / "cwd"}


def script(world: dict, method: str, name: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS", "SEEDS")}
    env.update(QUANTPROMPT_BACKEND="engine", OUTPUT=str(world["out"]), CFG="tiny", PYTHON=sys.executable,
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    res = subprocess.run(["bash", str(REPO / "scripts" / method / name), *args], cwd=world["cwd"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _acc(path: Path) -> float:
    found = re.findall(r"^\* accuracy: ([\d.]+)%$", path.read_text(), re.M)
    assert found, path
    return float(found[-1])


def test_cross_dataset_and_domain_generalization(world: dict) -> None:
    # dataset root as an argument this time (relative to the caller's directory)
    opts = ("--data", "../data", "--shots", "2", "OPTIM.MAX_EPOCH", "1")
    script(world, "qcoop", "xd_train.sh", "1", *opts)
    src = world["out"] / "imagenet" / "QCoOp" / "tiny_2shots" / "seed1"
    assert (src / "prompt_learner" / "model.qpt-1").is_file()
    script(world, "qcoop", "xd_test.sh", "caltech101", "1", *opts)
    script(world, "qcoop", "dg_test.sh", "imagenetv2", "1", *opts)
    for target in ("caltech101", "imagenetv2"):
        log = world["out"] / "evaluation" / "QCoOp" / "tiny_2shots" / target / "seed1" / "log.txt"
        assert 0.0 <= _acc(log) <= 100.0
        assert "model.pth.tar-1" in log.read_text()


def test_fewshot_tree(world: dict) -> None:
    script(world, "coop", "fewshot.sh", "caltech101", "1", "3", "OPTIM.MAX_EPOCH", "1", DATA=str(world["data"]),
           NCTX="4")
    log = world["out"] / "caltech101" / "CoOp" / "tiny_1shots" / "nctx4_cscFalse_ctpend" / "seed3" / "log.txt"
    text = log.read_text()
    assert "# train_x  4" in text.replace("\t", "  ") or re.search(r"# train_x\s+4", text)
    assert 0.0 <= _acc(log) <= 100.0


def test_benchmark_runs_every_dataset_and_seed(world: dict) -> None:
    res = script(world, "zsclip", "benchmark.sh", "base2new", "caltech101", DATA=str(world["data"]), SEEDS="1 2")
    for seed in (1, 2):
        for part in ("train_base", "test_new"):
            log = world["out"] / "base2new" / part / "caltech101" / "shots_16" / "ZeroshotCLIP" / "tiny" / \
                f"seed{seed}" / "log.txt"
            assert 0.0 <= _acc(log) <= 100.0
    again = script(world, "zsclip", "benchmark.sh", "base2new", "caltech101", DATA=str(world["data"]), SEEDS="1 2")
    assert again.stdout.count("Results are available in") == 4 and res.stdout.count("Results are available") == 0
