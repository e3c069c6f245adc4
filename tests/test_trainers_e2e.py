"""Trainers through train.py (in process, engine backend, tiny CLIP, synthetic Caltech101).

Packed prompt (.qpt) size and loading, bit-exact resume, checkpoint content, PTQ, per-epoch evaluation and
prompt snapshots.
"""

from __future__ import annotations

import json
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
from trainrun import accuracy, argv, cfg_for, run  # noqa: E402  (tests/trainrun.py: shared with other tests)

from quantprompt import quant  # noqa: E402
from quantprompt.engine.compat import build_trainer  # noqa: E402

SHOTS = "2"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("e2e") / "data"
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def qcoop_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qcoop") / "train"
    run(argv(data, "QCoOp", out, "OPTIM.MAX_EPOCH", "2"))
    return out


def test_qpt_size_matches_size_report(qcoop_run: Path, data: Path) -> None:
    folder = qcoop_run / "prompt_learner"
    blob = (folder / "model.qpt-2").read_bytes()
    meta = quant.read_metadata(blob)
    assert meta["method"] == "qcoop" and meta["bits"] == 1 and meta["n_ctx"] == 4
    assert meta["class_token_position"] == "end" and meta["clip"] == "tiny-vit"
    assert len(meta["classnames"]) == 2 and len(meta["classnames_sha256"]) == 64
    assert meta["options"]["ctx_init"] == "a photo of a"
    # rebuild the trained model from its checkpoint and ask size_report what export will write
    trainer = build_trainer(cfg_for(argv(data, "QCoOp", qcoop_run.parent / "probe", "OPTIM.MAX_EPOCH", "2")))
    trainer.load_model(str(qcoop_run), epoch=2)
    trainer.epoch = 1
    report = quant.size_report(trainer.model, metadata=trainer.qpt_metadata())
    assert report["total_bytes"] == len(blob)
    width = trainer.model.prompt_learner.ctx.shape[-1]
    assert report["payload_bytes"] == (1 * 4 * width + 7) // 8 + 2 * 2**1  # b*N bits + 2^b fp16 centers
    log = (qcoop_run / "log.txt").read_text()
    assert f"= {len(blob)} bytes" in log


def test_eval_only_from_qpt_equals_checkpoint(qcoop_run: Path, data: Path, tmp_path: Path) -> None:
    common = ("--model-dir", str(qcoop_run), "--load-epoch", "2", "--eval-only")
    from_ckpt = run(argv(data, "QCoOp", tmp_path / "a", sub="new", extra=common))
    from_qpt = run(argv(data, "QCoOp", tmp_path / "b", "TEST.LOAD_QPT", "True", sub="new", extra=common))
    assert 'model.pth.tar-2"' in from_ckpt and "model.qpt-2" in from_qpt
    assert accuracy(from_ckpt) == accuracy(from_qpt)
    # a folder that holds only the packed prompt is loaded without the flag
    only = tmp_path / "only_qpt"
    (only / "prompt_learner").mkdir(parents=True)
    shutil.copy(qcoop_run / "prompt_learner" / "model.qpt-2", only / "prompt_learner" / "model.qpt-2")
    from_only = run(argv(data, "QCoOp", tmp_path / "c", sub="new",
                         extra=("--model-dir", str(only), "--load-epoch", "2", "--eval-only")))
    assert accuracy(from_only) == accuracy(from_ckpt)
    # and the logits agree, not just the accuracy
    logits = []
    for load_qpt in ("False", "True"):
        cfg = cfg_for(argv(data, "QCoOp", tmp_path / f"d{load_qpt}", "TEST.LOAD_QPT", load_qpt, sub="new"))
        trainer = build_trainer(cfg)
        trainer.load_model(str(qcoop_run), epoch=2)
        trainer.set_model_mode("eval")
        batch = next(iter(trainer.test_loader))
        with torch.no_grad():
            logits.append(trainer.model(batch["img"]))
    assert torch.allclose(logits[0], logits[1], atol=1e-5, rtol=0)


