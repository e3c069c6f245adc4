"""A trained P4Q model as a real low-bit file, and back.

One safetensors file (no pickle) holds the whole deployable model:

* every weight the student quantizes, under CLIP's own state-dict name: 8 bits as ``<name>`` int8 codes, 2..7
  bits as ``<name>.packed`` uint8 (two 4-bit fields per byte, code + 8; 2/3 bits use the same 4-bit fields),
  each with its fp32 per-channel ``<name>.scale``; the token-embedding table is quantized per row the same way;
* every other CLIP tensor (LayerNorms, biases, positional and class embeddings, logit scale) in fp32: they are
  < 0.3 % of ViT-B/32 and keep the exported model equal to the simulated one;
* ``act.<layer>.scale`` / ``act.<layer>.zero_point``: the calibrated activation quantizers;
* ``learned.qpt``: the packed prompt context and adapter (``quant.export``: K-Means codebooks, CAC's format) as
  uint8 bytes;
* metadata: ``format``, ``version``, ``config`` (JSON: model options, class names, CLIP text heads, shapes),
  ``sha256`` of the config and every tensor's bytes, checked on load.

``load`` rebuilds CLIP from the dequantized weights (shapes give its hyper-parameters), the P4Q model on it with
the stored options, the exact stored weight scales, activation ranges and learned tensors: its logits equal the
simulated model's up to float rounding of the token-embedding rows' scales (see tests: atol 1e-4 on logits).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from .fakequant import weight_codes
from .layers import quantized_weights
from .ptq import row_scale

__all__ = ["ExportFormatError", "FORMAT", "VERSION", "export_p4q", "load_p4q", "is_p4q_file", "read_config",
           "dequantized_state", "inspect_export"]

FORMAT = "quantprompt-p4q"
#: the file name the trainers write (``model.p4q.safetensors``)
SUFFIX = ".p4q.safetensors"
VERSION = "1"
PathLike = Union[str, Path]


class ExportFormatError(ValueError):
    """A P4Q export that is truncated, corrupted, of another version, or not a P4Q export at all."""


def _pack4(codes: Tensor) -> Tensor:
    flat = (codes.reshape(-1).to(torch.int16) + 8).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def _unpack4(packed: Tensor, numel: int) -> Tensor:
    low = (packed & 0x0F).to(torch.int16)
    high = (packed >> 4).to(torch.int16)
    return torch.stack([low, high], dim=1).reshape(-1)[:numel].sub(8).to(torch.int8)


def _digest(config: str, tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256(config.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode("utf-8"))
        h.update(str(t.dtype).encode())
        h.update(str(list(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _weight_names(model: nn.Module) -> dict[str, tuple[Tensor, Tensor, int]]:
    """{CLIP state-dict name: (fp weight, scale, bits)} of every weight the student quantizes."""
    ids = {id(p): n for n, p in model.clip_model.named_parameters()}
    out = {}
    for enc in (model.image_encoder, model.text_encoder):
        for w, scale, bits in quantized_weights(enc).values():
            out[ids[id(w)]] = (w, scale, bits)
    if "transformer.resblocks.0.attn.in_proj_weight" in out:  # text tower quantized: so is its projection
        w = model.clip_model.text_projection
        from .fakequant import weight_scale

        out["text_projection"] = (w, weight_scale(w, model.weight_bits, 1 if model.per_channel else None),
                                  model.weight_bits)
    return out


def export_p4q(model: nn.Module, path: PathLike, extra: dict[str, Any] | None = None) -> dict[str, int]:
    """Write ``model`` (a calibrated P4Q model) to ``path``; returns {"file_bytes", "fp32_clip_bytes"}.

    Written to a temporary file first and renamed, so a failure leaves no partial file.
    """
    from quantprompt import quant
    from quantprompt.safetensors_io import save_atomic

    if getattr(model, "name", "") != "p4q":
        raise ValueError(f"export_p4q needs a P4Q model (prompting.build('p4q', ...)), got {type(model).__name__}")
    if not model.calibrated:
        raise ValueError("export_p4q: the model is not calibrated; call model.calibrate(batches) first")
    clip = model.clip_model
    quantized = _weight_names(model)
    tensors: dict[str, Tensor] = {}
    shapes: dict[str, list[int]] = {}
    bits_of: dict[str, int] = {}
    token_bits = None if model.fp_encoder == "text" else model.weight_bits
    for name, value in clip.state_dict().items():
        value = value.detach().to("cpu")
        if name in quantized or (name == "token_embedding.weight" and token_bits is not None):
            if name in quantized:
                w, scale, bits = quantized[name]
                scale = scale.detach().to("cpu", torch.float32)
            else:
                bits = int(token_bits)
                scale = row_scale(value, bits)
            codes = weight_codes(value, scale, bits)
            shapes[name], bits_of[name] = list(value.shape), bits
            if bits == 8:
                tensors[name] = codes.contiguous()
            else:
                tensors[name + ".packed"] = _pack4(codes).contiguous()
            tensors[name + ".scale"] = scale.contiguous()
        else:
            tensors[name] = value.to(torch.float32).contiguous()
    for layer, q in model.act_quants.items():
        tensors[f"act.{layer}.scale"] = q.scale.detach().to("cpu", torch.float32).reshape(1)
        tensors[f"act.{layer}.zero_point"] = q.zero_point.detach().to("cpu", torch.float32).reshape(1)
    blob = quant.export(model)
    tensors["learned.qpt"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    options = {k: v for k, v in (model.build_options or {}).items() if k != "teacher_ctx"}
    config = json.dumps({
        "options": options, "classnames": list(model.prompt_learner.classnames),
        "text_heads": int(clip.transformer.resblocks[0].attn.num_heads),
        "shapes": shapes, "bits": bits_of, **(extra or {}),
    }, sort_keys=True)
    metadata = {"format": FORMAT, "version": VERSION, "config": config, "sha256": _digest(config, tensors)}
    path = save_atomic(tensors, path, metadata=metadata)
    fp32 = sum(4 * v.numel() for v in clip.state_dict().values())
    return {"file_bytes": path.stat().st_size, "fp32_clip_bytes": fp32}


def _open(path: PathLike) -> tuple[dict[str, str], dict[str, Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    p = Path(path)
    if not p.is_file():
        raise ExportFormatError(f"P4Q export {p} not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ExportFormatError(f"{p} is not a P4Q export (metadata format {meta.get('format')!r}, "
                                        f"expected {FORMAT!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ExportFormatError(f"{p}: damaged P4Q export (truncated or corrupted safetensors: {err}); "
                                "copy or export it again") from None
    if meta.get("version") != VERSION:
        raise ExportFormatError(f"{p}: P4Q export version {meta.get('version')!r}, this reader knows {VERSION!r}; "
                                "upgrade quantprompt")
    if _digest(meta.get("config", ""), tensors) != meta.get("sha256"):
        raise ExportFormatError(f"{p}: damaged P4Q export (sha256 mismatch: its bytes changed); copy or export it "
                                "again")
    return meta, tensors


def is_p4q_file(path: PathLike) -> bool:
    """Whether ``path`` is a P4Q export, damaged or not, judged by its content: a safetensors header whose
    metadata names our format (a truncated or corrupted export still starts with it), or, where the header itself
    is cut, the format marker in its first bytes; and by its name (``*.p4q.safetensors``) where the content is
    too damaged to tell. The integrity check is :func:`load_p4q`'s: this only decides which reader reports the
    damage, so that a damaged P4Q export is reported as one, not as a bad packed prompt."""
    if str(path).endswith(SUFFIX) and Path(path).is_file():
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_PEEK)
    except OSError:
        return False
    if len(head) < 8:
        return False
    n = int.from_bytes(head[:8], "little")
    header = head[8:8 + n]
    if 0 < n <= len(head) - 8:
        try:
            meta = json.loads(header.decode("utf-8")).get("__metadata__") or {}
            return meta.get("format") == FORMAT
        except (UnicodeDecodeError, ValueError, AttributeError):
            pass
    return header.startswith(b"{") and _FORMAT_MARK in header


#: how much of a file :func:`is_p4q_file` reads: the safetensors header of an export is a few kilobytes
_HEADER_PEEK = 1 << 20
_FORMAT_MARK = f'"format":"{FORMAT}"'.encode()


def read_config(path: PathLike) -> dict[str, Any]:
    """The export's config (options, class names, shapes) after the integrity check."""
    meta, _ = _open(path)
    return json.loads(meta["config"])


