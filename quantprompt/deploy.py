"""Inference from a packed prompt (``.qpt``): CLIP + a few hundred bytes -> a classifier.

The ``.qpt`` written by the quantized trainers carries, in its metadata, what inference needs besides CLIP:
``method``, ``bits``, ``n_ctx``, ``class_token_position``, ``classnames`` (and/or ``classnames_sha256`` of the
names joined by newlines), ``clip`` (the backbone spec it was trained on) and ``options`` (the
:func:`quantprompt.prompting.build` options). :class:`Classifier` rebuilds the model on the given CLIP, loads
the packed values bit-exactly (``quant.load_into``) and classifies images with CLIP's own preprocessing.

Text features of image-independent prompts (CoOp, MaPLe and their Q-forms) are computed once; with
``text_cache`` they are stored in a safetensors file under a key (sha256 of the .qpt bytes, the CLIP spec and
the class names), so classifying a folder -- or the next call -- costs at most one text pass. CoCoOp's prompts
depend on the image: no cache, a text pass over all classes per image, as the method requires (several images'
prompts per text-encoder call, up to its ``text_batch_size``). Every text pass computes only the positions up
to the prompts' last EOT token (see docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = [
    "Classifier",
    "Prediction",
    "classify",
    "inspect_qpt",
    "inspect_text",
    "qpt_size_breakdown",
    "read_qpt",
    "classnames_sha256",
    "read_classnames",
    "expand_images",
    "DeployError",
    "IMAGE_EXTENSIONS",
]

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_CACHE_FORMAT = "quantprompt-text-features-v1"


class DeployError(ValueError):
    """A prompt, CLIP, class-names file or image that cannot be used, with what to do about it."""


def classnames_sha256(classnames: Sequence[str]) -> str:
    """sha256 of the class names joined by newlines (UTF-8): the trainers' ``classnames_sha256``."""
    return hashlib.sha256("\n".join(classnames).encode("utf-8")).hexdigest()


def read_classnames(path: PathLike) -> list[str]:
    """One class name per line; blank lines and surrounding whitespace ignored."""
    p = Path(path)
    if not p.is_file():
        raise DeployError(f"class-names file {p} not found (one class name per line)")
    names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DeployError(f"class-names file {p} holds no names (one class name per line)")
    return names


def read_qpt(path: PathLike) -> tuple[bytes, dict[str, Any]]:
    """(blob, metadata) of a .qpt; a corrupt or foreign file raises DeployError naming it."""
    from quantprompt import quant

    p = Path(path)
    if not p.is_file():
        raise DeployError(f"packed prompt {p} not found")
    blob = p.read_bytes()
    try:
        meta = quant.read_metadata(blob)
    except quant.FormatError as err:
        raise DeployError(f"{p} is not a valid packed prompt (.qpt): {err}") from None
    return blob, meta


def qpt_size_breakdown(blob: bytes) -> dict[str, Any]:
    """``quant.size_report`` of a blob: payload, header, metadata and total bytes, per tensor details."""
    from quantprompt import quant

    return quant.size_report(blob)


def _normalize_spec(spec: str) -> str:
    """'ViT-B/16', 'vit-b-16', '/models/ViT-B-16.pt' -> 'vit-b-16' (a path: its file name, no extension)."""
    s = str(spec).strip()
    if os.sep in s and Path(s).exists() or s.endswith((".pt", ".pth", ".safetensors", ".bin")):
        s = Path(s).name
        s = re.sub(r"\.(pt|pth|safetensors|bin)$", "", s)
    return s.lower().replace("/", "-").replace("_", "-")


def _check_clip(meta: dict[str, Any], clip_spec: str, path: PathLike) -> None:
    trained = meta.get("clip")
    if trained is None:
        return
    if _normalize_spec(str(trained)) != _normalize_spec(str(clip_spec)):
        raise DeployError(
            f"{path} was trained on CLIP {trained!r}, but --clip is {clip_spec!r}: prompts only work with the "
            f"CLIP they were trained on. Pass --clip {trained} (or a local file of those weights named after "
            "it)."
        )


