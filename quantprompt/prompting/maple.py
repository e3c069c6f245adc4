"""MaPLe (Khattak et al., CVPR 2023): coupled text and vision prompts in the first ``prompt_depth`` layers.

Follows muzairkhattak/multimodal-prompt-learning ``trainers/maple.py`` and its edited ``clip/model.py``, but
without editing CLIP: we run CLIP's own residual blocks in our loop and swap prompt tokens between them.

* Text: prompts "<ctx> ..." as in CoOp (word init when n_ctx <= 4: the first n_ctx token embeddings of
  ``ctx_init``, while the prompt text keeps all of ``ctx_init``); before block i (1 <= i < depth) the tokens
  1..n_ctx are replaced by ``compound_prompts_text[i-1]``.
* Vision: ``proj(ctx)`` (Linear text width -> vision width) is appended after the class and patch tokens
  (after the positional embedding, before ``ln_pre``); before block i (1 <= i < depth) the last n_ctx tokens
  are replaced by ``compound_prompt_projections[i-1](compound_prompts_text[i-1])``.
* dtypes as in the reference: ``ctx`` and ``proj`` in CLIP's dtype, the deep prompts and their projections
  in fp32 (cast to CLIP's dtype where they enter the transformers). The reference hard-codes 512 / 768
  (ViT-B) widths; we read them from the CLIP model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn

from .base import PromptModel, check_n_ctx
from .cache import TextFeatureCache
from .text import clean_classnames, embed_tokens, register_class_prompts, tokenize


def _is_vit(clip_model: nn.Module) -> bool:
    visual = clip_model.visual
    return hasattr(visual, "transformer") and hasattr(visual, "class_embedding")


class MultiModalPromptLearner(nn.Module):
    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: int = 2,
        ctx_init: str | None = "a photo of a",
        prompt_depth: int = 9,
    ) -> None:
        super().__init__()
        n_ctx = check_n_ctx(n_ctx)
        text_layers = len(clip_model.transformer.resblocks)
        vision_layers = len(clip_model.visual.transformer.resblocks)
        max_depth = min(text_layers, vision_layers)
        if isinstance(prompt_depth, bool) or not isinstance(prompt_depth, int) or not 1 <= prompt_depth <= max_depth:
            raise ValueError(
                f"prompt_depth={prompt_depth!r} must be an integer in [1, {max_depth}] (the number of transformer "
                f"layers: text {text_layers}, vision {vision_layers})"
            )
        classnames = clean_classnames(classnames)
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_width = clip_model.visual.conv1.out_channels
        if ctx_init and n_ctx <= 4:
            words = ctx_init.replace("_", " ")
            embedding = embed_tokens(clip_model, tokenize([words]))
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :].clone()
            prompt_prefix = words
        else:
            if ctx_init:
                warnings.warn(f"ctx_init {ctx_init!r} ignored: MaPLe initialises from words only when n_ctx <= 4 "
                              f"(n_ctx={n_ctx}); using random init", UserWarning, stacklevel=3)
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.proj = nn.Linear(ctx_dim, vis_width).to(dtype)
        self.ctx = nn.Parameter(ctx_vectors)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(n_ctx, ctx_dim)) for _ in range(prompt_depth - 1)]
        )
        for prompt in self.compound_prompts_text:
            nn.init.normal_(prompt, std=0.02)
        layer = nn.Linear(ctx_dim, vis_width)  # one init, cloned: all projections start equal (reference)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(layer) for _ in range(prompt_depth - 1)])

        register_class_prompts(self, clip_model, classnames, prompt_prefix, n_ctx)
        self.n_ctx = n_ctx
        self.prompt_depth = prompt_depth
        self.prompt_prefix = prompt_prefix
        self.classnames = classnames

    def text_prompts(self, length: int | None = None) -> torch.Tensor:
        """Prompt embeddings (n_cls, 77, d), or their first ``length`` positions (what the text encoder reads)."""
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        suffix = self.token_suffix if length is None else self.token_suffix[:, : max(length - 1 - self.n_ctx, 0)]
        return torch.cat([self.token_prefix, ctx, suffix], dim=1)

    def vision_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(shared visual context (n_ctx, vis_width), deep visual prompts per layer)."""
        deep = [layer(self.compound_prompts_text[i]) for i, layer in enumerate(self.compound_prompt_projections)]
        return self.proj(self.ctx), deep

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(text prompts, shared visual ctx, deep text prompts, deep visual prompts), the reference's order."""
        shared, deep_vision = self.vision_prompts()
        return self.text_prompts(), shared, list(self.compound_prompts_text), deep_vision


class MaPLe(PromptModel):
    name = "maple"

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: int = 2,
        ctx_init: str | None = "a photo of a",
        prompt_depth: int = 9,
        precision: str = "fp16",
    ) -> None:
        if not _is_vit(clip_model):
            raise ValueError("MaPLe needs a ViT CLIP backbone (its vision prompts are transformer tokens); "
                             "got a ResNet visual encoder. Use a ViT model (e.g. ViT-B/16) or CoOp/CoCoOp.")
        super().__init__(clip_model, precision)
        self.prompt_learner = MultiModalPromptLearner(clip_model, classnames, n_ctx, ctx_init, prompt_depth)
        self.freeze_clip()
        self._vision_cache = TextFeatureCache()  # proj(ctx) and deep visual prompts: image independent too

    def vision_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The learner's visual prompts, computed once per evaluation in eval mode (like the text features);
        with quantized projections this saves re-quantizing every weight for every batch."""
        learner = self.prompt_learner
        if not self._cache_allowed():
            self._vision_cache.invalidate()
            return learner.vision_prompts()
        return self._vision_cache.get(chain(learner.parameters(), learner.buffers()), learner.vision_prompts)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """As the base forward; parametrized (quantized) tensors are computed once per call although the
        text and the vision side both read ``ctx`` and the compound prompts (same values, same gradients)."""
        from torch.nn.utils import parametrize

        with parametrize.cached():
            return super().forward(images)

    def _text_features(self) -> torch.Tensor:
        learner = self.prompt_learner
        tokenized = learner.tokenized_prompts
        return self.text_encoder(
            learner.text_prompts(self.text_encoder.length(tokenized)), tokenized,
            list(learner.compound_prompts_text), learner.n_ctx,
        )

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's ViT forward with MaPLe's visual prompts, using CLIP's own modules."""
        visual = self.image_encoder
        dtype = self.dtype
        n_ctx = self.prompt_learner.n_ctx
        shared_ctx, deep = self.vision_prompts()
        x = visual.conv1(images.type(dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, grid**2, width)
        cls = visual.class_embedding.to(x.dtype) + torch.zeros(
            x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device
        )
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = torch.cat([x, shared_ctx.type(dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = visual.ln_pre(x)
        x = x.permute(1, 0, 2)  # NLD -> LND
        for i, block in enumerate(visual.transformer.resblocks):
            if 1 <= i <= len(deep):
                prompt = deep[i - 1].type(dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x[: x.shape[0] - n_ctx], prompt], dim=0)
            x = block(x)
        x = x.permute(1, 0, 2)
        x = visual.ln_post(x[:, 0, :])
        if visual.proj is not None:
            x = x @ visual.proj
        return x
