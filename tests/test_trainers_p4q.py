"""The P4Q trainer through train.py (in process, engine backend, tiny CLIP, synthetic Caltech101)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

import torch  # noqa: E402

from quantprompt import quant  # noqa: E402
from tests.test_trainers_e2e import _cut_back, accuracy, argv, run  # noqa: E402

OPTS = ("OPTIM.MAX_EPOCH", "4", "DATASET.NUM_SHOTS", "4")  # 4 classes x 4 shots: 4 steps per epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("p4q") / "data"
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def p4q_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("p4q_run") / "train"
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the function-scoped thread fixture
    try:
        run(argv(data, "P4Q", out, *OPTS, "TRAINER.P4Q.EXPORT", "True", sub="all"))
    finally:
        torch.set_num_threads(old)
    return out


def epoch_losses(log: str) -> list[float]:
    """The running average loss at the last batch of each epoch."""
    rows = re.findall(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\].*? loss [\d.]+ \(([\d.]+)\)", log, re.M)
    return [float(avg) for _, b, n, avg in rows if b == n]


def test_trains_end_to_end(p4q_run: Path) -> None:
    log = (p4q_run / "log.txt").read_text()
    assert re.search(r"P4Q: PTQ calibrated \d+ activation quantizers \(mse\) on 2 batches; W8A8", log)
    losses = epoch_losses(log)
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert re.search(r" ce [\d.]+ \([\d.]+\) kd [\d.]+ \([\d.]+\)", log)  # both terms are logged
    assert re.search(r"^\* accuracy: [\d.]+%$", log, re.M)
    folder = p4q_run / "prompt_learner"
    for epoch in (1, 2, 3, 4):
        assert (folder / f"model.pth.tar-{epoch}").is_file() and (folder / f"model.qpt-{epoch}").is_file()
    ckpt = torch.load(folder / "model.pth.tar-4", map_location="cpu", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert {"ctx", "ctx.qprompt_latent", "adapter.fc1.weight", "adapter.fc1.weight.qprompt_latent"} <= keys
    assert any(k.startswith("act_ranges.") and k.endswith(".scale") for k in keys)
    assert not any("token_prefix" in k for k in keys)
    blob = (folder / "model.qpt-4").read_bytes()
    meta = quant.read_metadata(blob)
    assert meta["method"] == "p4q" and meta["bits"] == 4 and meta["options"]["weight_bits"] == 8
    assert re.search(r"P4Q export saved to .*model\.p4q\.safetensors \(\d+ bytes, 0\.\d+ x the fp32 CLIP\)", log)
    from quantprompt.p4q.export import read_config

    config = read_config(p4q_run / "model.p4q.safetensors")
    assert config["clip"] == "tiny-vit" and len(config["classnames"]) == 4
    assert set(quant.size_report(blob)["tensors"]) == {"prompt_learner.ctx", "prompt_learner.adapter.fc1.weight",
                                                       "prompt_learner.adapter.fc2.weight"}


def test_results_size_column_reads_the_packed_prompt_and_adapter(p4q_run: Path) -> None:
    from quantprompt.results.sizes import format_kb, run_size

    info, problem = run_size(p4q_run, "P4Q")
    blob = (p4q_run / "prompt_learner" / "model.qpt-4").read_bytes()
    assert problem is None and info is not None and info.source == "qpt"
    assert info.payload_bytes == quant.size_report(blob)["payload_bytes"] > 0
    assert format_kb(info.payload_bytes).endswith("KB")


def test_eval_only_reproduces_the_final_accuracy(p4q_run: Path, data: Path, tmp_path: Path) -> None:
    log = run(argv(data, "P4Q", tmp_path / "eval", *OPTS, sub="all",
                   extra=("--model-dir", str(p4q_run), "--load-epoch", "4", "--eval-only")))
    assert accuracy(log) == accuracy((p4q_run / "log.txt").read_text())
    from_qpt = run(argv(data, "P4Q", tmp_path / "eval_qpt", *OPTS, "TEST.LOAD_QPT", "True", sub="all",
                        extra=("--model-dir", str(p4q_run), "--load-epoch", "4", "--eval-only")))
    assert accuracy(from_qpt) == accuracy(log)  # calibration is repeatable, so the .qpt alone suffices


def test_resume_is_bit_exact(p4q_run: Path, data: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    _cut_back(p4q_run, cut, 2)
    log = run(argv(data, "P4Q", cut, *OPTS, sub="all", extra=("--resume", str(cut))))
    assert "epoch [3/4]" in log and "epoch [2/4]" not in log
    a = torch.load(p4q_run / "prompt_learner" / "model.pth.tar-4", map_location="cpu", weights_only=True)
    b = torch.load(cut / "prompt_learner" / "model.pth.tar-4", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert accuracy((p4q_run / "log.txt").read_text()) == accuracy(log)


@pytest.mark.parametrize("key,value,match", [
    ("TRAINER.P4Q.WEIGHT_BITS", "0", r"TRAINER\.P4Q\.WEIGHT_BITS=0 is out of range 2\.\.8"),
    ("TRAINER.P4Q.WEIGHT_BITS", "9", r"TRAINER\.P4Q\.WEIGHT_BITS=9 is out of range 2\.\.8"),
    ("TRAINER.P4Q.CALIBRATOR", "kl", r"TRAINER\.P4Q\.CALIBRATOR='kl' is not one of minmax, percentile, mse"),
    ("TRAINER.P4Q.ACT_RANGE", "half", r"TRAINER\.P4Q\.ACT_RANGE='half' is not one of auto, full, reduced"),
    ("TRAINER.P4Q.LAMBDA", "-0.5", r"TRAINER\.P4Q\.LAMBDA=-0\.5 is out of range"),
    ("TRAINER.P4Q.TEACHER", "/no/such/ckpt", r"TRAINER\.P4Q\.TEACHER='/no/such/ckpt' is not a file"),
])
def test_bad_keys_fail_at_start_up(data: Path, tmp_path: Path, key: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(argv(data, "P4Q", tmp_path / "bad", key, value))
    assert not (tmp_path / "bad" / "prompt_learner").exists()


def test_teacher_from_a_coop_checkpoint(data: Path, tmp_path: Path) -> None:
    coop = tmp_path / "coop"
    run(argv(data, "CoOp", coop, "OPTIM.MAX_EPOCH", "1"))
    ckpt = coop / "prompt_learner" / "model.pth.tar-1"
    log = run(argv(data, "P4Q", tmp_path / "p4q", "OPTIM.MAX_EPOCH", "1", "TRAINER.P4Q.TEACHER", str(ckpt)))
    assert re.search(r"^\* accuracy: [\d.]+%$", log, re.M)
    shutil.rmtree(tmp_path / "p4q")


def test_zero_shot_ptq_evaluates_and_its_test_run_reuses_the_base_calibration(data: Path, tmp_path: Path) -> None:
    """TRAINER.P4Q.ZERO_SHOT: the "training" run learns nothing (no epoch, no checkpoint, Size 0) and writes
    the calibration only; the evaluation run on the new classes loads it instead of calibrating on them."""
    from safetensors.torch import load_file

    from quantprompt.results.sizes import run_size

    train = tmp_path / "train"
    log = run(argv(data, "P4Q", train, *OPTS, "TRAINER.P4Q.ZERO_SHOT", "True"))
    assert "has nothing to train: evaluating" in log and "epoch [" not in log
    accuracy(log)
    calibration = train / "prompt_learner" / "calibration.safetensors"
    ranges = load_file(str(calibration))
    assert ranges and all(k.endswith((".scale", ".zero_point")) for k in ranges)
    assert not list((train / "prompt_learner").glob("model*"))  # nothing learned, nothing else saved
    info, problem = run_size(train, "P4Q")
    assert problem is None and info is not None and info.payload_bytes == 0
    test = run(argv(data, "P4Q", tmp_path / "test", *OPTS, "TRAINER.P4Q.ZERO_SHOT", "True", sub="new",
                    extra=("--model-dir", str(train), "--load-epoch", "4", "--eval-only")))
    assert f'Loading the PTQ calibration from "{calibration}"' in test
    accuracy(test)
    with pytest.raises(FileNotFoundError, match="PTQ calibration not found"):
        run(argv(data, "P4Q", tmp_path / "orphan", *OPTS, "TRAINER.P4Q.ZERO_SHOT", "True", sub="new",
                 extra=("--model-dir", str(tmp_path / "nowhere"), "--load-epoch", "4", "--eval-only")))
