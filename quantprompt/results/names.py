"""Names of datasets and methods: canonical keys, the labels the papers print, and the order of rows.

A dataset is named by its folder (``caltech101``) or its Dassl class (``Caltech101``); :func:`dataset_key`
maps both, and the usual aliases, to one key. A method is a (trainer, config) pair; its row label is the trainer's
name, plus the config where one trainer ran with several.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .tree import is_zeroshot

__all__ = [
    "DATASETS",
    "DG_TARGETS",
    "SOURCE",
    "Method",
    "dataset_key",
    "dataset_label",
    "dataset_sort",
    "label_methods",
    "method_display",
    "method_sort_key",
]

# canonical key -> (label, short label used in transfer tables)
DATASETS = {
    "imagenet": ("ImageNet", "ImageNet"),
    "caltech101": ("Caltech101", "Caltech101"),
    "oxford_pets": ("OxfordPets", "Pets"),
    "stanford_cars": ("StanfordCars", "Cars"),
    "oxford_flowers": ("Flowers102", "Flowers"),
    "food101": ("Food101", "Food101"),
    "fgvc_aircraft": ("FGVCAircraft", "Aircraft"),
    "sun397": ("SUN397", "SUN397"),
    "dtd": ("DTD", "DTD"),
    "eurosat": ("EuroSAT", "EuroSAT"),
    "ucf101": ("UCF101", "UCF101"),
    "imagenetv2": ("ImageNet-V2", "-V2"),
    "imagenet_sketch": ("ImageNet-Sketch", "-Sketch"),
    "imagenet_a": ("ImageNet-A", "-A"),
    "imagenet_r": ("ImageNet-R", "-R"),
}
_ALIASES = {
    "oxfordpets": "oxford_pets",
    "pets": "oxford_pets",
    "stanfordcars": "stanford_cars",
    "cars": "stanford_cars",
    "oxfordflowers": "oxford_flowers",
    "flowers102": "oxford_flowers",
    "flowers": "oxford_flowers",
    "fgvcaircraft": "fgvc_aircraft",
    "aircraft": "fgvc_aircraft",
    "describabletextures": "dtd",
    "imagenet_v2": "imagenetv2",
    "imagenetsketch": "imagenet_sketch",
    "imageneta": "imagenet_a",
    "imagenetr": "imagenet_r",
    "sun": "sun397",
}
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SOURCE = "imagenet"
_METHOD_ORDER = [
    "zeroshotclip",
    "zsclip",
    "clip",
    "coop",
    "noisecoop",
    "cocoop",
    "qcoop",
    "qcocoop",
    "maple",
    "qmaple",
    "p4q",
]


def dataset_key(name: str) -> str:
    """Folder or class name of a dataset -> canonical key (``Caltech101`` and ``caltech101`` agree)."""
    k = name.strip().lower().replace("-", "_")
    k = _ALIASES.get(k, _ALIASES.get(k.replace("_", ""), k))
    return k


def dataset_label(key: str, short: bool = False) -> str:
    if key in DATASETS:
        return DATASETS[key][1 if short else 0]
    return key


def dataset_sort(keys: Iterable[str]) -> list[str]:
    order = list(DATASETS)
    return sorted(set(keys), key=lambda k: (order.index(k) if k in order else len(order), k))


def method_display(trainer: str) -> str:
    return "CLIP" if is_zeroshot(trainer) else trainer


@dataclass
class Method:
    trainer: str
    cfg: str
    label: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.trainer, self.cfg)


def method_sort_key(m: Method) -> tuple:
    t = m.trainer.lower()
    return (_METHOD_ORDER.index(t) if t in _METHOD_ORDER else len(_METHOD_ORDER), t, m.cfg)


def label_methods(methods: Iterable[Method]) -> list[Method]:
    methods = sorted({m.key: m for m in methods}.values(), key=method_sort_key)
    per_trainer = Counter(m.trainer for m in methods)
    for m in methods:
        name = method_display(m.trainer)
        m.label = name if per_trainer[m.trainer] == 1 else f"{name} ({m.cfg})"
    return methods
