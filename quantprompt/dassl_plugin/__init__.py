"""QuantPrompt's Dassl trainers; importing this package registers them in the running ``TRAINER_REGISTRY``.

The entry point for any CoOp-family checkout (CoOp, CoCoOp, MaPLe, PromptSRC): two added lines in its
``train.py`` (see docs/existing-checkout.md)::

    import quantprompt.dassl_plugin as qp     # beside the checkout's own `import trainers.*` lines
    ...
    def extend_cfg(cfg):
        ...                                     # the checkout's own keys
        qp.extend_cfg(cfg)                      # adds TRAINER.QPROMPT.* and any key the host lacks

Importing registers our methods, the entries of :data:`TRAINERS` that are not baselines (QCoOp, QCoCoOp,
QMaPLe, NoiseCoOp, P4Q). The baselines (CoOp, CoCoOp, MaPLe, ZeroshotCLIP) are the host's business: they are
registered only by ``register_all(include_baselines=True)`` (this repository's ``trainers/`` package does
that), and a name the host already registered keeps the host's class, with one warning. So the import may
come before or after the host's own trainer imports. :func:`patch_dassl_for_new_torch` (opt-in) makes the
host's *own* trainers' warmup run on torch >= 2.7. ``qp.quantize_trainers("PromptSRC", ...)`` (one more line,
after the host's trainer imports) registers ``QPromptSRC`` ...: the host's own trainer with QPrompt applied to
what it trains (:mod:`.wrap`).
"""

from __future__ import annotations

import importlib

from .base import PromptTrainer, register, skipped_baselines, validate_cfg, warn_skipped
from .catalog import TRAINERS
from .config import extend_cfg
from .torch_compat import patch_dassl_for_new_torch
from .wrap import QuantizedHost, quantize_trainers, wrap_trainer


def trainer_classes() -> dict[str, type]:
    """Class name -> class of every entry of :data:`TRAINERS` (imports their modules)."""
    return {name: getattr(importlib.import_module(f"{__name__}.{module}"), name) for module, name, _ in TRAINERS}


def register_all(include_baselines: bool = False) -> list[str]:
    """Register our methods, and with ``include_baselines`` the baselines where their names are free
    (idempotent); return the names now bound to our classes."""
    classes = trainer_classes()
    ours = [name for _, name, baseline in TRAINERS
            if (include_baselines or not baseline) and register(classes[name], baseline)]
    warn_skipped(stacklevel=3)
    return ours


register_all()
globals().update(trainer_classes())  # qp.QCoOp ... : the classes of TRAINERS, without a second list

__all__ = [
    "TRAINERS", "PromptTrainer", "QuantizedHost", "extend_cfg", "patch_dassl_for_new_torch", "quantize_trainers",
    "register", "register_all", "skipped_baselines", "trainer_classes", "validate_cfg", "wrap_trainer",
    *(name for _, name, _ in TRAINERS),
]
