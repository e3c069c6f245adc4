"""Text-side helpers shared by every prompt learner: tokenisation, token embeddings, the text encoder.

The text encoder follows CoOp's ``TextEncoder`` (prompt embeddings + positional embedding, CLIP's transformer,
``ln_final``, the EOT token's feature times ``text_projection``). For MaPLe it additionally replaces the
context tokens between CLIP's own residual blocks ("deep prompts") instead of editing CLIP's source.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import nn

from quantprompt.clip._openai import openai_clip


@lru_cache(maxsize=1)
def _tokenizer():  # the BPE vocabulary takes ~0.3 s to load: do it once
    return openai_clip().simple_tokenizer.SimpleTokenizer()


def tokenize(texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
    """CLIP's tokenizer (SOT ... EOT, zero padded), one row per text; raises ValueError if a text is too long."""
    clip = openai_clip()
    try:
        return clip.tokenize(list(texts), context_length=context_length)
    except RuntimeError as err:  # clip raises RuntimeError for too long inputs
        raise ValueError(f"{err}; shorten the class name / context or lower n_ctx") from err


def name_lengths(classnames: Sequence[str]) -> list[int]:
    """Number of BPE tokens of each class name (CoOp's ``name_lens``), used for middle/front placement."""
    tok = _tokenizer()
    return [len(tok.encode(name)) for name in classnames]


def clean_classnames(classnames: Sequence[str]) -> list[str]:
    """CoOp replaces underscores by spaces in class names before building prompts."""
    if len(classnames) == 0:
        raise ValueError("classnames is empty; pass the dataset's list of class names")
    return [str(name).replace("_", " ") for name in classnames]


def embed_tokens(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Token embeddings of ``tokens`` in CLIP's dtype, without autograd (they are fixed buffers)."""
    weight = clip_model.token_embedding.weight
    with torch.no_grad():
        return clip_model.token_embedding(tokens.to(weight.device)).type(clip_model.dtype)


def register_class_prompts(
    learner: nn.Module, clip_model: nn.Module, classnames: Sequence[str], prompt_prefix: str, n_ctx: int
) -> torch.Tensor:
    """Give ``learner`` the fixed parts of the prompts "<prefix> <class>." shared by CoOp, CoCoOp and MaPLe.

    ``token_prefix`` (SOS), ``token_suffix`` (class name, ".", EOS, padding) and ``tokenized_prompts`` are
    recomputed from the class names, so they are non-persistent buffers: the state dict holds learned tensors
    only (the references save them and then drop them when loading). Also sets ``name_lens`` and ``n_cls``.
    Returns the tokenized prompts.
    """
    tokenized = tokenize([prompt_prefix + " " + name + "." for name in classnames])
    embedding = embed_tokens(clip_model, tokenized)
    learner.register_buffer("token_prefix", embedding[:, :1, :].clone(), persistent=False)
    learner.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :].clone(), persistent=False)
    learner.register_buffer("tokenized_prompts", tokenized, persistent=False)
    learner.name_lens = name_lengths(classnames)
    learner.n_cls = len(classnames)
    return tokenized


class TextEncoder(nn.Module):
    """CLIP's text tower applied to prompt *embeddings* (CoOp's TextEncoder, optionally with MaPLe deep prompts).

    The modules are CLIP's own (shared, frozen); nothing of CLIP is copied or edited.
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self._clip_dtype_owner = [clip_model]  # list: not registered as a submodule

    @property
    def dtype(self) -> torch.dtype:
        return self._clip_dtype_owner[0].dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        deep_prompts: Sequence[torch.Tensor] | None = None,
        n_ctx: int = 0,
    ) -> torch.Tensor:
        """prompts (n, L, width) -> features (n, embed_dim).

        ``deep_prompts[j]`` (n_ctx, width) replaces tokens 1..n_ctx before block j+1, as MaPLe does
        (block 0 sees the prompts of the input embeddings).
        """
        dtype = self.dtype
        x = prompts + self.positional_embedding.type(dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        if not deep_prompts:
            x = self.transformer(x)
        else:
            for i, block in enumerate(self.transformer.resblocks):
                if 1 <= i <= len(deep_prompts):
                    ctx = deep_prompts[i - 1].type(dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
                    x = torch.cat([x[:1], ctx, x[1 + n_ctx :]], dim=0)
                x = block(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(dtype)
        eot = tokenized_prompts.argmax(dim=-1).to(x.device)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
