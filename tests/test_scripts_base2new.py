"""Base-to-new scripts end to end on the tiny CLIP and a synthetic Caltech101, for every trainer (engine backend).

Each trainer's ``scripts/<method>/base2new_train.sh`` trains on the base classes and ``base2new_test.sh``
evaluates that model on the new classes, exactly as a user would run them (from another directory, dataset
root from ``DATA``), with the tiny config and a few KEY VALUE overrides passed through.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = {"qcoop": "QCoOp", "qcocoop": "QCoCoOp", "qmaple": "QMaPLe", "coop": "CoOp", "cocoop": "CoCoOp",
           "maple": "MaPLe", "zsclip": "ZeroshotCLIP", "noisecoop": "NoiseCoOp", "p4q": "P4Q"}
MODEL_DIR = {"QMaPLe": "MultiModalPromptLearner", "MaPLe": "MultiModalPromptLearner"}
EPOCHS = 2
SHOTS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("b2n")
    data = root / "data"
    make_dataset(data, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    elsewhere = root / "cwd"
    elsewhere.mkdir()
    return {"data": data, "out": root / "output", "cwd": elsewhere, "runs": {}}


def _env(world: dict, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS")}
    env.update(QUANTPROMPT_BACKEND="engine", DATA=str(world["data"]), OUTPUT=str(world["out"]), CFG="tiny",
               PYTHON=sys.executable, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def script(world: dict, method: str, name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    path = REPO / "scripts" / method / name
    return subprocess.run(["bash", str(path), *args], cwd=world["cwd"], env=_env(world, **env),
                          capture_output=True, text=True)


def run_b2n(world: dict, method: str) -> dict:
    """Train on base + test on new once per method (cached for the tests below)."""
    if method not in world["runs"]:
        opts = ["--shots", str(SHOTS), "OPTIM.MAX_EPOCH", str(EPOCHS), "OPTIM.WARMUP_EPOCH", "0"]
        tr = script(world, method, "base2new_train.sh", "caltech101", "1", *opts)
        assert tr.returncode == 0, tr.stdout[-3000:] + tr.stderr[-3000:]
        te = script(world, method, "base2new_test.sh", "caltech101", "1", *opts)
        assert te.returncode == 0, te.stdout[-3000:] + te.stderr[-3000:]
        trainer = METHODS[method]
        common = Path("caltech101") / f"shots_{SHOTS}" / trainer / "tiny" / "seed1"
        world["runs"][method] = {
            "train_dir": world["out"] / "base2new" / "train_base" / common,
            "test_dir": world["out"] / "base2new" / "test_new" / common,
            "train_out": tr.stdout, "test_out": te.stdout,
        }
    return world["runs"][method]


def _epoch_losses(log: str) -> dict[int, float]:
    """Average loss of each epoch, from the last progress line of the epoch (``loss val (avg)``)."""
    out = {}
    for m in re.finditer(r"epoch \[(\d+)/\d+\] batch \[\d+/\d+\].*? loss [\d.]+ \(([\d.]+)\)", log):
        out[int(m.group(1))] = float(m.group(2))
    return out


@pytest.mark.parametrize("method", list(METHODS))
def test_base2new_train_and_test(world: dict, method: str) -> None:
    run = run_b2n(world, method)
    trainer = METHODS[method]
    train_log = (run["train_dir"] / "log.txt").read_text()
    test_log = (run["test_dir"] / "log.txt").read_text()
    for log in (train_log, test_log):
        assert re.search(r"^\* accuracy: [\d.]+%$", log, re.M), log[-2000:]
        assert "Evaluate on the *test* set" in log
    # base classes for training, new classes for testing: the two halves of the 4 classes
    assert re.search(r"# classes\s+2", train_log) and re.search(r"# classes\s+2", test_log)
    if trainer == "ZeroshotCLIP":
        assert "nothing to train" in train_log
        return
    folder = run["train_dir"] / MODEL_DIR.get(trainer, "prompt_learner")
    assert (folder / f"model.pth.tar-{EPOCHS}").is_file()
    assert f'model.pth.tar-{EPOCHS}"' in test_log  # the test run loaded the trained checkpoint
    losses = _epoch_losses(train_log)
    assert sorted(losses) == list(range(1, EPOCHS + 1))
    assert losses[EPOCHS] < losses[1], f"{trainer}: training loss did not fall: {losses}"
    assert "Storage of learned parameters" in train_log
    if trainer.startswith("Q"):
        assert (folder / f"model.qpt-{EPOCHS}").is_file()
        assert re.search(r"^CAC: ", train_log, re.M)
        size = int(re.search(r"Storage of learned parameters \(packed \.qpt\):.* = (\d+) bytes", train_log)[1])
        assert size == (folder / f"model.qpt-{EPOCHS}").stat().st_size


def test_finished_runs_are_skipped(world: dict) -> None:
    run_b2n(world, "qcoop")
    again = script(world, "qcoop", "base2new_train.sh", "caltech101", "1", "--shots", str(SHOTS))
    assert again.returncode == 0
    assert "Results are available in" in again.stdout
    assert "epoch [" not in again.stdout  # nothing was trained


def test_unfinished_run_is_resumed(world: dict) -> None:
    run = run_b2n(world, "coop")
    # a copy of the finished run, cut back to "killed after epoch 1"
    src = run["train_dir"]
    dst = world["out"] / "base2new" / "train_base" / "caltech101" / "shots_9" / "CoOp" / "tiny" / "seed1"
    (dst / "prompt_learner").mkdir(parents=True)
    (dst / "prompt_learner" / "model.pth.tar-1").write_bytes((src / "prompt_learner" / "model.pth.tar-1").read_bytes())
    (dst / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    full_log = (src / "log.txt").read_text()
    (dst / "log.txt").write_text(full_log[: full_log.index("Checkpoint saved to")])  # the killed run's log
    res = script(world, "coop", "base2new_train.sh", "caltech101", "1", "--shots", "9",
                 "DATASET.NUM_SHOTS", str(SHOTS), "OPTIM.MAX_EPOCH", str(EPOCHS))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Unfinished run in" in res.stdout and "resuming" in res.stdout
    logs = sorted(dst.glob("log.txt-*"))  # the resumed run logs beside the killed run's log.txt
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "Found checkpoint at" in log and "epoch [1/" not in log and f"epoch [{EPOCHS}/{EPOCHS}]" in log
    again = script(world, "coop", "base2new_train.sh", "caltech101", "1", "--shots", "9")
    assert again.returncode == 0 and "Results are available in" in again.stdout


def test_bad_dataset_lists_valid_names(world: dict) -> None:
    res = script(world, "qcoop", "base2new_train.sh", "caltech", "1")
    assert res.returncode != 0
    assert "unknown dataset 'caltech'" in res.stderr
    for name in ("caltech101", "oxford_pets", "imagenet", "eurosat"):
        assert name in res.stderr


def test_missing_dataset_root_is_explained(world: dict) -> None:
    res = script(world, "coop", "base2new_train.sh", "caltech101", "1", DATA="")
    assert res.returncode != 0 and "DATA=/path/to/datasets" in res.stderr
    res = script(world, "coop", "base2new_train.sh", "caltech101", "1", DATA=str(world["cwd"] / "nope"))
    assert res.returncode != 0 and "is not a directory" in res.stderr


def test_bad_seed_and_config_are_explained(world: dict) -> None:
    res = script(world, "qmaple", "base2new_train.sh", "caltech101", "one")
    assert res.returncode != 0 and "seed must be a non-negative integer" in res.stderr
    res = script(world, "qmaple", "base2new_train.sh", "caltech101", "1", CFG="vit_b99")
    assert res.returncode != 0 and "configs/trainers/QMaPLe/vit_b99.yaml" in res.stderr
    assert "vit_b16_c2_ep5_batch4_2ctx" in res.stderr


def test_every_method_has_every_script() -> None:
    names = {"base2new_train.sh", "base2new_test.sh", "xd_train.sh", "xd_test.sh", "dg_train.sh", "dg_test.sh",
             "fewshot.sh", "benchmark.sh"}
    for method in METHODS:
        have = {p.name for p in (REPO / "scripts" / method).glob("*.sh")}
        assert names <= have, (method, names - have)
        for name in names:
            syntax = subprocess.run(["bash", "-n", str(REPO / "scripts" / method / name)], capture_output=True)
            assert syntax.returncode == 0, (method, name, syntax.stderr)
