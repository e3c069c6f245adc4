"""Checkpoints: Dassl's names and keys, weights_only loads, clear errors, resume and pretrained-weight loading."""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from quantprompt.engine.checkpoint import (
    CheckpointError,
    SafeCheckpointMixin,
    load_checkpoint,
    load_pretrained_weights,
    load_scheduler_state,
    resume_from_checkpoint,
    save_checkpoint,
    scheduler_state_dict,
)
from quantprompt.engine.config import get_cfg_default
from quantprompt.engine.optim import ConstantWarmupScheduler, build_lr_scheduler, build_optimizer


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    optimizer = build_optimizer(model, cfg.OPTIM)
    scheduler = build_lr_scheduler(optimizer, cfg.OPTIM)
    return model, optimizer, scheduler


def _train_step(model, optimizer, scheduler) -> None:
    optimizer.zero_grad()
    model(torch.ones(4, 3)).pow(2).sum().backward()
    optimizer.step()
    scheduler.step()


def test_save_names_pointer_and_best_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer, scheduler = _setup()
    _train_step(model, optimizer, scheduler)
    state = {"state_dict": OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items()), "epoch": 3,
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "val_result": np.float64(71.25)}
    path = save_checkpoint(state, str(tmp_path / "prompt_learner"), is_best=True)
    assert path == str(tmp_path / "prompt_learner" / "model.pth.tar-3")
    assert sorted(os.listdir(tmp_path / "prompt_learner")) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-3\n"
    out = capsys.readouterr().out
    assert f"Checkpoint saved to {path}" in out
    assert f'Best checkpoint saved to "{tmp_path / "prompt_learner" / "model-best.pth.tar"}"' in out

    loaded = load_checkpoint(path)
    assert set(loaded) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert list(loaded["state_dict"]) == ["weight", "bias"]  # "module." stripped
    assert loaded["val_result"] == 71.25 and type(loaded["val_result"]) is float
    assert torch.equal(loaded["state_dict"]["weight"], model.weight)
    torch.load(tmp_path / "prompt_learner" / "model-best.pth.tar", weights_only=True)

    save_checkpoint({"state_dict": model.state_dict(), "epoch": 3, "val_result": 1.0},
                    str(tmp_path / "prompt_learner"), model_name="model-best.pth.tar")
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model-best.pth.tar\n"  # as Dassl


def test_save_refuses_objects_that_weights_only_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['obj'\].*weights_only=True"):
        save_checkpoint({"state_dict": {}, "epoch": 1, "extra": {"obj": object()}}, str(tmp_path))
    assert not os.path.exists(tmp_path / "model.pth.tar-1")


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fpath=None"):
        load_checkpoint(None)
    missing = tmp_path / "model.pth.tar-9"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_checkpoint(str(missing))
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(str(corrupt))
    truncated = tmp_path / "truncated.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 1}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=str(truncated)):
        load_checkpoint(str(truncated))
    pickled = tmp_path / "pickled.pth.tar"
    with open(pickled, "wb") as f:  # a plain pickle of an arbitrary object: never executed
        pickle.dump({"state_dict": {}, "epoch": 1, "obj": _Unsafe()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="safely"):
        load_checkpoint(str(pickled))
    assert not _Unsafe.loaded
    with pytest.raises(IsADirectoryError):
        load_checkpoint(str(tmp_path))


class _Unsafe:
    loaded = False

    def __setstate__(self, state: dict) -> None:  # would run on an unsafe load
        type(self).loaded = True


def test_resume_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, optimizer, scheduler = _setup(0)
    for _ in range(2):
        _train_step(model, optimizer, scheduler)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 2, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "val_result": None}, str(tmp_path))
    for _ in range(3):
        _train_step(model, optimizer, scheduler)
    expected = model.weight.detach().clone()

    model2, optimizer2, scheduler2 = _setup(1)  # different init: everything must come from the file
    capsys.readouterr()
    start = resume_from_checkpoint(str(tmp_path), model2, optimizer2, scheduler2)
    out = capsys.readouterr().out
    assert start == 2
    assert f'Loading checkpoint from "{tmp_path / "model.pth.tar-2"}"' in out
    assert "Loaded optimizer" in out and "Loaded scheduler" in out and "Previous epoch: 2" in out
    for _ in range(3):
        _train_step(model2, optimizer2, scheduler2)
    assert torch.equal(model2.weight, expected)
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]

    epoch, extras = resume_from_checkpoint(str(tmp_path), model2, return_extras=True)
    assert epoch == 2 and extras == {"best_result": None, "rng_state": None}


