"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

Follows KaiyangZhou/CoOp ``trainers/cocoop.py``: ``meta_net`` = Linear(vis_dim, vis_dim // 16) -> ReLU ->
Linear(vis_dim // 16, ctx_dim), applied to the normalised image feature, in fp16 when the precision is fp16;
the shifted context builds "<ctx + pi(x)> <class name>." for every class, per image. Text features depend on
the image, so nothing can be cached.

The reference runs the text encoder once per image over all classes. We run it over the (image, class)
prompts of several images at once, at most ``text_batch_size`` prompts per call (config key
``TRAINER.COCOOP.TEXT_BATCH_SIZE``): fewer, larger calls keep a GPU busy when the class count is small, and
the bound keeps evaluation memory in check when it is large. Logits are those of the per-image loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .base import PromptModel
from .coop import init_context
from .text import clean_classnames, register_class_prompts

#: default bound on the prompts per text-encoder call: one image's prompts at ImageNet's 1,000 classes
DEFAULT_TEXT_BATCH_SIZE = 1000


def check_text_batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"text_batch_size={value!r} must be an integer >= 1: the most (image, class) prompts CoCoOp sends "
            f"through the text encoder at once (default {DEFAULT_TEXT_BATCH_SIZE}; lower it to save memory)"
        )
    return value


class CoCoOpPromptLearner(nn.Module):
    def __init__(
        self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int | None, ctx_init: str | None,
        fp16: bool,
    ) -> None:
        super().__init__()
        classnames = clean_classnames(classnames)
        ctx, prompt_prefix, n_ctx = init_context(clip_model, n_ctx, ctx_init)
        self.ctx = nn.Parameter(ctx)
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim
        if vis_dim // 16 < 1:
            raise ValueError(f"CoCoOp needs CLIP's embed dim >= 16 for its meta-net (got {vis_dim})")
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
                ]
            )
        )
        if fp16:
            self.meta_net.half()
        register_class_prompts(self, clip_model, classnames, prompt_prefix, n_ctx)
        self.n_ctx = n_ctx
        self.prompt_prefix = prompt_prefix
        self.classnames = classnames

    def shifted_context(self, im_features: torch.Tensor) -> torch.Tensor:
        """ctx + meta_net(image feature): (B, n_ctx, d)."""
        bias = self.meta_net(im_features).unsqueeze(1)  # (B, 1, d)
        return self.ctx.unsqueeze(0) + bias

    def construct(self, ctx_i: torch.Tensor) -> torch.Tensor:
        """One image's context (n_ctx, d) -> prompts of all classes (n_cls, 77, d)."""
        ctx_i = ctx_i.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx_i, self.token_suffix], dim=1)

    def construct_rows(
        self, ctx: torch.Tensor, image_index: torch.Tensor, class_index: torch.Tensor, length: int
    ) -> torch.Tensor:
        """Prompts of the (image, class) pairs ``(image_index[r], class_index[r])``, first ``length`` positions:
        (rows, length, d) built from the shifted contexts ``ctx`` (B, n_ctx, d)."""
        suffix = self.token_suffix[:, : max(length - 1 - self.n_ctx, 0)]
        return torch.cat([self.token_prefix[class_index], ctx[image_index], suffix[class_index]], dim=1)[:, :length]

    def forward(self, im_features: torch.Tensor) -> torch.Tensor:
        """im_features (B, vis_dim) -> prompts (B, n_cls, 77, d), as the reference returns them."""
        return torch.stack([self.construct(c) for c in self.shifted_context(im_features)])


class CoCoOp(PromptModel):
    name = "cocoop"
    cacheable = False

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: int | None = None,
        ctx_init: str | None = None,
        precision: str = "fp16",
        text_batch_size: int = DEFAULT_TEXT_BATCH_SIZE,
    ) -> None:
        self.text_batch_size = check_text_batch_size(text_batch_size)
        super().__init__(clip_model, precision)
        self.prompt_learner = CoCoOpPromptLearner(
            clip_model, classnames, n_ctx, ctx_init, fp16=self.precision == "fp16"
        )
        self.freeze_clip()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_cls): the prompts of every (image, class) pair, at most ``text_batch_size`` per
        text-encoder call (several images' prompts per call, or part of one image's when it has more)."""
        image_features = self.encode_image(images)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        logit_scale = self.logit_scale.exp()
        learner = self.prompt_learner
        ctx = learner.shifted_context(image_features)  # (B, n_ctx, d)
        n_images, n_cls = image_features.shape[0], learner.n_cls
        rows = torch.arange(n_images * n_cls, device=image_features.device)
        logits = []
        for chunk in rows.split(self.text_batch_size):
            image_index, class_index = chunk // n_cls, chunk % n_cls
            tokenized = learner.tokenized_prompts[class_index]
            prompts = learner.construct_rows(ctx, image_index, class_index, self.text_encoder.length(tokenized))
            text_features = self.text_encoder(prompts, tokenized)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            logits.append(logit_scale * (image_features[image_index] * text_features).sum(dim=-1))
        return torch.cat(logits).view(n_images, n_cls)
