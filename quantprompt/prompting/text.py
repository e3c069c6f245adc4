"""Text-side helpers shared by every prompt learner: tokenisation, token embeddings, the text encoder.

The text encoder follows CoOp's ``TextEncoder`` (prompt embeddings + positional embedding, CLIP's transformer,
``ln_final``, the EOT token's feature times ``text_projection``). For MaPLe it additionally replaces the
context tokens between CLIP's own residual blocks ("deep prompts") instead of editing CLIP's source. Every
model's text passes go through it, so all of them compute only the positions up to the last EOT token.
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


def _is_openai_block(block: nn.Module) -> bool:
    """Whether ``block`` is OpenAI CLIP's ``ResidualAttentionBlock`` (whose forward :func:`run_block` mirrors)."""
    from quantprompt.clip._openai import openai_clip

    return isinstance(block, openai_clip().model.ResidualAttentionBlock)


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLIP's ``ResidualAttentionBlock.forward`` on a sequence of ``L = x.shape[0]`` <= 77 positions (LND).

    Why not ``block(x)``: the block holds CLIP's 77x77 causal mask in ``attn_mask`` and (in OpenAI's code) adds
    it to 77-long attention scores only. We pass its top-left ``[:L, :L]`` corner instead -- the causal mask of
    the first L positions -- without writing to the block, so CLIP's modules stay untouched and shareable
    between threads and other users.
    """
    y = block.ln_1(x)
    mask = block.attn_mask
    if mask is not None:
        length = x.shape[0]
        mask = mask[:length, :length].to(dtype=y.dtype, device=y.device)
    x = x + block.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


class TextEncoder(nn.Module):
    """CLIP's text tower applied to prompt *embeddings* (CoOp's TextEncoder, optionally with MaPLe deep prompts).

    The modules are CLIP's own (shared, frozen); nothing of CLIP is copied or edited.

    Truncation (``truncate=True``, the default): CLIP reads each prompt's feature at its EOT token, and the
    causal mask keeps every position after it from influencing any position before it. So only the first
    ``L = max(EOT) + 1`` positions of the prompts in a call are computed (about 20-25 of 77 for CoOp's
    prompts): prompt embeddings, positional embedding and attention mask are all cut to ``L``. Parameters,
    outputs and gradients are those of the full 77-position pass (up to float rounding). Set
    ``truncate = False`` on an instance for the full-length path (the references' computation; tests and
    ``bench/train.py`` compare the two).
    """

    def __init__(self, clip_model: nn.Module, truncate: bool = True) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self._clip_dtype_owner = [clip_model]  # list: not registered as a submodule
        # a CLIP with edited blocks (another project's clip/model.py) keeps the full-length path
        self.can_truncate = all(_is_openai_block(b) for b in self.transformer.resblocks)
        self.truncate = truncate

    @property
    def dtype(self) -> torch.dtype:
        return self._clip_dtype_owner[0].dtype

    def length(self, tokenized_prompts: torch.Tensor) -> int:
        """Positions a call on ``tokenized_prompts`` computes: max EOT index + 1 (EOT = the largest token id),
        or the full context length when truncation is off or unavailable."""
        full = tokenized_prompts.shape[-1]
        if not (self.truncate and self.can_truncate) or tokenized_prompts.numel() == 0:
            return full
        return int(tokenized_prompts.argmax(dim=-1).max()) + 1

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's ``encode_text(tokens)`` through this encoder, so fixed prompts (zero-shot CLIP) are truncated
        too: only the first :meth:`length` token embeddings are looked up and encoded."""
        clip_model = self._clip_dtype_owner[0]
        length = self.length(tokens)
        weight = clip_model.token_embedding.weight
        embedded = clip_model.token_embedding(tokens[:, :length].to(weight.device)).type(self.dtype)
        return self(embedded, tokens)

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        deep_prompts: Sequence[torch.Tensor] | None = None,
        n_ctx: int = 0,
    ) -> torch.Tensor:
        """prompts (n, 77, width) -> features (n, embed_dim); ``prompts`` may already be cut to
        ``self.length(tokenized_prompts)`` positions (or more).

        ``deep_prompts[j]`` (n_ctx, width) replaces tokens 1..n_ctx before block j+1, as MaPLe does
        (block 0 sees the prompts of the input embeddings). They sit before the class name, hence before EOT.
        """
        dtype = self.dtype
        eot = tokenized_prompts.argmax(dim=-1).to(prompts.device)
        length = self.length(tokenized_prompts)
        if prompts.shape[1] < length:
            raise ValueError(f"prompts hold {prompts.shape[1]} positions but their EOT tokens need {length}")
        truncated = length < self.positional_embedding.shape[0]
        if deep_prompts and length < 2 + n_ctx:
            raise ValueError(f"deep prompts at positions 1..{n_ctx} need EOT after them; prompts end at {length}")
        x = prompts[:, :length] + self.positional_embedding[:length].type(dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        n_deep = len(deep_prompts) if deep_prompts else 0
        for i, block in enumerate(self.transformer.resblocks):
            if 1 <= i <= n_deep:
                ctx = deep_prompts[i - 1].type(dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
                x = torch.cat([x[:1], ctx, x[1 + n_ctx :]], dim=0)
            x = run_block(block, x) if truncated else block(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
