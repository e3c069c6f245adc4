"""Dassl's ``build_transform``: the image pipelines CoOp, CoCoOp and MaPLe train and test with.

Training applies, in Dassl's order, the chosen ``INPUT.TRANSFORMS`` (CoOp: ``random_resized_crop`` with
``INPUT.RRCROP_SCALE``, ``random_flip``) then ``ToTensor`` and ``normalize``; testing always resizes the
shorter edge to ``max(INPUT.SIZE)``, center-crops to ``INPUT.SIZE``, then ``ToTensor`` and ``normalize``.
The printed lines are Dassl's, so logs read the same. The AutoAugment / RandAugment policies of Dassl's
semi-supervised trainers are not implemented and are refused by name.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import InterpolationMode

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "NOT_IMPLEMENTED_CHOICES",
    "Cutout",
    "GaussianNoise",
    "InstanceNormalization",
    "Random2DTranslation",
    "build_transform",
    "interpolation_mode",
]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # a default operation at test time
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

NOT_IMPLEMENTED_CHOICES = (
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
)

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def interpolation_mode(name: str) -> InterpolationMode:
    """Map ``INPUT.INTERPOLATION`` to torchvision's mode; unknown names list the valid ones."""
    try:
        return INTERPOLATION_MODES[name]
    except KeyError:
        raise ValueError(
            f"INPUT.INTERPOLATION={name!r} is not one of {sorted(INTERPOLATION_MODES)}"
        ) from None


class Random2DTranslation:
    """With probability ``p`` enlarge the image by 1/8 and randomly crop back to (height, width)."""

    def __init__(
        self, height: int, width: int, p: float = 0.5, interpolation: InterpolationMode = InterpolationMode.BILINEAR
    ) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Any) -> Any:
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_w = int(round(self.width * 1.125))
        new_h = int(round(self.height * 1.125))
        resized = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        x0 = int(round(random.uniform(0, new_w - self.width)))
        y0 = int(round(random.uniform(0, new_h - self.height)))
        return F.crop(resized, y0, x0, self.height, self.width)


class InstanceNormalization:
    """Normalize each channel of a (C, H, W) tensor to zero mean and unit std."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c, h, w = img.shape
        flat = img.reshape(c, h * w)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero ``n_holes`` random square patches of side ``length`` in a (C, H, W) tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        for _ in range(self.n_holes):
            y = np.random.randint(h)
            x = np.random.randint(w)
            y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
            x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p`` add N(mean, std) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


def build_transform(cfg: Any, is_train: bool = True, choices: Optional[Sequence[str]] = None) -> Optional[Callable]:
    """Build the train or test transform from ``cfg.INPUT`` (``choices`` overrides ``INPUT.TRANSFORMS``).

    Returns None when ``INPUT.NO_TRANSFORM`` is set, as Dassl does.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    choices = list(choices)
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ValueError(f"INPUT.TRANSFORMS: unknown transform {choice!r}; valid choices: {AVAI_CHOICES}")
    input_size = tuple(cfg.INPUT.SIZE)
    if len(input_size) != 2 or not all(isinstance(s, int) and s > 0 for s in input_size):
        raise ValueError(f"INPUT.SIZE must be two positive ints (height, width), got {cfg.INPUT.SIZE!r}")
    interp = interpolation_mode(cfg.INPUT.INTERPOLATION)
    target_size = f"{input_size[0]}x{input_size[1]}"
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_transform_train(cfg, choices, input_size, interp, target_size, normalize)
    return _build_transform_test(cfg, choices, input_size, interp, target_size, normalize)


def _build_transform_train(
    cfg: Any,
    choices: list[str],
    input_size: tuple[int, int],
    interp: InterpolationMode,
    target_size: str,
    normalize: Normalize,
) -> Compose:
    unsupported = [c for c in choices if c in NOT_IMPLEMENTED_CHOICES]
    if unsupported:
        raise ValueError(
            f"INPUT.TRANSFORMS: {unsupported} (AutoAugment/RandAugment policies of Dassl's semi-supervised "
            "trainers) are not implemented by the built-in engine; remove them or install Dassl.pytorch"
        )
    print("Building transform_train")
    tfm: list[Any] = []

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        tfm.append(Resize(input_size, interpolation=interp))

    if "random_translation" in choices:
        print("+ random translation")
        tfm.append(Random2DTranslation(input_size[0], input_size[1]))

    if "random_crop" in choices:
        padding = cfg.INPUT.CROP_PADDING
        print(f"+ random crop (padding = {padding})")
        tfm.append(RandomCrop(input_size, padding=padding))

    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        print(f"+ random resized crop (size={cfg.INPUT.SIZE}, scale={scale})")
        tfm.append(RandomResizedCrop(input_size, scale=tuple(scale), interpolation=interp))

    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(RandomHorizontalFlip())

    if "colorjitter" in choices:
        b, c, s, h = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C, cfg.INPUT.COLORJITTER_S,
                      cfg.INPUT.COLORJITTER_H)
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        tfm.append(ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))

    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm.append(RandomGrayscale(p=cfg.INPUT.RGS_P))

    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfm.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))

    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())

    if "cutout" in choices:
        n, length = cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN
        print(f"+ cutout (n_holes={n}, length={length})")
        tfm.append(Cutout(n, length))

    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)

    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        tfm.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))

    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())

    return Compose(tfm)


def _build_transform_test(
    cfg: Any,
    choices: list[str],
    input_size: tuple[int, int],
    interp: InterpolationMode,
    target_size: str,
    normalize: Normalize,
) -> Compose:
    print("Building transform_test")
    tfm: list[Any] = []
    print(f"+ resize the smaller edge to {max(input_size)}")
    tfm.append(Resize(max(input_size), interpolation=interp))
    print(f"+ {target_size} center crop")
    tfm.append(CenterCrop(input_size))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return Compose(tfm)