def test_checkpoint_holds_only_learned_tensors(qcoop_run: Path) -> None:
    ckpt = torch.load(qcoop_run / "prompt_learner" / "model.pth.tar-2", map_location="cpu", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert {"ctx", "ctx.qprompt_latent", "ctx.qprompt_quantizer.centers"} <= keys
    assert all(k == "ctx" or k.startswith("ctx.qprompt_") for k in keys), keys
    assert ckpt["state_dict"]["ctx"].unique().numel() <= 2  # CoOp's name holds the 1-bit values the model uses
    assert ckpt["epoch"] == 2 and ckpt["optimizer"] is not None


def _cut_back(src: Path, dst: Path, epoch: int, folder: str = "prompt_learner") -> None:
    """The output folder of a run killed right after epoch ``epoch``."""
    (dst / folder).mkdir(parents=True)
    name = f"model.pth.tar-{epoch}"
    shutil.copy(src / folder / name, dst / folder / name)
    (dst / folder / "checkpoint").write_text(name + "\n")


@pytest.mark.parametrize("trainer", ["QCoOp", "NoiseCoOp"])
def test_resume_is_bit_exact(data: Path, tmp_path: Path, trainer: str) -> None:
    opts = ("OPTIM.MAX_EPOCH", "3")
    full = tmp_path / "full"
    run(argv(data, trainer, full, *opts))
    cut = tmp_path / "cut"
    _cut_back(full, cut, 1)
    log = run(argv(data, trainer, cut, *opts, extra=("--resume", str(cut))))
    assert "Found checkpoint at" in log and "epoch [2/3]" in log and "epoch [1/3]" not in log
    a = torch.load(full / "prompt_learner" / "model.pth.tar-3", map_location="cpu", weights_only=True)
    b = torch.load(cut / "prompt_learner" / "model.pth.tar-3", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    if trainer == "QCoOp":
        assert (full / "prompt_learner" / "model.qpt-3").read_bytes() == \
            (cut / "prompt_learner" / "model.qpt-3").read_bytes()
    assert accuracy((full / "log.txt").read_text()) == accuracy(log)


def test_maple_checkpoint_names(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "maple"
    run(argv(data, "QMaPLe", out, "OPTIM.MAX_EPOCH", "1"))
    folder = out / "MultiModalPromptLearner"
    ckpt = torch.load(folder / "model.pth.tar-1", map_location="cpu", weights_only=True)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith("prompt_learner.") for k in keys)
    assert not any("image_encoder" in k or "token_prefix" in k for k in keys)
    assert (folder / "model.qpt-1").is_file()
    assert quant.read_metadata((folder / "model.qpt-1").read_bytes())["bits"] == 4


def test_ptq_packs_after_training(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ptq"
    log = run(argv(data, "QCoOp", out, "OPTIM.MAX_EPOCH", "2", "TRAINER.QPROMPT.MODE", "ptq"))
    assert "PTQ: prompt quantized after training" in log
    folder = out / "prompt_learner"
    assert (folder / "model.pth.tar-1").is_file() and not (folder / "model.qpt-1").exists()
    assert (folder / "model.qpt-2").is_file()
    assert "Storage of learned parameters (packed .qpt)" in log


def test_per_epoch_eval_and_snapshots(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves"
    log = run(argv(data, "QCoOp", out, "OPTIM.MAX_EPOCH", "2", "TEST.PER_EPOCH", "True",
                   "TRAIN.SAVE_PROMPT_SNAPSHOTS", "True"))
    assert len(re.findall(r"^per-epoch evaluation: epoch \[\d/2\] base [\d.]+% new [\d.]+%$", log, re.M)) == 2
    rows = json.loads((out / "per_epoch_eval.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all({"base", "new"} <= set(r) for r in rows)
    # the final evaluation line stays the only "* accuracy" line (parsers read it)
    assert len(re.findall(r"^\* accuracy:", log, re.M)) == 1
    from safetensors.torch import load_file

    index = json.loads((out / "prompt_snapshots" / "index.json").read_text())
    assert index == {"0": "epoch-0.safetensors", "1": "epoch-1.safetensors", "2": "epoch-2.safetensors"}
    snap = load_file(str(out / "prompt_snapshots" / "epoch-2.safetensors"))
    assert set(snap) == {"ctx", "ctx.quantized"}
    assert snap["ctx.quantized"].unique().numel() <= 2  # 1 bit: two values
    first = load_file(str(out / "prompt_snapshots" / "epoch-0.safetensors"))
    assert not torch.equal(first["ctx"], snap["ctx"])


def test_config_error_stops_before_training(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"TRAINER\.QPROMPT\.BITS=9 is out of range 1\.\.8"):
        run(argv(data, "QCoOp", tmp_path / "bad", "TRAINER.QPROMPT.BITS", "9"))
    assert not (tmp_path / "bad" / "prompt_learner").exists()


def test_backbone_name_accepts_a_local_weights_file(data: Path, tmp_path: Path) -> None:
    """MODEL.BACKBONE.NAME takes any quantprompt.clip.load spec: here a local safetensors state dict."""
    from safetensors.torch import save_file

    from quantprompt import clip as qclip

    weights = tmp_path / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in qclip.tiny(seed=0).state_dict().items()}, str(weights))
    out = tmp_path / "local"
    log = run(argv(data, "QCoOp", out, "OPTIM.MAX_EPOCH", "1", "MODEL.BACKBONE.NAME", str(weights)))
    assert f"Loading CLIP (backbone: {weights})" in log
    meta = quant.read_metadata((out / "prompt_learner" / "model.qpt-1").read_bytes())
    assert meta["clip"] == str(weights)
    named = run(argv(data, "QCoOp", tmp_path / "named", "OPTIM.MAX_EPOCH", "1"))
    assert accuracy(log) == accuracy(named)  # same weights as the "tiny-vit" spec
