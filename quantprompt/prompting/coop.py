"""CoOp (Zhou et al., IJCV 2022): learnable context vectors in front of (or around) the class name.

Behaviour follows KaiyangZhou/CoOp ``trainers/coop.py``: word initialisation sets ``n_ctx`` to the number of
words and the prompt prefix to those words; random initialisation draws N(0, 0.02^2) vectors, generic or
class specific (CSC), with "X X ... X" as the placeholder prefix; prompts are "<prefix> <class name>." and the
class token sits at the end, the middle (between the two halves of the context) or the front.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .base import PromptModel, check_n_ctx
from .text import clean_classnames, embed_tokens, register_class_prompts, tokenize

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def init_context(
    clip_model: nn.Module, n_ctx: int | None, ctx_init: str | None, n_cls: int = 1, csc: bool = False
) -> tuple[torch.Tensor, str, int]:
    """(ctx vectors, prompt prefix, n_ctx) as CoOp builds them (also used by CoCoOp)."""
    dtype = clip_model.dtype
    ctx_dim = clip_model.ln_final.weight.shape[0]
    if ctx_init:
        words = ctx_init.replace("_", " ")
        n_words = len(words.split(" "))
        if n_ctx is not None and n_ctx != n_words:
            warnings.warn(
                f"n_ctx={n_ctx} ignored: ctx_init {ctx_init!r} has {n_words} words and CoOp uses one context "
                "vector per word",
                UserWarning,
                stacklevel=3,
            )
        if csc:
            warnings.warn("csc ignored with ctx_init: CoOp learns one generic context when initialised from "
                          "words", UserWarning, stacklevel=3)
        embedding = embed_tokens(clip_model, tokenize([words]))
        return embedding[0, 1 : 1 + n_words, :].clone(), words, n_words
    n_ctx = check_n_ctx(16 if n_ctx is None else n_ctx)
    shape = (n_cls, n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
    ctx = torch.empty(*shape, dtype=dtype)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx), n_ctx


def _position_index(n_ctx: int, name_lens: Sequence[int], position: str, length: int) -> torch.Tensor:
    """Per class, which token of the 'end' layout [SOS, ctx, name, rest] goes to each output position."""
    rows = []
    half = n_ctx // 2
    for name_len in name_lens:
        sos, ctx = [0], list(range(1, 1 + n_ctx))
        name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
        rest = list(range(1 + n_ctx + name_len, length))
        if position == "middle":
            order = sos + ctx[:half] + name + ctx[half:] + rest
        else:  # front
            order = sos + name + ctx + rest
        rows.append(order)
    return torch.tensor(rows, dtype=torch.long)


class PromptLearner(nn.Module):
    """Learned context ``ctx`` ((n_ctx, d) generic or (n_cls, n_ctx, d) CSC) + fixed token embeddings."""

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: int | None = None,
        ctx_init: str | None = None,
        csc: bool = False,
        class_token_position: str = "end",
    ) -> None:
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position={class_token_position!r} is not one of {', '.join(CLASS_TOKEN_POSITIONS)}"
            )
        classnames = clean_classnames(classnames)
        n_cls = len(classnames)
        ctx, prompt_prefix, n_ctx = init_context(clip_model, n_ctx, ctx_init, n_cls, bool(csc))
        self.ctx = nn.Parameter(ctx)

        tokenized = register_class_prompts(self, clip_model, classnames, prompt_prefix, n_ctx)
        if class_token_position != "end":
            index = _position_index(n_ctx, self.name_lens, class_token_position, tokenized.shape[1])
            self.register_buffer("position_index", index, persistent=False)
        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.prompt_prefix = prompt_prefix
        self.class_token_position = class_token_position
        self.classnames = classnames

    def forward(self, length: int | None = None) -> torch.Tensor:
        """Prompt embeddings (n_cls, 77, d), or their first ``length`` positions (what the text encoder reads;
        the class name is moved within the positions before EOT only, so cutting commutes with placing it)."""
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        suffix = self.token_suffix if length is None else self.token_suffix[:, : max(length - 1 - self.n_ctx, 0)]
        prompts = torch.cat([self.token_prefix, ctx, suffix], dim=1)
        if self.class_token_position != "end":
            index = self.position_index[:, : prompts.shape[1]]
            prompts = torch.gather(prompts, 1, index.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))
        return prompts


class CoOp(PromptModel):
    name = "coop"

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: int | None = None,
        ctx_init: str | None = None,
        csc: bool = False,
        class_token_position: str = "end",
        precision: str = "fp16",
    ) -> None:
        super().__init__(clip_model, precision)
        self.prompt_learner = PromptLearner(clip_model, classnames, n_ctx, ctx_init, csc, class_token_position)
        self.freeze_clip()

    @property
    def tokenized_prompts(self) -> torch.Tensor:
        return self.prompt_learner.tokenized_prompts

    def _text_features(self) -> torch.Tensor:
        tokenized = self.prompt_learner.tokenized_prompts
        return self.text_encoder(self.prompt_learner(self.text_encoder.length(tokenized)), tokenized)
