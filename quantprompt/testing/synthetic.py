"""Synthetic datasets in the exact on-disk layouts that CoOp's dataset classes read.

``make_dataset(root, "Caltech101", n_classes=10, images_per_class=8, seed=0)`` writes
``root/caltech-101/101_ObjectCategories/<class>/*.jpg`` plus ``split_zhou_Caltech101.json``, and likewise for
the other 14 datasets, so every dataset class, trainer and script can be exercised end to end without
downloading anything. Images are 32x32 JPEGs whose colour and stripe pattern depend on the class (plus
per-image noise and phase), so a model can learn them and training loss measurably falls.

ImageNet and its four variants share class names, WordNet-style folder ids and class prototypes for the same
seed and ``n_classes``, so cross-dataset / domain-generalization runs (train on ImageNet, test on a variant)
transfer; each variant adds its own shift (sketch: desaturated, -A: noisy with occluders, -R: posterized).
"""

from __future__ import annotations

import colorsys
import json
import os
import re
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

__all__ = ["DATASET_NAMES", "SyntheticDataset", "make_dataset", "resolve_name"]

IMAGE_SIZE = 32
MARKER = ".quantprompt_synthetic.json"
_GENERATOR_VERSION = 1

# CoOp class name -> (dataset_dir, config file stem, extra accepted names)
_CATALOG: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ImageNet": ("imagenet", "imagenet", ()),
    "Caltech101": ("caltech-101", "caltech101", ()),
    "OxfordPets": ("oxford_pets", "oxford_pets", ()),
    "StanfordCars": ("stanford_cars", "stanford_cars", ()),
    "OxfordFlowers": ("oxford_flowers", "oxford_flowers", ("Flowers102",)),
    "Food101": ("food-101", "food101", ()),
    "FGVCAircraft": ("fgvc_aircraft", "fgvc_aircraft", ()),
    "SUN397": ("sun397", "sun397", ()),
    "DescribableTextures": ("dtd", "dtd", ("DTD",)),
    "EuroSAT": ("eurosat", "eurosat", ()),
    "UCF101": ("ucf101", "ucf101", ()),
    "ImageNetV2": ("imagenetv2", "imagenetv2", ()),
    "ImageNetSketch": ("imagenet-sketch", "imagenet_sketch", ()),
    "ImageNetA": ("imagenet-adversarial", "imagenet_a", ()),
    "ImageNetR": ("imagenet-rendition", "imagenet_r", ()),
}

DATASET_NAMES: tuple[str, ...] = tuple(_CATALOG)
"""The 15 CoOp dataset class names (``DATASET.NAME`` values) ``make_dataset`` can write."""

_IMAGENET_FAMILY = ("ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")

_VOCAB = (
    "apple anchor badger banjo beetle bison blender bonsai broom cactus camel canoe carrot castle cello cherry "
    "cobra comet compass coral cricket daisy dolphin donkey drum eagle easel falcon ferret fig flamingo flute "
    "gecko geyser giraffe glacier goose guitar hammer harp hedgehog heron iguana jaguar jellyfish kayak kettle "
    "kiwi koala ladder lantern lemur lobster lotus lynx magnet mango marmot meadow moose nectarine newt oboe "
    "octopus orchid otter owl panda parrot peach pelican pepper piano puffin quail quartz rabbit radish raven "
    "rhino robin saddle salmon scooter shark sparrow squid teapot tiger toucan tulip turtle umbrella urchin "
    "violin vulture walrus whale yak zebra"
).split()


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: dict[str, str] = {}
for _cls, (_ddir, _stem, _extra) in _CATALOG.items():
    for _alias in (_cls, _ddir, _stem, *_extra):
        _ALIASES[_norm(_alias)] = _cls
_ALIASES[_norm("ImageNet-Sketch")] = "ImageNetSketch"


def resolve_name(name: str) -> str:
    """Map any accepted spelling (CoOp class name, config stem, folder name) to the CoOp class name."""
    try:
        return _ALIASES[_norm(name)]
    except KeyError:
        raise ValueError(
            f"unknown dataset name {name!r}; valid names: {', '.join(DATASET_NAMES)} "
            "(config stems such as 'caltech101' and folder names such as 'caltech-101' work too)"
        ) from None