def test_a_save_interrupted_while_writing_the_pointer_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed between the checkpoint and its pointer must stay resumable (the grid resumes killed runs)."""
    from quantprompt.engine import checkpoint as ckpt

    model = torch.nn.Linear(3, 2)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path))

    def killed_mid_write(path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:3])
        raise KeyboardInterrupt  # as SIGINT/SIGTERM arriving half-way through the write

    monkeypatch.setattr(ckpt, "_write_text", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": 2}, str(tmp_path))
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]  # no temp file
    assert resume_from_checkpoint(str(tmp_path), torch.nn.Linear(3, 2)) == 1


def test_a_run_killed_before_its_first_pointer_resumes_from_its_latest_complete_save(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantprompt.engine.checkpoint import resume_models

    model = torch.nn.Linear(3, 2)
    for epoch in (2, 10):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": epoch}, str(tmp_path / "prompt_learner"))
    os.remove(tmp_path / "prompt_learner" / "checkpoint")
    (tmp_path / "prompt_learner" / ".model.pth.tar-11.part-4242").write_bytes(b"half a save")  # SIGKILL mid-save
    capsys.readouterr()
    assert resume_from_checkpoint(str(tmp_path / "prompt_learner"), torch.nn.Linear(3, 2)) == 10
    assert f'Loading checkpoint from "{tmp_path / "prompt_learner" / "model.pth.tar-10"}"' in capsys.readouterr().out

    class Trainer:  # the three things resume_models reads of a trainer
        _models = {"prompt_learner": torch.nn.Linear(3, 2)}
        _optims = {"prompt_learner": None}
        _scheds = {"prompt_learner": None}

        def get_model_names(self) -> list[str]:
            return ["prompt_learner"]

    assert resume_models(Trainer(), str(tmp_path)) == 10
    for name in ("model.pth.tar-2", "model.pth.tar-10"):
        os.remove(tmp_path / "prompt_learner" / name)
    capsys.readouterr()
    assert resume_models(Trainer(), str(tmp_path)) == 0  # killed during the first save: start over
    assert "No checkpoint found, train from scratch" in capsys.readouterr().out


def test_resume_without_pointer_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='No "checkpoint" file'):
        resume_from_checkpoint(str(tmp_path), torch.nn.Linear(1, 1))


def test_scheduler_state_helpers_flatten_a_nested_successor() -> None:
    model, optimizer, scheduler = _setup()
    _train_step(model, optimizer, scheduler)

    class DasslLikeWarmup:  # Dassl's warmup state_dict() holds its successor *object*
        def __init__(self, successor):
            self.successor = successor
            self.last_epoch = 1

        def state_dict(self):
            return {"successor": self.successor, "last_epoch": self.last_epoch}

    wrapped = DasslLikeWarmup(scheduler.successor)
    state = scheduler_state_dict(wrapped)
    assert isinstance(state["successor"], dict) and state["last_epoch"] == 1
    target = DasslLikeWarmup(_setup()[2].successor)
    target.last_epoch = 0
    load_scheduler_state(target, state)
    assert target.last_epoch == 1 and target.successor.last_epoch == scheduler.successor.last_epoch
    assert scheduler_state_dict(None) is None


def test_load_pretrained_weights_matches_names_and_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5))
    path = tmp_path / "weights.pth"
    state = OrderedDict((f"module.{k}", v) for k, v in source.state_dict().items())
    torch.save({"state_dict": state}, path)
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))  # second layer differs
    load_pretrained_weights(target, str(path))
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[1].bias[:2], source[1].bias[:2])
    out = capsys.readouterr().out
    assert "Successfully loaded pretrained weights" in out and "['1.weight', '1.bias']" in out
    torch.save({"other": torch.zeros(1)}, tmp_path / "none.pth")
    with pytest.warns(UserWarning, match="Cannot load"):
        load_pretrained_weights(target, str(tmp_path / "none.pth"))


class _DasslStyleWarmup(ConstantWarmupScheduler):
    """Dassl's warmup as Dassl writes it: torch's default state_dict, which holds the successor *object*."""

    state_dict = LRScheduler.state_dict
    load_state_dict = LRScheduler.load_state_dict


class _DasslLikeTrainer(SafeCheckpointMixin):
    """Only what Dassl's TrainerBase offers the mixin: _models/_optims/_scheds and get_model_names."""

    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(3, 2)
        self.optim = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        successor = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim, 10.0)
        self.sched = _DasslStyleWarmup(self.optim, successor, 1, 1e-5)
        self._models = {"prompt_learner": self.model}
        self._optims = {"prompt_learner": self.optim}
        self._scheds = {"prompt_learner": self.sched}
        self.best_result = -float("inf")

    def get_model_names(self):
        return list(self._models)

    def epoch_step(self) -> None:
        _train_step(self.model, self.optim, self.sched)


def test_safe_checkpoint_mixin_makes_dassl_style_trainers_weights_only(tmp_path: Path) -> None:
    trainer = _DasslLikeTrainer(0)
    plain = io.BytesIO()
    with pytest.raises(Exception, match="Can't pickle|weights_only|Unsupported|cannot"):
        torch.save({"scheduler": trainer.sched.state_dict()}, plain)
        plain.seek(0)
        torch.load(plain, weights_only=True)  # what Dassl's own save_model would give: refused

    for _ in range(2):
        trainer.epoch_step()
    trainer.best_result = 55.5
    trainer.save_model(1, str(tmp_path), val_result=55.5)
    checkpoint = load_checkpoint(str(tmp_path / "prompt_learner" / "model.pth.tar-2"))
    assert isinstance(checkpoint["scheduler"]["successor"], dict)
    assert {"best_result", "rng_state"} <= set(checkpoint)
    random_after_save = torch.rand(3)
    for _ in range(3):
        trainer.epoch_step()

    resumed = _DasslLikeTrainer(1)
    torch.rand(7)  # disturb the RNG: resume must restore it
    assert resumed.resume_model_if_exist(str(tmp_path)) == 2
    assert torch.equal(torch.rand(3), random_after_save)
    assert resumed.best_result == 55.5
    for _ in range(3):
        resumed.epoch_step()
    assert torch.equal(resumed.model.weight, trainer.model.weight)
    assert resumed.optim.param_groups[0]["lr"] == trainer.optim.param_groups[0]["lr"]
    assert _DasslLikeTrainer(2).resume_model_if_exist(str(tmp_path / "elsewhere")) == 0
