"""Prompt learners on OpenAI CLIP: zero-shot CLIP, CoOp, CoCoOp, MaPLe and their quantized forms.

``build(name, clip_model, classnames, **options)`` returns an ``nn.Module`` with ``model(images) -> logits``;
everything learned lives in ``model.prompt_learner`` (whose ``state_dict`` holds only learned tensors and
quantizer state). No Dassl, no yacs: options are plain Python values.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from .base import PRECISIONS, PromptModel
from .cocoop import CoCoOp
from .coop import CLASS_TOKEN_POSITIONS, CoOp
from .maple import MaPLe
from .quantized import DEFAULT_BITS, apply_noise, apply_quantization, default_targets, quant_options
from .size import fp16_bytes, storage_bytes
from .zeroshot import CUSTOM_TEMPLATES, IMAGENET_TEMPLATES, IMAGENET_TEMPLATES_SELECT, ZeroShotCLIP

_BASE = {"zsclip": ZeroShotCLIP, "coop": CoOp, "cocoop": CoCoOp, "maple": MaPLe,
         "noisecoop": CoOp, "qcoop": CoOp, "qcocoop": CoCoOp, "qmaple": MaPLe}
MODEL_NAMES = tuple(_BASE) + ("p4q",)
#: models whose text features are image independent: cached once per evaluation in eval mode
CACHED_MODELS = ("zsclip", "coop", "noisecoop", "qcoop", "maple", "qmaple", "p4q")


def _model_options(cls: type) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "clip_model", "classnames")}


def build(name: str, clip_model: nn.Module, classnames: Sequence[str], **options: Any) -> PromptModel:
    """Build prompt model ``name`` on ``clip_model`` for ``classnames``.

    Converts ``clip_model`` in place to ``precision`` (CoOp's PREC; fp16 on CPU becomes fp32 with a
    warning) and freezes it. Options: see docs/prompting.md (n_ctx, ctx_init, csc, class_token_position,
    prompt_depth, precision, template/dataset/ensemble, bits/targets/... for q-models, noise_std).
    Unknown names or options raise ValueError listing the valid ones.
    """
    key = str(name).lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown prompt model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if key == "p4q":  # quantprompt.p4q builds on this package: imported here, not at the top
        from quantprompt.p4q.model import P4Q

        cls: type = P4Q
    else:
        cls = _BASE[key]
    allowed = _model_options(cls)
    extra: set[str] = set()
    if key.startswith("q"):
        extra = set(quant_options())
    elif key == "noisecoop":
        extra = {"noise_std", "noise_targets"}
    unknown = sorted(set(options) - allowed - extra)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {key!r}; valid: {', '.join(sorted(allowed | extra))}"
        )
    device = next(clip_model.parameters()).device
    model = cls(clip_model, classnames, **{k: v for k, v in options.items() if k in allowed})
    if device.type != "meta":
        model.prompt_learner.to(device)
    model.name = key
    if key.startswith("q"):
        model.quant_config = apply_quantization(key, model, options)
    elif key == "noisecoop":
        std = options.get("noise_std", 0.01)
        if isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
            raise ValueError(f"noise_std={std!r} must be a number >= 0 (std of the Gaussian noise on ctx)")
        model.noise_config = apply_noise(model, float(std), options.get("noise_targets"))
    return model


__all__ = [
    "build", "MODEL_NAMES", "CACHED_MODELS", "PromptModel", "CoOp", "CoCoOp", "MaPLe", "ZeroShotCLIP",
    "PRECISIONS", "CLASS_TOKEN_POSITIONS", "CUSTOM_TEMPLATES", "IMAGENET_TEMPLATES", "IMAGENET_TEMPLATES_SELECT",
    "DEFAULT_BITS", "quant_options", "default_targets", "storage_bytes", "fp16_bytes",
]
