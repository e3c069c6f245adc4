"""A tiny, deterministic CLIP in OpenAI's architecture, for tests and demos.

Real vocabulary (49,408 tokens) and context (77), so ``clip.tokenize`` and every CoOp/CoCoOp/MaPLe code path work
unchanged; 32x32 images and narrow towers, so a forward pass on a batch of 8 takes milliseconds on CPU. Text and
vision widths differ on purpose (48 vs 64) so code that confuses the two (e.g. MaPLe's projections) fails loudly.
Both towers have 12 layers, as real CLIP, so deep prompting (MaPLe depth 9) works.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Union

from .build import HEADS_KEY, infer_text_heads
from .errors import CLIPLoadError

__all__ = ["tiny", "save_tiny", "TINY_LOGIT_SCALE"]

# ln(100): the value trained OpenAI CLIPs end at (their training clamps the scale at 100), so logits of the tiny
# model have real CLIP's temperature instead of the untrained init ln(1/0.07).
TINY_LOGIT_SCALE = math.log(100.0)

_VIT_DEFAULTS: dict[str, Any] = {"vision_layers": 12, "vision_width": 64, "vision_patch_size": 8}
_RESNET_DEFAULTS: dict[str, Any] = {"vision_layers": (1, 1, 1, 1), "vision_width": 8, "vision_patch_size": None}
_COMMON_DEFAULTS: dict[str, Any] = {
    "embed_dim": 32, "image_resolution": 32, "context_length": 77, "vocab_size": 49408,
    "text_width": 48, "text_heads": None, "text_layers": 12, "logit_scale": TINY_LOGIT_SCALE,
}


def _sizes(arch: str, sizes: dict[str, Any]) -> dict[str, Any]:
    if arch not in ("vit", "resnet"):
        raise CLIPLoadError(f"tiny CLIP arch must be 'vit' or 'resnet', got {arch!r}.")
    defaults = {**_COMMON_DEFAULTS, **(_VIT_DEFAULTS if arch == "vit" else _RESNET_DEFAULTS)}
    unknown = sorted(set(sizes) - set(defaults))
    if unknown:
        raise CLIPLoadError(f"tiny CLIP: unknown size argument(s) {unknown}; known: {sorted(defaults)}.")
    cfg = {**defaults, **sizes}
    if cfg["text_heads"] is None:
        cfg["text_heads"] = infer_text_heads(cfg["text_width"])
    if arch == "vit" and cfg["vision_width"] % 64:
        raise CLIPLoadError(f"tiny CLIP: vision_width {cfg['vision_width']} must be a multiple of 64 "
                            "(OpenAI's VisionTransformer uses width // 64 heads).")
    if arch == "vit" and cfg["image_resolution"] % cfg["vision_patch_size"]:
        raise CLIPLoadError(f"tiny CLIP: image_resolution {cfg['image_resolution']} is not a multiple of "
                            f"vision_patch_size {cfg['vision_patch_size']}.")
    if arch == "resnet" and cfg["image_resolution"] % 32:
        raise CLIPLoadError(f"tiny CLIP: a ResNet needs image_resolution divisible by 32, got "
                            f"{cfg['image_resolution']}.")
    if cfg["text_width"] % cfg["text_heads"]:
        raise CLIPLoadError(f"tiny CLIP: text_width {cfg['text_width']} is not divisible by text_heads "
                            f"{cfg['text_heads']}.")
    return cfg


def tiny(seed: int = 0, arch: str = "vit", **sizes: Any) -> Any:
    """Return a deterministic tiny ``clip.model.CLIP`` (fp32, eval mode) for ``seed``.

    ``sizes`` override: embed_dim (32), image_resolution (32), vision_layers (12 / (1,1,1,1) for ResNet),
    vision_width (64 / 8), vision_patch_size (8), context_length (77), vocab_size (49408), text_width (48),
    text_heads (3 = 16-dim heads), text_layers (12), logit_scale (ln 100). The global RNG is left untouched.
    """
    import torch

    from ._openai import openai_clip

    clip = openai_clip()
    cfg = _sizes(arch, sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(
            cfg["embed_dim"], cfg["image_resolution"], cfg["vision_layers"], cfg["vision_width"],
            cfg["vision_patch_size"], cfg["context_length"], cfg["vocab_size"], cfg["text_width"],
            cfg["text_heads"], cfg["text_layers"])
        with torch.no_grad():
            model.logit_scale.fill_(float(cfg["logit_scale"]))
            if arch == "resnet":
                # CLIP's init zeroes every bn3 weight, which turns each residual branch off; give them a small
                # random scale so the tiny ResNet's features depend on all its weights.
                for name, param in model.visual.named_parameters():
                    if name.endswith("bn3.weight"):
                        param.normal_(0.0, 0.1)
    return model.float().eval()


def save_tiny(path: Union[str, Path], seed: int = 0, arch: str = "vit", **sizes: Any) -> Path:
    """Write ``tiny(seed, arch, **sizes)`` as a weight file that ``quantprompt.clip.load(path)`` reads back.

    ``.safetensors`` paths get safetensors (head count in the metadata); anything else an OpenAI-style state
    dict via ``torch.save`` (tensors only, loadable with ``weights_only=True``).
    """
    import torch

    path = Path(path).expanduser()
    model = tiny(seed=seed, arch=arch, **sizes)
    heads = model.transformer.resblocks[0].attn.num_heads
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    custom_heads = heads != infer_text_heads(model.transformer.width)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt", HEADS_KEY: str(heads),
                                              "source": f"quantprompt.clip.tiny(seed={seed}, arch={arch!r})"})
    else:
        if custom_heads:
            state[HEADS_KEY] = torch.tensor(heads)
        torch.save(state, path)
    return path

