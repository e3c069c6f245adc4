"""Contrastive pretraining of a small OpenAI-architecture CLIP on the demo world, on the CPU, in minutes.

Like real CLIP: image-caption pairs over all attribute combinations, captions naming random subsets of the
attributes (:mod:`.captions`), symmetric InfoNCE with a learned temperature, AdamW with a linear warm-up and a
cosine decay. Unlike real CLIP it has to fit a laptop budget, hence:

* a fixed pool of rendered images reused across steps, each step drawing fresh captions for them;
* a text forward that stops at the longest caption of the batch (exact, because CLIP's text attention is
  causal and the features are read at the end-of-text token), ~5x less text work than 77 positions;
* 4 + 4 layers: the 12 + 12 layer test CLIP does not leave chance-level loss in a CPU budget.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .attributes import Scene
from .captions import caption
from .render import IMAGE_SIZE, render
from .scenes import sample_scene

__all__ = ["PretrainSettings", "QUICK", "DEFAULT", "make_pool", "pretrain", "encode_images", "encode_texts",
           "zero_shot_accuracy", "probe_zero_shot", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines the pretrained weights (recorded in the cache file's metadata)."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 128
    pool_size: int = 4096
    lr: float = 2e-3
    warmup_steps: int = 60
    weight_decay: float = 0.1
    embed_dim: int = 64
    vision_layers: int = 4
    vision_width: int = 64
    vision_patch_size: int = 8
    text_layers: int = 4
    text_width: int = 64
    text_heads: int = 4

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "pool_size", "embed_dim", "vision_layers", "vision_width",
                     "vision_patch_size", "text_layers", "text_width", "text_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PretrainSettings.{name} must be an int >= 1, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(f"PretrainSettings.batch_size must be >= 2 for a contrastive loss, got {self.batch_size}")
        if self.pool_size < self.batch_size:
            raise ValueError(f"PretrainSettings.pool_size ({self.pool_size}) must be >= batch_size "
                             f"({self.batch_size}): each step draws a batch of distinct pool images")
        if not (isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps < self.steps):
            raise ValueError(f"PretrainSettings.warmup_steps must be an int in [0, steps), got {self.warmup_steps!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"PretrainSettings: lr must be > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_sizes(self) -> dict[str, int]:
        return {"embed_dim": self.embed_dim, "vision_layers": self.vision_layers,
                "vision_width": self.vision_width, "vision_patch_size": self.vision_patch_size,
                "text_layers": self.text_layers, "text_width": self.text_width, "text_heads": self.text_heads,
                "image_resolution": IMAGE_SIZE}


DEFAULT = PretrainSettings()
# `quantprompt demo --quick`'s CLIP: the default's recipe with 2 + 2 layers, in two thirds of its time. Chosen
# on zero-shot and CoOp alone (docs/demo.md, "How --quick was chosen"): every shorter pretraining of the 4 + 4
# layer CLIP left CoOp within 2.6 points of zero-shot on sketches; this one gives it +7 to +10.
QUICK = PretrainSettings(vision_layers=2, text_layers=2)


def make_pool(n: int, seed: int) -> tuple[np.ndarray, list[Scene]]:
    """``n`` pretraining scenes and their images ((n, 32, 32, 3) uint8), deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 1])
    scenes = [sample_scene(rng) for _ in range(n)]
    images = np.stack([render(s, rng) for s in scenes])
    return images, scenes