def _resolve_classnames(
    meta: dict[str, Any], classnames: Optional[Union[PathLike, Sequence[str]]], path: PathLike
) -> list[str]:
    given: Optional[list[str]] = None
    if classnames is not None:
        given = (
            read_classnames(classnames)
            if isinstance(classnames, (str, Path))
            else [str(c) for c in classnames]
        )
    stored = meta.get("classnames")
    digest = meta.get("classnames_sha256")
    if given is None:
        if stored:
            return [str(c) for c in stored]
        raise DeployError(
            f"{path} stores only the hash of its class names: pass --classnames <file> with the "
            "names it was trained on, one per line, in training order"
        )
    if stored and [str(c) for c in stored] != given:
        diff = next(
            (i for i, (a, b) in enumerate(zip(stored, given)) if a != b), min(len(stored), len(given))
        )
        raise DeployError(
            f"--classnames differs from the {len(stored)} names stored in {path} (first difference at "
            f"line {diff + 1}; the file has {len(given)} names). Use the training names and order, "
            "or leave --classnames out to use the stored ones."
        )
    if digest and classnames_sha256(given) != digest:
        raise DeployError(
            f"--classnames does not match {path}: sha256 of the names is "
            f"{classnames_sha256(given)[:12]}..., the prompt expects {str(digest)[:12]}... "
            "(same names, same order, one per line)"
        )
    return given


@dataclass
class Prediction:
    """Top-k of one image: ``[(class name, probability), ...]`` best first."""

    image: str
    topk: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "topk": [{"class": c, "prob": p} for c, p in self.topk]}


