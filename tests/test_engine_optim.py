"""Optimizers and LR schedules step exactly as Dassl.pytorch's do (sequences written out from Dassl's code)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from quantprompt.engine.config import get_cfg_default
from quantprompt.engine.optim import (
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
    build_optimizer,
)


def _optim_cfg(**overrides):
    cfg = get_cfg_default()
    for key, value in overrides.items():
        setattr(cfg.OPTIM, key, value)
    return cfg.OPTIM


def _lr_sequence(optim_cfg, epochs: int) -> list[float]:
    """The LR seen during each epoch when the scheduler is stepped once per epoch (CoOp's update_lr)."""
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_lr_scheduler(optimizer, optim_cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _cos(base: float, t: int, total: int) -> float:
    return base * (1 + math.cos(math.pi * t / total)) / 2


def test_coop_schedule_cosine_with_constant_warmup() -> None:
    """CoOp's configs: sgd, LR 0.002, cosine, WARMUP_EPOCH 1, constant 1e-5."""
    cfg = _optim_cfg(NAME="sgd", LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                     WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    # Dassl: epoch 0 the constant LR; epoch 1 the base LR (the successor's initial value); then cosine steps
    # 1, 2, ... (the successor counts from its own start: WARMUP_RECOUNT=True).
    expected = [1e-5, 0.002] + [_cos(0.002, t, 10) for t in range(1, 10)]
    assert _lr_sequence(cfg, 11) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_linear_warmup_then_cosine() -> None:
    cfg = _optim_cfg(NAME="sgd", LR=0.3, MAX_EPOCH=8, LR_SCHEDULER="cosine", WARMUP_EPOCH=3,
                     WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    expected = [1e-5, 0.1, 0.2, 0.3] + [_cos(0.3, t, 8) for t in range(1, 5)]
    assert _lr_sequence(cfg, 8) == pytest.approx(expected, rel=1e-12)


def test_warmup_without_recount_starts_the_successor_at_warmup_epoch() -> None:
    # Dassl sets successor.last_epoch = WARMUP_EPOCH; torch's recursive cosine then scales the *current* LR by
    # (1 + cos(pi (t) / T)) / (1 + cos(pi (t - 1) / T)): a known Dassl quirk, reproduced on purpose.
    cfg = _optim_cfg(NAME="sgd", LR=1.0, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                     WARMUP_TYPE="constant", WARMUP_CONS_LR=0.01, WARMUP_RECOUNT=False)
    lrs = _lr_sequence(cfg, 5)
    ratio = (1 + math.cos(math.pi * 3 / 10)) / (1 + math.cos(math.pi * 2 / 10))
    ratio2 = (1 + math.cos(math.pi * 4 / 10)) / (1 + math.cos(math.pi * 3 / 10))
    assert lrs == pytest.approx([0.01, 0.01, 1.0, ratio, ratio * ratio2], rel=1e-12)


def test_single_and_multi_step() -> None:
    single = _optim_cfg(NAME="sgd", LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5)
    assert _lr_sequence(single, 6) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    whole = _optim_cfg(NAME="sgd", LR=1.0, MAX_EPOCH=3, LR_SCHEDULER="single_step", STEPSIZE=(-1,), GAMMA=0.1)
    assert _lr_sequence(whole, 5) == pytest.approx([1, 1, 1, 0.1, 0.1])  # -1: step size = MAX_EPOCH
    multi = _optim_cfg(NAME="adam", LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.1)
    assert _lr_sequence(multi, 5) == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize(
    ("name", "cls", "checks"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.9, "dampening": 0, "nesterov": False, "weight_decay": 5e-4}),
        ("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "amsgrad": False, "weight_decay": 5e-4}),
        ("amsgrad", torch.optim.Adam, {"amsgrad": True}),
        ("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999)}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0.9}),
        ("radam", torch.optim.RAdam, {"betas": (0.9, 0.999)}),
    ],
)
def test_build_optimizer_uses_dassl_hyperparameters(name: str, cls: type, checks: dict) -> None:
    optimizer = build_optimizer(torch.nn.Linear(2, 2), _optim_cfg(NAME=name, LR=0.01))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01
    for key, value in checks.items():
        assert group[key] == value, key


def test_staged_lr_and_param_list() -> None:
    model = torch.nn.Sequential()
    model.add_module("backbone", torch.nn.Linear(2, 2))
    model.add_module("head", torch.nn.Linear(2, 3))
    optimizer = build_optimizer(model, _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",)))
    base, new = optimizer.param_groups
    assert base["lr"] == pytest.approx(0.01) and new["lr"] == 0.1
    assert {id(p) for p in new["params"]} == {id(p) for p in model.head.parameters()}
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert build_optimizer(params, _optim_cfg(NAME="sgd")).param_groups[0]["params"][0] is params[0]


def test_unknown_names_fail_naming_the_key() -> None:
    with pytest.raises(ValueError, match="OPTIM.NAME .* 'lion'"):
        build_optimizer(torch.nn.Linear(2, 2), _optim_cfg(NAME="lion"))
    optimizer = build_optimizer(torch.nn.Linear(2, 2), _optim_cfg(NAME="sgd"))
    with pytest.raises(ValueError, match="OPTIM.LR_SCHEDULER .* 'poly'"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="OPTIM.WARMUP_TYPE"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))
    with pytest.raises(TypeError, match="OPTIM.STEPSIZE"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))


@pytest.mark.parametrize("warmup_type", ["constant", "linear"])
def test_warmup_state_dict_round_trip_with_weights_only(warmup_type: str) -> None:
    cfg = _optim_cfg(NAME="sgd", LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                     WARMUP_TYPE=warmup_type)
    reference = _lr_sequence(cfg, 10)

    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    assert isinstance(scheduler, ConstantWarmupScheduler if warmup_type == "constant" else LinearWarmupScheduler)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    model2 = torch.nn.Linear(2, 2)
    optimizer2 = build_optimizer(model2, cfg)
    scheduler2 = build_lr_scheduler(optimizer2, cfg)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(6):
        resumed.append(optimizer2.param_groups[0]["lr"])
        optimizer2.step()
        scheduler2.step()
    assert resumed == pytest.approx(reference[4:], rel=1e-12)