@dataclass
class SyntheticDataset:
    """What ``make_dataset`` wrote: pass ``root`` as ``DATASET.ROOT`` and ``name`` as ``DATASET.NAME``."""

    name: str
    root: Path
    dataset_dir: Path
    config_file: str
    classnames: list[str]
    num_train: int
    num_val: int
    num_test: int
    files: int = field(default=0)


# ----------------------------------------------------------------------------------------------- images


class _Painter:
    """Class prototypes (colour, stripe direction and frequency) and per-image sampling."""

    def __init__(self, seed: int, family: str, n_classes: int, stream: str) -> None:
        proto_rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
        offset = proto_rng.uniform()
        self.colours = []
        self.secondary = []
        for i in range(n_classes):
            hue = (offset + i / n_classes) % 1.0
            sat = proto_rng.uniform(0.55, 1.0)
            val = proto_rng.uniform(0.55, 0.95)
            self.colours.append(np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32))
            self.secondary.append(np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, sat, 0.35), dtype=np.float32))
        self.angles = proto_rng.uniform(0, np.pi, size=n_classes)
        self.freqs = 1.5 + (np.arange(n_classes) * 7 % 5) + proto_rng.uniform(0, 0.5, size=n_classes)
        self.rng = np.random.default_rng([seed, zlib.crc32(stream.encode()), 1])
        yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / IMAGE_SIZE
        self._yy, self._xx = yy, xx

    def image(self, label: int, style: str = "photo") -> np.ndarray:
        rng = self.rng
        theta = self.angles[label] + rng.normal(0, 0.1)
        coord = self._xx * np.cos(theta) + self._yy * np.sin(theta)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * self.freqs[label] * coord + rng.uniform(0, 2 * np.pi))
        weight = stripes[..., None] * 0.45
        img = self.colours[label] * (1 - weight) + self.secondary[label] * weight
        img = img * rng.uniform(0.85, 1.15)
        noise = 0.06
        if style == "sketch":
            gray = img.mean(axis=2, keepdims=True)
            img = 0.6 * img + 0.4 * np.clip(gray * 1.4, 0, 1)
        elif style == "adversarial":
            noise = 0.14
            y, x = rng.integers(0, IMAGE_SIZE - 10, size=2)
            img = img.copy()
            img[y : y + 10, x : x + 10] = rng.uniform(0, 1, size=3)
        elif style == "rendition":
            img = np.round(np.clip(img, 0, 1) * 3) / 3
        img = img + rng.normal(0, noise, size=img.shape)
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=92)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _split_counts(n: int) -> tuple[int, int, int]:
    """Per-class train/val/test counts, roughly CoOp's 50/20/30 with at least one image in each split."""
    n_val = max(1, round(0.2 * n))
    n_test = max(1, round(0.3 * n))
    return n - n_val - n_test, n_val, n_test


# ----------------------------------------------------------------------------------------------- writers