def expand_images(items: Sequence[PathLike]) -> list[Path]:
    """Files as given; folders -> their image files (sorted, not recursive); missing paths: DeployError."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DeployError(f"folder {p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise DeployError(f"image {p} not found")
    return out


class Classifier:
    """A CLIP plus a packed prompt, ready to classify images.

    >>> clf = Classifier("task.qpt", clip="ViT-B/16", text_cache="task.text.safetensors")
    >>> clf.classify(["cat.jpg"], topk=3)

    ``prompt`` may also be a P4Q export (``quantprompt.p4q.export``), which holds its own low-bit CLIP;
    ``int8=True`` then encodes images with PyTorch's int8 kernels (8-bit exports, CPU).
    """

    def __init__(
        self,
        prompt: PathLike,
        clip: Optional[str] = None,
        classnames: Optional[Union[PathLike, Sequence[str]]] = None,
        device: str = "cpu",
        text_cache: Optional[PathLike] = None,
        clip_model: Any = None,
        preprocess: Any = None,
        int8: bool = False,
    ) -> None:
        import torch

        from quantprompt import prompting, quant

        self.prompt_path = Path(prompt)
        self.text_cache = Path(text_cache) if text_cache else None
        self._text: Optional[Any] = None
        self.text_passes = 0  # how many times text features were computed (tests and curious users)
        from quantprompt.p4q.export import is_p4q_file

        if self.prompt_path.is_file() and is_p4q_file(self.prompt_path):
            self._init_p4q(clip, classnames, device, int8)
            return
        if int8:
            raise DeployError(f"{prompt}: --int8 runs a P4Q export (.p4q.safetensors); a .qpt prompt runs on "
                              "the CLIP it names")
        self.blob, self.meta = read_qpt(prompt)
        method = self.meta.get("method")
        if not method:
            raise DeployError(
                f"{prompt}: metadata has no 'method'; it was not written by a QuantPrompt trainer"
            )
        if str(method).lower() not in prompting.MODEL_NAMES:
            raise DeployError(
                f"{prompt}: unknown method {method!r} (known: {', '.join(prompting.MODEL_NAMES)})"
            )
        if clip is None:
            clip = self.meta.get("clip")
            if clip is None:
                raise DeployError(f"{prompt} does not name its CLIP: pass --clip")
        self.clip_spec = str(clip)
        _check_clip(self.meta, self.clip_spec, prompt)
        self.classnames = _resolve_classnames(self.meta, classnames, prompt)
        self.device = torch.device(device)
        options = dict(self.meta.get("options") or {})
        if self.device.type == "cpu" and options.get("precision", "fp16") == "fp16":
            options["precision"] = "fp32"  # what fp16 becomes on CPU anyway, without the notice
        if clip_model is None:
            from quantprompt import clip as qclip

            # CLIP in the precision the prompt was trained with (CoOp's PREC): fp16 weights for fp16, fp32
            # weights for fp32/amp; loading fp16 and widening later would round the weights.
            precision = "fp16" if options.get("precision", "fp16") == "fp16" else "fp32"
            clip_model, preprocess = qclip.load(self.clip_spec, device=str(self.device), precision=precision)
        elif preprocess is None:
            from quantprompt.clip._openai import openai_clip

            preprocess = openai_clip().clip._transform(clip_model.visual.input_resolution)
        self.preprocess = preprocess
        if "options" not in self.meta:  # files with only top-level fields still rebuild (CoOp-like methods)
            keys = ["n_ctx"] + (
                ["class_token_position"]
                if "coop" in str(method).lower() and "cocoop" not in str(method).lower()
                else []
            )
            keys += ["bits"] if str(method).lower().startswith("q") else []
            options.update({k: self.meta[k] for k in keys if self.meta.get(k) is not None})
        try:
            model = prompting.build(str(method).lower(), clip_model, self.classnames, **options)
        except (TypeError, ValueError) as err:
            raise DeployError(
                f"{prompt}: cannot rebuild the {method} model on CLIP {self.clip_spec!r}: {err}"
            ) from None
        model.to(self.device)
        try:
            loaded = set(quant.load_into(model, self.blob))
        except quant.FormatError as err:
            raise DeployError(
                f"{prompt} does not fit CLIP {self.clip_spec!r} with {len(self.classnames)} classes: {err}"
            ) from None
        learned = {
            f"prompt_learner.{n}".replace(".parametrizations.", ".").replace(".original", "")
            for n, p in model.prompt_learner.named_parameters()
            if p.requires_grad
        }
        missing = sorted(learned - loaded)
        if missing:
            raise DeployError(
                f"{prompt} holds {sorted(loaded)} but the model also learned {missing}, which are not "
                "in the packed file (trained with TRAINER.QPROMPT.TARGETS that leave them out): "
                "deploy from the checkpoint instead, or quantize every learned tensor"
            )
        model.eval()
        self.model = model
        self.image_encoder: Any = None

    def _init_p4q(self, clip: Optional[str], classnames: Any, device: str, int8: bool) -> None:
        """A P4Q export carries its own (quantized) CLIP: rebuild it; optionally run images on int8 kernels."""
        import torch

        from quantprompt.clip._openai import openai_clip
        from quantprompt.p4q.export import ExportFormatError, load_p4q, read_config

        path = self.prompt_path
        if clip is not None:
            raise DeployError(f"{path} is a P4Q export that holds its own quantized CLIP; leave --clip out")
        try:
            config = read_config(path)
            model = load_p4q(path, device=device)
        except ExportFormatError as err:
            raise DeployError(str(err)) from None
        self.meta = {"method": "p4q", "classnames": config["classnames"], "clip": config.get("clip"),
                     "options": config["options"]}
        self.blob = hashlib.sha256(path.read_bytes()).digest()
        self.clip_spec = f"p4q:{path.name}"
        self.classnames = _resolve_classnames(self.meta, classnames, path)
        self.device = torch.device(device)
        self.preprocess = openai_clip().clip._transform(model.clip_model.visual.input_resolution)
        self.model = model
        self.image_encoder = None
        if int8:
            from quantprompt.p4q.backend import int8_image_encoder

            if self.device.type != "cpu":
                raise DeployError("--int8 runs on the CPU (PyTorch's FBGEMM int8 kernels); use --device cpu")
            try:
                self.image_encoder = int8_image_encoder(model)
            except ValueError as err:
                raise DeployError(f"{path}: {err}") from None

    # ------------------------------------------------------------------------------------------------------
    @property
    def cacheable(self) -> bool:
        return bool(getattr(self.model, "cacheable", False)) and hasattr(self.model, "text_features")

    def cache_key(self) -> str:
        """sha256 of what the text features depend on: the .qpt bytes, the CLIP spec (and file), the names."""
        h = hashlib.sha256(_CACHE_FORMAT.encode())
        h.update(hashlib.sha256(self.blob).digest())
        spec = Path(self.clip_spec)
        h.update(_normalize_spec(self.clip_spec).encode())
        if spec.exists():
            st = spec.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(classnames_sha256(self.classnames).encode())
        h.update(str(self.model.dtype).encode())
        return h.hexdigest()

    def text_features(self) -> Any:
        """Normalized text features of all classes (image-independent prompts only); cached if valid."""
        import torch

        if not self.cacheable:
            raise DeployError(
                f"{self.meta.get('method')} prompts depend on the image: no fixed text features"
            )
        if self._text is not None:
            return self._text
        key = self.cache_key()
        if self.text_cache is not None and self.text_cache.is_file():
            from safetensors import SafetensorError
            from safetensors.torch import load_file, safe_open

            try:
                with safe_open(str(self.text_cache), framework="pt") as f:
                    stored_key = (f.metadata() or {}).get("key")
                if stored_key == key:
                    self._text = load_file(str(self.text_cache))["text_features"].to(self.device)
                    return self._text
                print(
                    f"note: text cache {self.text_cache} is for another prompt/CLIP/class list; recomputing",
                    file=sys.stderr,
                )
            except (SafetensorError, KeyError, OSError) as err:
                print(f"note: text cache {self.text_cache} unreadable ({err}); recomputing", file=sys.stderr)
        with torch.no_grad():
            feats = self.model.text_features().detach()
        self.text_passes += 1
        self._text = feats
        if self.text_cache is not None:
            from safetensors.torch import save_file

            self.text_cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.text_cache.with_name(self.text_cache.name + ".tmp")
            save_file(
                {"text_features": feats.float().cpu().contiguous()},
                str(tmp),
                metadata={
                    "key": key,
                    "format": _CACHE_FORMAT,
                    "prompt": self.prompt_path.name,
                    "clip": self.clip_spec,
                    "n_classes": str(len(self.classnames)),
                },
            )
            os.replace(tmp, self.text_cache)
        return self._text

    def logits(self, images: Any) -> Any:
        """Preprocessed images (B, 3, H, W) -> logits (B, n_classes), as the trained model computes them."""
        import torch

        images = images.to(self.device)
        with torch.no_grad():
            if not self.cacheable:
                return self.model(images)
            text = self.text_features().to(self.model.dtype)
            encode = self.image_encoder if self.image_encoder is not None else self.model.encode_image
            feats = encode(images)
            feats = feats / feats.norm(dim=-1, keepdim=True)
            return self.model.logit_scale.exp() * feats @ text.t()

    def _load_image(self, path: Path) -> Any:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                return self.preprocess(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DeployError(f"cannot read image {path}: {err}") from None

    def classify(self, images: Sequence[PathLike], topk: int = 5, batch_size: int = 32) -> list[Prediction]:
        """Top-k classes with softmax probabilities for each image (files or folders of images)."""
        import torch

        if topk < 1:
            raise DeployError(f"topk must be >= 1, got {topk}")
        k = min(topk, len(self.classnames))
        files = expand_images(images)
        out: list[Prediction] = []
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            batch = torch.stack([self._load_image(p) for p in chunk])
            probs = self.logits(batch).float().softmax(dim=-1)
            top = probs.topk(k, dim=-1)
            for p, vals, idx in zip(chunk, top.values.tolist(), top.indices.tolist()):
                out.append(Prediction(str(p), [(self.classnames[i], float(v)) for v, i in zip(vals, idx)]))
        return out


def classify(
    images: Sequence[PathLike],
    prompt: PathLike,
    clip: Optional[str] = None,
    classnames: Optional[Union[PathLike, Sequence[str]]] = None,
    topk: int = 5,
    text_cache: Optional[PathLike] = None,
    device: str = "cpu",
    batch_size: int = 32,
    int8: bool = False,
) -> list[Prediction]:
    """One call: build a :class:`Classifier` and classify ``images`` (files or folders)."""
    clf = Classifier(prompt, clip=clip, classnames=classnames, device=device, text_cache=text_cache, int8=int8)
    return clf.classify(images, topk=topk, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------------------
# inspect


def inspect_qpt(path: PathLike) -> dict[str, Any]:
    """Metadata and size breakdown of a .qpt (no CLIP needed)."""
    blob, meta = read_qpt(path)
    return {"file": str(path), "file_bytes": len(blob), "metadata": meta, "sizes": qpt_size_breakdown(blob)}


def _kb(n: int) -> str:
    from quantprompt.results.sizes import format_kb

    return f"{n} B ({format_kb(n)})"


def inspect_text(info: dict[str, Any]) -> str:
    """Human-readable report of :func:`inspect_qpt`."""
    meta = info["metadata"]
    sizes = info["sizes"]
    lines = [f"{info['file']}: packed prompt, {info['file_bytes']} bytes"]
    shown = ("method", "trainer", "bits", "n_ctx", "class_token_position", "clip", "dataset", "epoch")
    for key in shown:
        if key in meta:
            lines.append(f"  {key + ':':<22}{meta[key]}")
    names = meta.get("classnames")
    if names:
        preview = ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")
        lines.append(f"  {'classnames:':<22}{len(names)} ({preview})")
    if meta.get("classnames_sha256"):
        lines.append(f"  {'classnames_sha256:':<22}{meta['classnames_sha256']}")
    opts = meta.get("options")
    if opts:
        lines.append(f"  {'options:':<22}{json.dumps(opts, sort_keys=True, default=str)}")
    other = sorted(set(meta) - set(shown) - {"classnames", "classnames_sha256", "options"})
    for key in other:
        lines.append(f"  {key + ':':<22}{json.dumps(meta[key], default=str)}")
    lines.append("Size breakdown:")
    from tabulate import tabulate

    rows = []
    fp16_total = 0
    for name, t in sizes["tensors"].items():
        fp16_total += t["fp16_bytes"]
        rows.append(
            [
                name,
                "x".join(map(str, t["shape"])),
                t["bits"],
                t["index_bytes"],
                t["codebook_bytes"],
                t["payload_bytes"],
                t["fp16_bytes"],
            ]
        )
    lines.append(
        tabulate(
            rows,
            headers=["tensor", "shape", "bits", "indices B", "codebook B", "payload B", "fp16 B"],
            tablefmt="simple",
        )
    )
    payload = int(sizes["payload_bytes"])
    lines.append(f"  payload (indices + fp16 codebooks): {_kb(payload)}")
    lines.append(f"  header (format, tensor headers, CRCs): {sizes['header_bytes']} B")
    lines.append(f"  metadata (JSON): {sizes['metadata_bytes']} B")
    lines.append(f"  total file: {sizes['total_bytes']} B")
    if payload:
        lines.append(f"  same tensors in fp16: {_kb(fp16_total)} ({fp16_total / payload:.1f}x the payload)")
    return "\n".join(lines)
