"""Opt-in repair of Dassl.pytorch's warmup schedulers for torch >= 2.7 (the host pipeline's own trainers).

What breaks, in Dassl's ``dassl/optim/lr_scheduler.py`` (unchanged since 2022):

1. ``_BaseWarmupScheduler.__init__`` hands ``verbose`` to torch's ``LRScheduler.__init__`` as a third
   positional argument. torch 2.7 removed that parameter, so building any schedule with
   ``OPTIM.WARMUP_EPOCH > 0`` (every CoOp, CoCoOp and MaPLe config) raises ``TypeError: LRScheduler.__init__()
   takes from 2 to 3 positional arguments but 4 were given``.
2. Its ``state_dict()`` is torch's, which returns the wrapped scheduler (``successor``) as an object, so every
   checkpoint pickles a scheduler instance. Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``,
   which refuses it: ``--eval-only`` and ``--resume`` fail on those checkpoints.

:func:`patch_dassl_for_new_torch` replaces those three methods of Dassl's class in the running process: the
constructor no longer forwards ``verbose`` (torch's verbose printing is gone anyway), and the state nests the
successor's own state dict. The LR at every epoch is unchanged. Our own trainers do not need it (they build
their schedules with :mod:`quantprompt.engine.optim`); it is for the host's CoOp/CoCoOp/MaPLe trainers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["patch_dassl_for_new_torch", "patch_warmup_scheduler_class"]

_MARK = "_quantprompt_torch_compat"


def _init(self: Any, optimizer: Any, successor: Any, warmup_epoch: int, last_epoch: int = -1,
          verbose: bool = False) -> None:
    from torch.optim.lr_scheduler import LRScheduler

    self.successor = successor
    self.warmup_epoch = warmup_epoch
    LRScheduler.__init__(self, optimizer, last_epoch)  # `verbose` is not forwarded: torch >= 2.7 refuses it


def _state_dict(self: Any) -> dict[str, Any]:
    state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "successor")}
    state["successor"] = self.successor.state_dict()
    return state


def _load_state_dict(self: Any, state_dict: dict[str, Any]) -> None:
    state = dict(state_dict)
    successor = state.pop("successor", None)
    if isinstance(successor, dict):
        self.successor.load_state_dict(successor)
    elif successor is not None:  # a checkpoint written before the patch (pickled scheduler object)
        self.successor.load_state_dict(successor.state_dict())
    self.__dict__.update(state)


def patch_warmup_scheduler_class(cls: type) -> bool:
    """Give ``cls`` (Dassl's ``_BaseWarmupScheduler``, or any class with its constructor signature
    ``(optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False)``) the repaired methods.

    Returns True when it patched, False when ``cls`` was patched already (calling twice is harmless).
    """
    from torch.optim.lr_scheduler import LRScheduler

    if not (isinstance(cls, type) and issubclass(cls, LRScheduler)):
        raise TypeError(f"{cls!r} is not a torch LRScheduler class; nothing to patch")
    if cls.__dict__.get(_MARK):
        return False
    cls.__init__ = _init  # type: ignore[misc]
    cls.state_dict = _state_dict  # type: ignore[method-assign]
    cls.load_state_dict = _load_state_dict  # type: ignore[method-assign]
    setattr(cls, _MARK, True)
    return True


def patch_dassl_for_new_torch() -> bool:
    """Make Dassl.pytorch's warmup schedulers (``ConstantWarmupScheduler``, ``LinearWarmupScheduler``) work on
    torch >= 2.7 and write checkpoints that load with ``weights_only=True``, in this process.

    Call it once, before the trainer is built (e.g. right after ``import quantprompt.dassl_plugin as qp`` in a
    CoOp or MaPLe ``train.py``). Returns True when it patched, False when already patched. Raises ImportError
    when Dassl is not importable (the built-in engine needs no patch).
    """
    try:
        from dassl.optim import lr_scheduler as dassl_lr_scheduler
    except ImportError as err:
        raise ImportError(
            "patch_dassl_for_new_torch() repairs Dassl.pytorch, which is not importable in this environment "
            f"({err}); install Dassl.pytorch, or drop the call (quantprompt's own engine needs no patch)"
        ) from err
    return patch_warmup_scheduler_class(dassl_lr_scheduler._BaseWarmupScheduler)
