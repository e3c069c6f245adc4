"""What every prompt model shares: precision handling, freezing CLIP, logits, eval-mode text cache."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .cache import TextFeatureCache
from .text import TextEncoder

PRECISIONS = ("fp16", "fp32", "amp")


def clip_device(clip_model: nn.Module) -> torch.device:
    return next(clip_model.parameters()).device


def apply_precision(clip_model: nn.Module, precision: str) -> str:
    """Put ``clip_model`` (in place, like CoOp's trainers) in the dtype of CoOp's ``PREC`` and return the
    precision actually used.

    fp32 / amp: ``clip_model.float()``. fp16: CLIP's fp16 weights (``clip.model.convert_weights``) on CUDA;
    on CPU (or meta) fp16 kernels are missing or slow, so fp16 is promoted to fp32 with a notice, unless
    ``QUANTPROMPT_CPU_HALF=1`` (:mod:`quantprompt.clip.precision`; the test suite's way to run fp16 on a CPU).
    """
    from quantprompt.clip.precision import cpu_half_enabled

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)} (CoOp's PREC)")
    if precision == "fp16":
        device_type = clip_device(clip_model).type
        if device_type == "meta" or (device_type != "cuda" and not cpu_half_enabled()):
            warnings.warn(
                "precision fp16 requested on CPU: promoted to fp32 (fp16 needs CUDA; tests keep it with "
                "QUANTPROMPT_CPU_HALF=1)", UserWarning, stacklevel=3
            )
            clip_model.float()
            return "fp32"
        from quantprompt.clip._openai import openai_clip

        openai_clip().model.convert_weights(clip_model)
        return "fp16"
    clip_model.float()
    return precision


def check_n_ctx(n_ctx: Any) -> int:
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"n_ctx={n_ctx!r} must be an integer >= 1 (number of learnable context tokens)")
    return n_ctx


class PromptModel(nn.Module):
    """Base class: ``model(images) -> logits``; learned parts in ``model.prompt_learner``.

    Subclasses implement ``_text_features()`` (image-independent models) or override ``forward``.
    """

    #: whether text features are image independent (then they are cached in eval mode)
    cacheable: bool = True
    name: str = ""

    def __init__(self, clip_model: nn.Module, precision: str) -> None:
        super().__init__()
        self.precision = apply_precision(clip_model, precision)
        self.requested_precision = precision
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.quant_config: Any = None
        self.noise_config: Any = None
        self._text_cache = TextFeatureCache()
        self._clip = [clip_model]  # not a submodule: its parts are registered above
        self.image_encoder.eval()
        self.text_encoder.eval()

    # -- CLIP ---------------------------------------------------------------------------------------
    @property
    def clip_model(self) -> nn.Module:
        return self._clip[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.clip_model.dtype

    def freeze_clip(self) -> None:
        """CoOp: 'Turning off gradients in both the image and the text encoder' (all but prompt_learner)."""
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith("prompt_learner."))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should update (all of them live in ``prompt_learner``)."""
        return [p for p in self.prompt_learner.parameters() if p.requires_grad]

    # -- text features and cache --------------------------------------------------------------------
    def _text_dependencies(self) -> Iterator[torch.Tensor]:
        yield from self.prompt_learner.parameters()
        yield from self.prompt_learner.buffers()
        yield from self.text_encoder.parameters()

    def _text_features(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def invalidate_cache(self) -> None:
        """Drop cached features (done automatically on parameter change or train mode)."""
        self._text_cache.invalidate()
        if hasattr(self, "_vision_cache"):
            self._vision_cache.invalidate()

    def _cache_allowed(self) -> bool:
        """Eval mode of the prompt learner and no autograd graph needed for a learnable tensor."""
        if self.prompt_learner.training:
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self._text_dependencies()))

    def text_features(self) -> torch.Tensor:
        """Normalised text features of all classes, cached in eval mode without a graph to build."""
        if not self._cache_allowed():
            self._text_cache.invalidate()
            return self._normalized_text_features()
        return self._text_cache.get(self._text_dependencies(), self._normalized_text_features)

    def _normalized_text_features(self) -> torch.Tensor:
        feats = self._text_features()
        return feats / feats.norm(dim=-1, keepdim=True)

    def train(self, mode: bool = True) -> PromptModel:
        """Switch the prompt learner; the frozen CLIP stays in eval mode (CoOp's trainers only switch the
        prompt learner, so e.g. a ResNet's BatchNorm keeps its running statistics and never updates them)."""
        self.invalidate_cache()
        super().train(mode)
        self.image_encoder.eval()
        self.text_encoder.eval()
        return self

    # -- forward ------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images.type(self.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> logits (B, n_cls) = exp(logit_scale) * cos(image, text)."""
        image_features = self.encode_image(images)
        text_features = self.text_features()
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()
