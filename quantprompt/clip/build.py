"""Build OpenAI's ``clip.model.CLIP`` from a state dict in OpenAI's layout.

OpenAI's own ``clip.model.build_model`` asserts on bad input and hard-codes ``text heads = width // 64``, which
gives zero heads for narrow test models. This builder infers the same hyper-parameters from tensor shapes, takes
the text head count from the caller (Hugging Face config, file metadata) when known, and turns every mismatch
into a :class:`CLIPLoadError` naming the source. For every OpenAI checkpoint it builds exactly what
``build_model`` builds, and it constructs ``CLIP`` the same way, so the global RNG stream matches OpenAI's
loader (CoOp-style runs seeded before loading stay comparable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from .errors import CLIPLoadError

__all__ = ["build_model", "infer_text_heads", "HEADS_KEY", "is_openai_layout"]

# Optional scalar entry of a state dict (or safetensors metadata key) holding the text transformer's head count
# when it differs from ``infer_text_heads(width)``; written by ``save_tiny`` and the HF converter's cache.
HEADS_KEY = "transformer_heads"
# Non-tensor-weight entries found in OpenAI's JIT archives' state dicts.
_META_KEYS = ("input_resolution", "context_length", "vocab_size")
_TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight", "logit_scale")
_VIT_KEYS = ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.proj")
_RESNET_KEYS = ("visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding")


def infer_text_heads(width: int) -> int:
    """Head count of a text transformer of ``width`` when nothing says otherwise.

    OpenAI uses 64-dim heads (all released widths are multiples of 64). Narrower test models (the tiny CLIP's
    text width 48) get 16-dim heads, anything else one head.
    """
    if width % 64 == 0:
        return width // 64
    if width % 16 == 0:
        return width // 16
    return 1


def is_openai_layout(keys: Any) -> bool:
    """True when the key set looks like an OpenAI CLIP state dict (text tower keys present)."""
    keys = set(keys)
    return "token_embedding.weight" in keys and "text_projection" in keys


def _count(keys: set, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in keys for m in [regex.match(k)] if m})


def build_model(state_dict: Mapping[str, Any], transformer_heads: Optional[int] = None,
                source: str = "state dict") -> Any:
    """Return an fp32 ``clip.model.CLIP`` in eval mode holding ``state_dict``.

    ``transformer_heads`` overrides the text head count (else a ``transformer_heads`` entry of the state dict,
    else :func:`infer_text_heads`). ``source`` names the file in error messages.
    """
    import torch

    from ._openai import openai_clip

    clip = openai_clip()
    sd = dict(state_dict)
    for key in _META_KEYS:
        sd.pop(key, None)
    stored_heads = sd.pop(HEADS_KEY, None)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CLIPLoadError(f"{source} is not a CLIP state dict: entries {bad[:5]} are not tensors. Expected an "
                            "OpenAI CLIP file (.pt JIT archive or state dict), an OpenAI-layout .safetensors, "
                            "or a Hugging Face CLIP directory.")
    keys = set(sd)
    vit = "visual.proj" in keys
    if vit or "visual.attnpool.positional_embedding" in keys:
        vision_required: tuple[str, ...] = _VIT_KEYS if vit else _RESNET_KEYS
    else:
        vision_required = ("visual.proj (ViT) or visual.attnpool.* (ResNet)",)
    missing = [k for k in (*_TEXT_KEYS, *vision_required) if k not in keys]
    if missing:
        found = sorted(keys)[:6]
        raise CLIPLoadError(
            f"{source} is not a CLIP state dict in OpenAI layout: missing {missing} (found {len(keys)} entries, "
            f"e.g. {found}). Expected an OpenAI CLIP file (.pt JIT archive or state dict, e.g. ViT-B-16.pt), "
            "an OpenAI-layout .safetensors, or a Hugging Face CLIP directory (config.json + model.safetensors).")

    try:
        if vit:
            vision_width = sd["visual.conv1.weight"].shape[0]
            vision_layers: Any = _count(keys, r"visual\.transformer\.resblocks\.(\d+)\.")
            vision_patch_size = sd["visual.conv1.weight"].shape[-1]
            grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            image_resolution = vision_patch_size * grid
            if vision_width % 64:
                raise CLIPLoadError(f"{source}: vision width {vision_width} is not a multiple of 64; OpenAI's "
                                    "VisionTransformer uses width // 64 heads, so this file cannot be a CLIP ViT.")
        else:
            vision_layers = tuple(_count(keys, rf"visual\.layer{b}\.(\d+)\.") for b in (1, 2, 3, 4))
            vision_width = sd["visual.layer1.0.conv1.weight"].shape[0]
            n_pos = sd["visual.attnpool.positional_embedding"].shape[0]
            output_width = round((n_pos - 1) ** 0.5)
            if output_width ** 2 + 1 != n_pos:
                raise CLIPLoadError(f"{source}: visual.attnpool.positional_embedding has {n_pos} rows, not a "
                                    "square grid + 1; not a CLIP ResNet.")
            vision_patch_size = None
            image_resolution = output_width * 32
        embed_dim = sd["text_projection"].shape[1]
        context_length = sd["positional_embedding"].shape[0]
        vocab_size = sd["token_embedding.weight"].shape[0]
        width = sd["ln_final.weight"].shape[0]
        layers = _count(keys, r"transformer\.resblocks\.(\d+)\.")
    except (IndexError, KeyError) as err:
        raise CLIPLoadError(f"{source}: tensor shapes do not fit a CLIP model ({err!r}).") from err

    if transformer_heads is None and stored_heads is not None:
        transformer_heads = int(stored_heads)
    heads = int(transformer_heads) if transformer_heads is not None else infer_text_heads(width)
    if heads < 1 or width % heads:
        raise CLIPLoadError(f"{source}: text width {width} is not divisible by {heads} attention heads.")

    try:
        model = clip.model.CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                                context_length, vocab_size, width, heads, layers)
        with torch.no_grad():
            model.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError, AssertionError) as err:
        first = str(err).splitlines()[0:4]
        raise CLIPLoadError(f"{source} does not fit the CLIP model its shapes describe: {' '.join(first)}") from err
    return model.float().eval()
