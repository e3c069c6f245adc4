"""Dassl trainers of QuantPrompt: importing this package registers them in ``TRAINER_REGISTRY``.

QCoOp, QCoCoOp, QMaPLe (quantized prompts), P4Q (prompts + adapter on a post-training-quantized CLIP), NoiseCoOp (Gaussian-noise prompts) and the baselines CoOp, CoCoOp,
MaPLe, ZeroshotCLIP. In a pipeline that already registered a baseline name (a CoOp or MaPLe checkout), ours
stays unregistered and one warning says so. :func:`extend_cfg` adds the config keys they read.
"""

from . import base as _base

_base._DEFER[0] = True
try:
    from . import cocoop, coop, maple, p4q, qcocoop, qcoop, qmaple, zsclip  # noqa: F401  (registration)
finally:
    _base._DEFER[0] = False
    _base._warn_skipped()

from .base import PromptTrainer, skipped_baselines, validate_cfg  # noqa: E402
from .cocoop import CoCoOp  # noqa: E402
from .config import extend_cfg  # noqa: E402
from .coop import CoOp, NoiseCoOp  # noqa: E402
from .maple import MaPLe  # noqa: E402
from .p4q import P4Q  # noqa: E402
from .qcocoop import QCoCoOp  # noqa: E402
from .qcoop import QCoOp  # noqa: E402
from .qmaple import QMaPLe  # noqa: E402
from .zsclip import ZeroshotCLIP  # noqa: E402

__all__ = [
    "CoCoOp", "CoOp", "MaPLe", "NoiseCoOp", "P4Q", "PromptTrainer", "QCoCoOp", "QCoOp", "QMaPLe", "ZeroshotCLIP",
    "extend_cfg", "skipped_baselines", "validate_cfg",
]