def to_tensor(images: np.ndarray) -> Any:
    """uint8 (n, H, W, 3) -> CLIP-normalized float (n, 3, H, W), as the trainers' ``normalize`` transform."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@contextmanager
def _causal_mask_of_length(model: Any, length: int) -> Iterator[None]:
    blocks = model.transformer.resblocks
    saved = [b.attn_mask for b in blocks]
    try:
        for b, mask in zip(blocks, saved):
            b.attn_mask = None if mask is None else mask[:length, :length]
        yield
    finally:
        for b, mask in zip(blocks, saved):
            b.attn_mask = mask


def encode_texts(model: Any, tokens: Any) -> Any:
    """``model.encode_text(tokens)``, computed only up to the last end-of-text position of the batch.

    Exact: every position attends only to earlier ones, and the feature is read at the end-of-text token.
    """
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    x = model.token_embedding(tokens[:, :length]) + model.positional_embedding[:length]
    with _causal_mask_of_length(model, length):
        x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[range(x.shape[0]), eot] @ model.text_projection


def encode_images(model: Any, images: Any) -> Any:
    return model.encode_image(images)


def _tokenize(texts: Sequence[str]) -> Any:
    from quantprompt.clip import tokenize

    return tokenize(list(texts))


class _CaptionTokens:
    """``_tokenize`` with each distinct caption encoded once: captions repeat across steps (they name subsets
    of a few attributes), and BPE-encoding 128 strings a step was ~7% of the pretraining's time."""

    def __init__(self) -> None:
        self._rows: dict[str, Any] = {}

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if new:
            self._rows.update(zip(new, _tokenize(new)))
        return torch.stack([self._rows[t] for t in texts])


def zero_shot_accuracy(model: Any, images: np.ndarray, labels: Sequence[int], classnames: Sequence[str],
                       template: str = "a photo of a {}.") -> float:
    """Top-1 accuracy (%) of ``model`` classifying ``images`` by ``template`` prompts of ``classnames``."""
    import torch

    with torch.no_grad():
        text = encode_texts(model, _tokenize([template.format(c) for c in classnames]))
        text = text / text.norm(dim=-1, keepdim=True)
        correct = 0
        for start in range(0, len(images), 256):
            feats = encode_images(model, to_tensor(images[start:start + 256]))
            feats = feats / feats.norm(dim=-1, keepdim=True)
            pred = (feats @ text.t()).argmax(dim=-1)
            correct += int((pred == torch.as_tensor(list(labels[start:start + 256]))).sum())
    return 100.0 * correct / len(images)


def _lr_at(step: int, settings: PretrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(settings: PretrainSettings = DEFAULT, progress: bool = True,
             log: Optional[Callable[[str], None]] = None) -> Any:
    """Train a CLIP from ``quantprompt.clip.tiny(seed, **sizes)`` on the world; returns it in eval mode.

    Deterministic for a given ``settings`` and torch thread count. The global RNG is left untouched.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from quantprompt.clip import tiny

    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    images, scenes = make_pool(settings.pool_size, settings.seed)
    pixels = to_tensor(images)
    say(f"rendered {len(scenes)} pretraining images in {time.perf_counter() - t0:.1f} s")
    sizes = settings.model_sizes()
    sizes.pop("image_resolution")
    model = tiny(seed=settings.seed, arch="vit", **sizes, logit_scale=math.log(1 / 0.07))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embedding" in n]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.98),
                              eps=1e-6, foreach=True)  # bit-identical to the per-tensor loop (CPU default), faster
    rng = np.random.default_rng([settings.seed, 2])
    tokenize = _CaptionTokens()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        bar = tqdm(range(settings.steps), desc="pretraining world CLIP", disable=not progress, leave=False)
        for step in bar:
            idx = rng.choice(len(scenes), size=settings.batch_size, replace=False)
            tokens = tokenize([caption(scenes[i], rng) for i in idx])
            for group in optim.param_groups:
                group["lr"] = _lr_at(step, settings)
            img = encode_images(model, pixels[torch.from_numpy(idx)])
            txt = encode_texts(model, tokens)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            logits = model.logit_scale.exp() * img @ txt.t()
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            if step % 10 == 0 or step == settings.steps - 1:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
    say(f"pretrained {settings.steps} steps in {time.perf_counter() - t0:.1f} s (final loss {loss.item():.3f})")
    return model.eval()


def probe_zero_shot(model: Any, per_class: int = 4, seed: int = 12345) -> float:
    """Zero-shot accuracy (%) over the 64 colour + shape classes on fresh photos: the pretraining's health
    figure (chance: 1.6%), recorded in the cache file."""
    from .attributes import COLOURS, SHAPES

    rng = np.random.default_rng([seed, 3])
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    labels = [i for i in range(len(names)) for _ in range(per_class)]
    images = np.stack([render(sample_scene(rng, fixed={"colour": names[y].split()[0],
                                                       "shape": names[y].split()[1], "style": "photo"}), rng)
                       for y in labels])
    return zero_shot_accuracy(model, images, labels, names)