def inspect_export(path: PathLike) -> dict[str, Any]:
    """Size breakdown of an export (after the integrity check): bytes of int8 codes, packed codes, scales,
    fp32 tensors, activation ranges and the packed prompt/adapter, plus its config."""
    meta, tensors = _open(path)
    config = json.loads(meta["config"])
    parts = {"int8_codes": 0, "packed_codes": 0, "scales": 0, "fp32": 0, "activation_ranges": 0, "learned_qpt": 0}
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        if name == "learned.qpt":
            parts["learned_qpt"] += size
        elif name.startswith("act."):
            parts["activation_ranges"] += size
        elif name.endswith(".scale"):
            parts["scales"] += size
        elif name.endswith(".packed"):
            parts["packed_codes"] += size
        elif t.dtype == torch.int8:
            parts["int8_codes"] += size
        else:
            parts["fp32"] += size
    return {"file": str(path), "file_bytes": Path(path).stat().st_size, "tensor_bytes": parts,
            "quantized_tensors": len(config["shapes"]), "options": config["options"],
            "n_classes": len(config["classnames"]), "clip": config.get("clip")}


def dequantized_state(config: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CLIP's fp32 state dict with every quantized tensor replaced by ``codes * scale``."""
    import math

    state = {}
    for name, shape in config["shapes"].items():
        scale = tensors[name + ".scale"]
        if config["bits"][name] == 8:
            codes = tensors[name]
        else:
            codes = _unpack4(tensors[name + ".packed"], math.prod(shape)).reshape(shape)
        state[name] = codes.to(torch.float32) * scale
    for name, value in tensors.items():
        if name in state or name.endswith((".scale", ".packed", ".zero_point")) or name == "learned.qpt" \
                or name.startswith("act."):
            continue
        state[name] = value
    return state


def load_p4q(path: PathLike, device: str = "cpu") -> nn.Module:
    """Rebuild the exported P4Q model (eval mode, calibrated) from ``path``; ExportFormatError if unusable."""
    from quantprompt import prompting, quant
    from quantprompt.clip.build import build_model

    meta, tensors = _open(path)
    try:
        config = json.loads(meta["config"])
        state = dequantized_state(config, tensors)
        clip = build_model(state, transformer_heads=int(config["text_heads"]), source=str(path))
        # files written before the activation grid was recorded were calibrated on the full grid
        options = {"act_range": "full", **config["options"]}
        model = prompting.build("p4q", clip, config["classnames"], **options)
        scales = {name: scale for name, (_, scale, _) in _weight_names(model).items()}
        with torch.no_grad():
            for name, scale in scales.items():
                scale.copy_(tensors[name + ".scale"].reshape(scale.shape))
            for layer, q in model.act_quants.items():
                q.scale.fill_(float(tensors[f"act.{layer}.scale"]))
                q.zero_point.fill_(float(tensors[f"act.{layer}.zero_point"]))
        quant.load_into(model, tensors["learned.qpt"].numpy().tobytes())
    except (KeyError, ValueError, TypeError) as err:
        if isinstance(err, ExportFormatError):
            raise
        raise ExportFormatError(f"{path}: the export does not describe a P4Q model this version can rebuild "
                                f"({type(err).__name__}: {err})") from None
    # values derived from the weights at build time, set to the stored grid exactly (no re-quantization)
    if model.fp_encoder != "text":
        from quantprompt.prompting.text import embed_tokens

        learner = model.prompt_learner
        with torch.no_grad():
            model.text_encoder.text_projection.copy_(state["text_projection"])
            embedded = embed_tokens(clip, learner.tokenized_prompts)
            learner.token_prefix.copy_(embedded[:, :1])
            learner.token_suffix.copy_(embedded[:, 1 + learner.n_ctx:])
    model.set_activation_mode("quant")
    model.calibrated = True
    model.to(device)
    model.eval()
    return model
