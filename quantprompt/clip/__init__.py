"""Loading OpenAI CLIP (names, OpenAI files, Hugging Face checkpoints) and the tiny test CLIP.

``load`` returns OpenAI's ``clip.model.CLIP`` plus its preprocess transform, like ``clip.load``, but finds the
weights where they still exist today (cache dir, Hugging Face Hub, OpenAI URL), reads files safely
(``weights_only``; JIT archives only through ``torch.jit.load``) and fails with one actionable error.
Importing this subpackage imports torch lazily: only the functions touch it.
"""

from __future__ import annotations

from .build import build_model, infer_text_heads
from .errors import CLIPFileNotFoundError, CLIPLoadError
from .hf_convert import check_hf_config, convert_hf_state_dict
from .loading import (
    ENV_CACHE,
    ENV_ROOT,
    HF_REPOS,
    TINY_SPECS,
    WORLD_SPECS,
    available_models,
    cache_dir,
    load,
    load_weights,
    quantprompt_cache_dir,
    tokenize,
)
from .tiny import TINY_LOGIT_SCALE, save_tiny, tiny

__all__ = [
    "load", "load_weights", "tiny", "save_tiny", "available_models", "tokenize", "cache_dir", "build_model",
    "infer_text_heads", "convert_hf_state_dict", "check_hf_config", "CLIPLoadError", "CLIPFileNotFoundError",
    "HF_REPOS", "TINY_SPECS", "ENV_ROOT", "TINY_LOGIT_SCALE", "WORLD_SPECS", "ENV_CACHE", "quantprompt_cache_dir",
]
