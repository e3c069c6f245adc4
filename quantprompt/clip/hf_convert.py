"""Hugging Face ``CLIPModel`` checkpoint -> OpenAI CLIP state dict, exactly.

Hugging Face's CLIP is the same network as OpenAI's ViT CLIP with renamed tensors: separate q/k/v projections
(OpenAI: one packed ``in_proj``), ``nn.Linear`` projection heads (OpenAI: a ``width x embed`` matrix, i.e. the
transposed weight) and the ``pre_layrnorm`` spelling. The conversion is a pure re-labelling, so features match to
float rounding. Only what OpenAI's architecture can express is accepted (QuickGELU, 4x MLP, LayerNorm eps 1e-5,
64-dim vision heads); anything else is refused with the offending config field, because loading it into OpenAI's
module would silently compute something else. No ``transformers`` import is needed: config.json is plain JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import CLIPLoadError

__all__ = ["check_hf_config", "convert_hf_state_dict", "is_hf_layout"]

# Defaults of transformers' CLIPTextConfig / CLIPVisionConfig, for fields a config.json may omit.
_TEXT_DEFAULTS = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "hidden_act": "quick_gelu",
                  "layer_norm_eps": 1e-5}
_VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
# Buffers some HF checkpoints carry that OpenAI's module recomputes.
_IGNORED = {"text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"}

_TOP = {
    "logit_scale": "logit_scale",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
}
_TRANSPOSED = {"text_projection.weight": "text_projection", "visual_projection.weight": "visual.proj"}
_LAYER = {
    "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_LAYER_RE = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def is_hf_layout(keys: Any) -> bool:
    """True when tensor names are Hugging Face CLIP's (``text_model.*`` / ``vision_model.*``)."""
    return any(k.startswith(("text_model.", "vision_model.")) for k in keys)


def check_hf_config(config: Mapping[str, Any], source: str = "config.json") -> int:
    """Validate a Hugging Face config for exact conversion; return the text tower's head count."""
    model_type = config.get("model_type")
    if model_type != "clip":
        raise CLIPLoadError(
            f"{source}: model_type is {model_type!r}, not 'clip'. Only Hugging Face CLIPModel checkpoints "
            "(e.g. openai/clip-vit-base-patch16) can be loaded as OpenAI CLIP.")
    towers = {}
    for tower, defaults in (("text_config", _TEXT_DEFAULTS), ("vision_config", _VISION_DEFAULTS)):
        raw = config.get(tower) or config.get(f"{tower}_dict") or {}  # *_dict: very old transformers configs
        if not isinstance(raw, Mapping):
            raise CLIPLoadError(f"{source}: {tower} must be a JSON object, got {type(raw).__name__}.")
        cfg = {**defaults, **raw}
        towers[tower] = cfg
        if cfg["hidden_act"] != "quick_gelu":
            raise CLIPLoadError(
                f"{source}: {tower}.hidden_act is {cfg['hidden_act']!r}; OpenAI's CLIP uses QuickGELU, so only "
                "'quick_gelu' checkpoints convert exactly (use open_clip for other activations).")
        if cfg["intermediate_size"] != 4 * cfg["hidden_size"]:
            raise CLIPLoadError(f"{source}: {tower}.intermediate_size {cfg['intermediate_size']} is not 4 x "
                                f"hidden_size {cfg['hidden_size']} as in OpenAI's CLIP MLP.")
        if abs(float(cfg["layer_norm_eps"]) - 1e-5) > 1e-12:
            raise CLIPLoadError(f"{source}: {tower}.layer_norm_eps is {cfg['layer_norm_eps']}; OpenAI's CLIP "
                                "uses 1e-5.")
        if cfg["hidden_size"] % cfg["num_attention_heads"]:
            raise CLIPLoadError(f"{source}: {tower}.hidden_size {cfg['hidden_size']} is not divisible by "
                                f"num_attention_heads {cfg['num_attention_heads']}.")
    vision = towers["vision_config"]
    if vision["hidden_size"] % 64 or vision["num_attention_heads"] != vision["hidden_size"] // 64:
        raise CLIPLoadError(
            f"{source}: vision_config has hidden_size {vision['hidden_size']} with {vision['num_attention_heads']} "
            "heads; OpenAI's VisionTransformer always uses 64-dim heads (hidden_size // 64), so this checkpoint "
            "cannot be expressed as OpenAI CLIP.")
    return int(towers["text_config"]["num_attention_heads"])


def convert_hf_state_dict(hf: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """Map a Hugging Face ``CLIPModel`` state dict to OpenAI's layout (tensor values unchanged)."""
    import torch

    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str, str], dict[str, Any]] = {}
    unknown = []
    for key, value in hf.items():
        if key in _IGNORED:
            continue
        if key in _TOP:
            out[_TOP[key]] = value
            continue
        if key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
            continue
        m = _LAYER_RE.match(key)
        if not m:
            unknown.append(key)
            continue
        tower, idx, name, kind = m.groups()
        prefix = ("transformer" if tower == "text_model" else "visual.transformer") + f".resblocks.{idx}."
        if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault((prefix, kind, source), {})[name[10]] = value
        elif name in _LAYER:
            out[f"{prefix}{_LAYER[name]}.{kind}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CLIPLoadError(f"{source}: tensors {unknown[:5]} have no place in OpenAI's CLIP; this is not a "
                            "plain Hugging Face CLIPModel checkpoint (text and vision towers with projections).")
    for (prefix, kind, _), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CLIPLoadError(f"{source}: layer {prefix} lacks some of q/k/v_proj.{kind}; truncated checkpoint?")
        out[f"{prefix}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    missing = [k for k in ("token_embedding.weight", "text_projection", "visual.proj", "visual.conv1.weight",
                           "logit_scale") if k not in out]
    if missing:
        raise CLIPLoadError(f"{source}: Hugging Face checkpoint lacks the tensors for {missing}; a full CLIPModel "
                            "(both towers, both projections, logit_scale) is needed.")
    return out
