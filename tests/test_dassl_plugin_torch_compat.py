"""``patch_dassl_for_new_torch``: Dassl's warmup schedulers built on torch >= 2.7, same LRs, weights_only states.

The first tests run everywhere against a scheduler class with the constructor shape of Dassl's
``_BaseWarmupScheduler`` (it forwards ``verbose`` positionally to torch, which torch 2.7 refuses); the last one
patches the real Dassl.pytorch whenever it is importable.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from quantprompt.dassl_plugin.torch_compat import patch_dassl_for_new_torch, patch_warmup_scheduler_class
from quantprompt.engine import optim as engine_optim

REPO = Path(__file__).resolve().parents[1]
TORCH_WITHOUT_VERBOSE = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 7)


def _make_classes() -> tuple[type, type]:
    """A fresh (base, constant-warmup) pair per test, so one test's patch never reaches another."""

    class WarmupBase(LRScheduler):  # Dassl's constructor shape: `verbose` handed on positionally
        def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):  # noqa: ANN001
            self.successor = successor
            self.warmup_epoch = warmup_epoch
            super().__init__(optimizer, last_epoch, verbose)  # type: ignore[call-arg]

        def step(self, epoch=None):  # noqa: ANN001  (the wrapped schedule takes over after the warmup)
            if self.last_epoch >= self.warmup_epoch:
                self.successor.step()
                self._last_lr = self.successor.get_last_lr()
            else:
                LRScheduler.step(self)

    class ConstantWarmup(WarmupBase):
        def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1, verbose=False):  # noqa: ANN001
            self.cons_lr = cons_lr
            super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

        get_lr = engine_optim.ConstantWarmupScheduler.get_lr

    return WarmupBase, ConstantWarmup


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.002)


def _lrs(opt: torch.optim.Optimizer, sched: LRScheduler, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_patched_warmup_builds_and_matches_the_engine() -> None:
    base, constant = _make_classes()
    if TORCH_WITHOUT_VERBOSE:  # the failure the patch repairs
        opt = _optimizer()
        with pytest.raises(TypeError, match="positional arguments"):
            constant(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5.0), 1, 1e-5)
    assert patch_warmup_scheduler_class(base) is True
    assert patch_warmup_scheduler_class(base) is False  # idempotent

    opt = _optimizer()
    patched = constant(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5.0), 1, 1e-5)
    ref_opt = _optimizer()
    ref = engine_optim.ConstantWarmupScheduler(ref_opt, torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, 5.0),
                                               1, 1e-5)
    lrs = _lrs(opt, patched, 6)
    assert lrs == _lrs(ref_opt, ref, 6)
    assert lrs[0] == 1e-5 and lrs[1] == 0.002 and lrs[2] < lrs[1]


def test_patched_state_loads_with_weights_only_and_resumes_exactly() -> None:
    base, constant = _make_classes()
    patch_warmup_scheduler_class(base)

    def build() -> tuple[torch.optim.Optimizer, LRScheduler]:
        opt = _optimizer()
        return opt, constant(opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), 2, 1e-4)

    opt, sched = build()
    _lrs(opt, sched, 3)
    buf = io.BytesIO()
    torch.save({"scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["scheduler"]  # no pickled scheduler object inside
    assert isinstance(state["successor"], dict)
    assert (state["last_epoch"], state["successor"]["last_epoch"]) == (2, 1)  # 2 warmup steps, then 1 of StepLR

    opt2, resumed = build()
    resumed.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    assert _lrs(opt2, resumed, 4) == _lrs(opt, sched, 4)


def test_patch_refuses_what_is_not_a_scheduler_and_needs_dassl() -> None:
    with pytest.raises(TypeError, match="not a torch LRScheduler class"):
        patch_warmup_scheduler_class(dict)
    if importlib.util.find_spec("dassl") is None:
        with pytest.raises(ImportError, match="Dassl.pytorch, which is not importable"):
            patch_dassl_for_new_torch()


PROBE = """
import io, torch
from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler
from quantprompt.engine.optim import build_lr_scheduler as engine_build

def lrs(build, kind):
    cfg = get_cfg_default().OPTIM
    cfg.defrost()
    cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = 0.002, 5, "cosine", 1, kind
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=cfg.LR)
    sched = build(opt, cfg)
    out = []
    for _ in range(6):
        out.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    buf = io.BytesIO(); torch.save(sched.state_dict(), buf); buf.seek(0); torch.load(buf, weights_only=True)
    return out

try:
    lrs(build_lr_scheduler, "constant")
    print("unpatched: built")
except TypeError as err:
    print("unpatched: TypeError", err)
import quantprompt.dassl_plugin as qp
print("patched:", qp.patch_dassl_for_new_torch(), qp.patch_dassl_for_new_torch())
for kind in ("constant", "linear"):
    print(kind, lrs(build_lr_scheduler, kind) == lrs(engine_build, kind))
"""


@pytest.mark.skipif(importlib.util.find_spec("dassl") is None,
                    reason="Dassl.pytorch is not importable here; the patch is tested on a Dassl-shaped class above")
def test_patch_repairs_real_dassl() -> None:
    env = dict(os.environ, PYTHONWARNINGS="ignore", QUANTPROMPT_BACKEND="dassl")
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=str(REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    if TORCH_WITHOUT_VERBOSE:
        assert lines[0].startswith("unpatched: TypeError") and "positional arguments" in lines[0]
    assert lines[1:] == ["patched: True False", "constant True", "linear True"]
