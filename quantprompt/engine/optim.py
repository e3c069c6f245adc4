"""Optimizers and learning-rate schedules built from ``cfg.OPTIM``, with Dassl.pytorch's semantics.

The LR a CoOp/CoCoOp/MaPLe run sees at every epoch must be the one Dassl would give it (that is what makes the
two backends agree), including the quirks of Dassl's warmup wrappers:

* the wrapped schedule (``successor``) is built first, then the warmup scheduler takes over the optimizer;
* ``constant`` warmup holds ``WARMUP_CONS_LR`` for ``WARMUP_EPOCH`` epochs, then the base LR for one epoch (the
  successor's initial value), then the successor steps;
* ``linear`` warmup starts at ``WARMUP_MIN_LR`` and ramps ``base_lr * e / WARMUP_EPOCH``;
* ``WARMUP_RECOUNT=False`` starts the successor at ``last_epoch = WARMUP_EPOCH``.

Unlike Dassl, the warmup schedulers' ``state_dict`` nests the successor's *state dict* instead of the successor
object itself, so a checkpoint holding it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Union

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "AVAI_OPTIMS",
    "AVAI_SCHEDS",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
    "build_optimizer",
]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


def build_optimizer(
    model: Union[nn.Module, Iterable[Any]], optim_cfg: Any, param_groups: Any = None
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``optim_cfg.NAME`` over ``model``'s parameters (or ``param_groups``).

    ``OPTIM.STAGED_LR`` gives the children of ``model`` not listed in ``OPTIM.NEW_LAYERS`` the learning rate
    ``LR * BASE_LR_MULT``, as in Dassl.
    """
    name = optim_cfg.NAME
    lr = optim_cfg.LR
    weight_decay = optim_cfg.WEIGHT_DECAY
    if name not in AVAI_OPTIMS:
        raise ValueError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got {name!r}")

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "OPTIM.STAGED_LR is ignored because param_groups were given; build the staged groups yourself.",
            stacklevel=2,
        )

    if param_groups is None:
        if optim_cfg.STAGED_LR:
            if not isinstance(model, nn.Module):
                raise TypeError("OPTIM.STAGED_LR=True needs build_optimizer() to receive an nn.Module")
            if isinstance(model, nn.DataParallel):
                model = model.module
            new_layers = optim_cfg.NEW_LAYERS
            if isinstance(new_layers, str):
                new_layers = [new_layers]
            if not new_layers:
                warnings.warn("OPTIM.NEW_LAYERS is empty, so OPTIM.STAGED_LR has no effect", stacklevel=2)
            base_params: list[nn.Parameter] = []
            new_params: list[nn.Parameter] = []
            for child_name, child in model.named_children():
                (new_params if child_name in new_layers else base_params).extend(child.parameters())
            param_groups = [{"params": base_params, "lr": lr * optim_cfg.BASE_LR_MULT}, {"params": new_params}]
        else:
            param_groups = model.parameters() if isinstance(model, nn.Module) else model

    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=weight_decay,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    if name == "radam":
        # torch's RAdam (Dassl ships its own copy, which falls back to SGD-like steps early on).
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)


class _BaseWarmupScheduler(LRScheduler):
    """Runs its own ``get_lr`` for ``warmup_epoch`` steps, then hands every ``step()`` to ``successor``."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int,
                 last_epoch: int = -1) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: Any = None) -> None:  # noqa: D401 - torch's signature
        if epoch is not None:
            raise TypeError("warmup schedulers are stepped without an epoch argument (as Dassl's trainers do)")
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step()
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step()

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        successor_state = state.pop("successor", None)
        if isinstance(successor_state, dict):
            self.successor.load_state_dict(successor_state)
        elif successor_state is not None:  # a Dassl checkpoint that pickled the successor object
            self.successor.load_state_dict(successor_state.state_dict())
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """``cons_lr`` during warmup (Dassl's ``WARMUP_TYPE: constant``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int,
                 cons_lr: float, last_epoch: int = -1) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return list(self.successor.get_last_lr())
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """``min_lr`` at step 0, then ``base_lr * step / warmup_epoch`` (Dassl's ``WARMUP_TYPE: linear``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int,
                 min_lr: float, last_epoch: int = -1) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return list(self.successor.get_last_lr())
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    """Build ``optim_cfg.LR_SCHEDULER`` (single_step, multi_step or cosine), wrapped in a warmup if asked.

    The scheduler is stepped once per epoch (CoOp's trainers call ``update_lr`` after the last batch).
    """
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    gamma = optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH
    if name not in AVAI_SCHEDS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got {name!r}")

    scheduler: LRScheduler
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"OPTIM.STEPSIZE must be an integer for single_step, but got {stepsize!r}")
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=gamma)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"OPTIM.STEPSIZE must be a list for multi_step, but got {stepsize!r}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize), gamma=gamma)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR
            )
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise ValueError(
                f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', but got {optim_cfg.WARMUP_TYPE!r}"
            )
    return scheduler