class _Writer:
    def __init__(self, name: str, root: Path, n_classes: int, images_per_class: int, seed: int) -> None:
        self.name = name
        self.root = root
        self.dir = root / _CATALOG[name][0]
        self.n = n_classes
        self.per_class = images_per_class
        self.seed = seed
        family = "ImageNet" if name in _IMAGENET_FAMILY else name
        self.painter = _Painter(seed, family, n_classes, stream=name)
        # labels follow the sorted folder names, as CoOp's splits (made from sorted folder listings) do
        self.words = sorted(_VOCAB[i % len(_VOCAB)] + ("" if i < len(_VOCAB) else str(i // len(_VOCAB) + 1))
                            for i in range(n_classes))
        self.files = 0
        self.split: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}

    def paint(self, path: Path, label: int, style: str = "photo") -> None:
        _save(path, self.painter.image(label, style))
        self.files += 1

    def split_file_dataset(
        self,
        image_dir: Path,
        split_name: str,
        relpath: Callable[[int, int, str, int], str],
        classname: Callable[[int], str],
    ) -> None:
        """Write images and ``split_zhou_<split_name>.json`` ([path relative to image_dir, label, classname]).

        ``relpath(label, k, split, serial)``: k counts images within the class, serial across the dataset.
        """
        counts = _split_counts(self.per_class)
        serial = 0
        for label in range(self.n):
            k = 0
            for split, count in zip(("train", "val", "test"), counts):
                for _ in range(count):
                    serial += 1
                    rel = relpath(label, k, split, serial)
                    self.paint(image_dir / rel, label)
                    self.split[split].append([rel, label, classname(label)])
                    k += 1
        _write_json(self.dir / f"split_zhou_{split_name}.json", self.split)

    def imagenet_classes(self) -> tuple[list[str], list[str]]:
        wnids = [f"n{1440764 + 9973 * i:08d}" for i in range(self.n)]
        names = [w.replace("_", " ") for w in self.words]
        _write_lines(self.dir / "classnames.txt", [f"{w} {c}" for w, c in zip(wnids, names)])
        return wnids, names


def _write(w: _Writer) -> list[str]:
    """Write dataset ``w.name``; return the class names in label order."""
    name, d, words = w.name, w.dir, w.words
    cap = [word.capitalize() for word in words]

    if name == "Caltech101":
        w.split_file_dataset(d / "101_ObjectCategories", "Caltech101",
                             lambda y, k, s, n: f"{words[y]}/image_{k + 1:04d}.jpg", lambda y: words[y])
        return list(words)
    if name == "OxfordPets":
        def pet(y: int, k: int, s: str, n: int) -> str:
            stem = cap[y] if y % 2 else words[y]  # cats are capitalized in the real file names
            return f"{stem}_{k + 1}.jpg"
        w.split_file_dataset(d / "images", "OxfordPets", pet, lambda y: words[y])
        lines = {"train": [], "val": [], "test": []}
        for split in ("train", "val", "test"):
            for rel, y, _ in w.split[split]:
                lines[split].append(f"{rel[:-4]} {y + 1} {1 + y % 2} {y // 2 + 1}")
        _write_lines(d / "annotations" / "trainval.txt", lines["train"] + lines["val"])
        _write_lines(d / "annotations" / "test.txt", lines["test"])
        return list(words)
    if name == "StanfordCars":
        names = [f"{2000 + y % 13} {cap[y]} Sedan" for y in range(w.n)]
        w.split_file_dataset(
            d, "StanfordCars",
            lambda y, k, s, n: f"{'cars_test' if s == 'test' else 'cars_train'}/{n:05d}.jpg",
            lambda y: names[y],
        )
        (d / "devkit").mkdir(exist_ok=True)
        return names
    if name == "OxfordFlowers":
        w.split_file_dataset(d / "jpg", "OxfordFlowers", lambda y, k, s, n: f"image_{n:05d}.jpg",
                             lambda y: words[y])
        _write_json(d / "cat_to_name.json", {str(y + 1): words[y] for y in range(w.n)})
        return list(words)
    if name == "Food101":
        w.split_file_dataset(d / "images", "Food101", lambda y, k, s, n: f"{words[y]}/{100000 + n}.jpg",
                             lambda y: words[y])
        _write_lines(d / "meta" / "classes.txt", list(words))
        return list(words)
    if name == "SUN397":
        w.split_file_dataset(d / "SUN397", "SUN397",
                             lambda y, k, s, n: f"{words[y][0]}/{words[y]}/sun_{n:08x}.jpg",
                             lambda y: words[y])
        _write_lines(d / "ClassName.txt", [f"/{word[0]}/{word}" for word in words])
        return list(words)
    if name == "DescribableTextures":
        w.split_file_dataset(d / "images", "DescribableTextures",
                             lambda y, k, s, n: f"{words[y]}/{words[y]}_{k + 1:04d}.jpg", lambda y: words[y])
        return list(words)
    if name == "EuroSAT":
        names = [f"{c} Land" for c in cap]
        w.split_file_dataset(d / "2750", "EuroSAT", lambda y, k, s, n: f"{cap[y]}/{cap[y]}_{k + 1}.jpg",
                             lambda y: names[y])
        return names
    if name == "UCF101":
        actions = [f"{c}_Dance" for c in cap]
        w.split_file_dataset(
            d / "UCF-101-midframes", "UCF101",
            lambda y, k, s, n: f"{actions[y]}/v_{cap[y]}Dance_g{k // 4 + 1:02d}_c{k % 4 + 1:02d}.jpg",
            lambda y: actions[y],
        )
        return actions
    if name == "FGVCAircraft":
        names = [f"{cap[y]}-{100 + y}" for y in range(w.n)]
        _write_lines(d / "variants.txt", names)
        serial = 1000000
        lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for y in range(w.n):
            for split, count in zip(("train", "val", "test"), _split_counts(w.per_class)):
                for _ in range(count):
                    serial += 1
                    w.paint(d / "images" / f"{serial:07d}.jpg", y)
                    lines[split].append(f"{serial:07d} {names[y]}")
                    w.split[split].append([f"{serial:07d}.jpg", y, names[y]])
        for split in ("train", "val", "test"):
            _write_lines(d / f"images_variant_{split}.txt", lines[split])
        return names
    if name == "ImageNet":
        wnids, names = w.imagenet_classes()
        n_tr, n_va, n_te = _split_counts(w.per_class)
        serial = 0
        for y, wnid in enumerate(wnids):
            for k in range(n_tr + n_va):
                w.paint(d / "images" / "train" / wnid / f"{wnid}_{k + 1}.JPEG", y)
                w.split["train"].append([f"train/{wnid}/{wnid}_{k + 1}.JPEG", y, names[y]])
            for _ in range(n_te):
                serial += 1
                rel = f"val/{wnid}/ILSVRC2012_val_{serial:08d}.JPEG"
                w.paint(d / "images" / rel, y)
                w.split["test"].append([rel, y, names[y]])
        return names
    # ImageNet variants: a single test set; labels follow the (sorted) ImageNet folder order.
    wnids, names = w.imagenet_classes()
    if name == "ImageNetV2":
        base, style = d / "imagenetv2-matched-frequency-format-val", "photo"
        folders = [str(y) for y in range(w.n)]
        fname = "{k:040x}.jpeg"
    elif name == "ImageNetSketch":
        base, style, folders, fname = d / "images", "sketch", wnids, "sketch_{k}.JPEG"
    elif name == "ImageNetA":
        base, style, folders, fname = d / "imagenet-a", "adversarial", wnids, "{k}.jpg"
    else:
        base, style, folders, fname = d / "imagenet-r", "rendition", wnids, "art_{k}.jpg"
    if name in ("ImageNetA", "ImageNetR"):
        base.mkdir(parents=True, exist_ok=True)
        (base / "README.txt").write_text("synthetic data written by quantprompt.testing.make_dataset\n")
    for y, folder in enumerate(folders):
        for k in range(w.per_class):
            rel = f"{folder}/{fname.format(k=k + 1)}"
            w.paint(base / rel, y, style)
            w.split["test"].append([rel, y, names[y]])
    return names


def make_dataset(
    root: Union[str, os.PathLike],
    name: str,
    n_classes: int = 10,
    images_per_class: int = 8,
    seed: int = 0,
) -> SyntheticDataset:
    """Write a synthetic dataset in CoOp's layout for ``name`` under ``root`` and describe it.

    ``images_per_class`` counts all splits together: split datasets get about 50/20/30% train/val/test
    (at least one each, so at least 3 images), ImageNet puts train+val into ``images/train`` and the rest into
    ``images/val``, and the test-only ImageNet variants put all images in their one folder. The output is the
    same for the same arguments. A folder that already exists is replaced only when an earlier
    ``make_dataset`` call wrote it (a hidden marker file says so); real data is never overwritten.
    """
    cls_name = resolve_name(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be an int >= 1, got {n_classes!r}")
    min_images = 1 if cls_name in _IMAGENET_FAMILY[1:] else 3
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < min_images:
        raise ValueError(
            f"images_per_class must be an int >= {min_images} for {cls_name} (train/val/test each need one "
            f"image per class), got {images_per_class!r}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")

    root = Path(root).expanduser().resolve()
    dataset_dir = root / _CATALOG[cls_name][0]
    if dataset_dir.exists():
        if not (dataset_dir / MARKER).is_file():
            raise FileExistsError(
                f"{dataset_dir} exists and was not written by make_dataset; refusing to overwrite it "
                "(pick another root or delete the folder)"
            )
        shutil.rmtree(dataset_dir)
    dataset_dir.mkdir(parents=True)

    writer = _Writer(cls_name, root, n_classes, images_per_class, seed)
    classnames = _write(writer)
    _write_json(dataset_dir / MARKER, {
        "generator": "quantprompt.testing.make_dataset",
        "version": _GENERATOR_VERSION,
        "name": cls_name,
        "n_classes": n_classes,
        "images_per_class": images_per_class,
        "seed": seed,
    })
    return SyntheticDataset(
        name=cls_name,
        root=root,
        dataset_dir=dataset_dir,
        config_file=f"configs/datasets/{_CATALOG[cls_name][1]}.yaml",
        classnames=classnames,
        num_train=len(writer.split["train"]),
        num_val=len(writer.split["val"]),
        num_test=len(writer.split["test"]),
        files=writer.files,
    )
