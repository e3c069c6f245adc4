"""The demo world's downstream datasets, written in CoOp's on-disk format (class folders + split file).

They differ the way CoOp's 11 datasets do: in which attributes define a class (colour + shape, pattern +
shape, pattern + colour + shape), in class count (64, 32, 48) and in image distribution (photos of anything;
objects on black; sketches, a domain that pretraining saw in 10% of its images, where hand-written prompts
fall short of what the image features know, as on EuroSAT or DTD with real CLIP; paintings, the
domain-shifted copy of WorldShapes for domain-generalization and cross-dataset runs). Labels follow the sorted class names, as CoOp's splits made from sorted folder listings,
so base-to-new's "first half of the labels" is an alphabetical cut, as on Caltech101 or DTD.

    write_dataset(root, "WorldShapes")  ->  root/world_shapes/images/<class>/<n>.png + split_zhou_WorldShapes.json
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .attributes import COLOURS, PATTERNS, SHAPES, WORLD_VERSION
from .render import render
from .scenes import sample_scene

__all__ = ["WorldDatasetSpec", "WORLD_DATASETS", "WrittenDataset", "write_dataset", "classnames", "resolve",
           "MARKER"]

MARKER = ".quantprompt_world.json"
_VALUES = {"colour": COLOURS, "pattern": PATTERNS, "shape": SHAPES}


@dataclass(frozen=True)
class WorldDatasetSpec:
    """One downstream dataset: its folder, the attributes naming its classes and its image distribution."""

    name: str                          # DATASET.NAME (the DatasetBase class in datasets/world.py)
    dataset_dir: str                   # folder under DATASET.ROOT
    config: str                        # configs/datasets/<config>.yaml
    class_attributes: tuple[str, ...]  # in class-name word order, e.g. ("pattern", "colour", "shape")
    template: str                      # CoOp-style hand-written prompt for zero-shot CLIP
    n_classes: Optional[int] = None    # None: every combination; else a fixed random subset of this size
    styles: Mapping[str, float] = field(default_factory=lambda: {"photo": 1.0})
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # restricts the non-class attributes
    description: str = ""

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.name}.json"


WORLD_DATASETS: dict[str, WorldDatasetSpec] = {s.name: s for s in (
    WorldDatasetSpec("WorldShapes", "world_shapes", "world_shapes", ("colour", "shape"), "a photo of a {}.",
                     description="64 classes colour + shape ('red circle'); photos, all patterns and "
                                 "backgrounds"),
    WorldDatasetSpec("WorldPatterns", "world_patterns", "world_patterns", ("pattern", "shape"),
                     "a photo of a {}.",
                     description="32 classes pattern + shape ('striped square'); photos, any colour"),
    WorldDatasetSpec("WorldObjects", "world_objects", "world_objects", ("pattern", "colour", "shape"),
                     "a photo of a {}.", n_classes=48,
                     choices={"background": ("black",)},
                     description="48 of the 256 pattern + colour + shape classes ('striped blue square'); "
                                 "objects on black"),
    WorldDatasetSpec("WorldSketches", "world_sketches", "world_sketches", ("colour", "shape"),
                     "a sketch of a {}.", styles={"sketch": 1.0},
                     description="WorldShapes' 64 classes as sketches (coloured outlines on paper): a domain "
                                 "pretraining rarely saw; the demo's base-to-new dataset"),
    WorldDatasetSpec("WorldPaintings", "world_paintings", "world_paintings", ("colour", "shape"),
                     "a painting of a {}.", styles={"painting": 1.0},
                     description="WorldShapes' 64 classes as paintings: the domain-shifted target for "
                                 "domain-generalization and cross-dataset runs"),
)}


def resolve(name: str) -> WorldDatasetSpec:
    """Spec by class name (``WorldShapes``) or config/folder name (``world_shapes``)."""
    for spec in WORLD_DATASETS.values():
        if name in (spec.name, spec.dataset_dir, spec.config):
            return spec
    raise ValueError(f"unknown world dataset {name!r}; known: {', '.join(WORLD_DATASETS)} "
                     f"(or {', '.join(s.config for s in WORLD_DATASETS.values())})")


def _combinations(spec: WorldDatasetSpec, seed: int) -> list[dict[str, str]]:
    combos = [dict(zip(spec.class_attributes, values))
              for values in itertools.product(*(_VALUES[a] for a in spec.class_attributes))]
    if spec.n_classes is not None and spec.n_classes < len(combos):
        rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), 0])
        keep = sorted(rng.choice(len(combos), size=spec.n_classes, replace=False))
        combos = [combos[i] for i in keep]
    return sorted(combos, key=lambda c: " ".join(c[a] for a in spec.class_attributes))


def classnames(name: str, seed: int = 0) -> list[str]:
    """Class names of dataset ``name`` in label order (sorted)."""
    spec = resolve(name)
    return [" ".join(c[a] for a in spec.class_attributes) for c in _combinations(spec, seed)]


@dataclass
class WrittenDataset:
    """What :func:`write_dataset` wrote (or found up to date)."""

    name: str
    root: Path
    dataset_dir: Path
    config_file: str
    classnames: list[str]
    counts: dict[str, int]
    reused: bool


def _marker(spec: WorldDatasetSpec, seed: int, per_class: tuple[int, int, int]) -> dict[str, Any]:
    return {"generator": "quantprompt.world.write_dataset", "world_version": WORLD_VERSION, "name": spec.name,
            "seed": seed, "train_val_test_per_class": list(per_class)}


def write_dataset(root: Union[str, os.PathLike], name: str, seed: int = 0, train_per_class: int = 32,
                  val_per_class: int = 4, test_per_class: int = 24) -> WrittenDataset:
    """Write dataset ``name`` under ``root`` in CoOp's layout; same arguments -> same bytes.

    A folder written earlier with the same arguments and world version is kept as it is; one written by an
    older version or other arguments is rewritten; a folder this function did not write is never touched.
    """
    spec = resolve(name)
    per_class = (train_per_class, val_per_class, test_per_class)
    for key, value in zip(("train_per_class", "val_per_class", "test_per_class"), per_class):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an int >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    root = Path(root).expanduser().resolve()
    target = root / spec.dataset_dir
    marker = _marker(spec, seed, per_class)
    names = classnames(spec.name, seed)
    if target.exists():
        marker_path = target / MARKER
        if not marker_path.is_file():
            raise FileExistsError(f"{target} exists and was not written by quantprompt.world; refusing to "
                                  "overwrite it (pick another root or delete the folder)")
        try:
            old = json.loads(marker_path.read_text())
        except (OSError, ValueError):
            old = None
        if old == marker:
            return WrittenDataset(spec.name, root, target, f"configs/datasets/{spec.config}.yaml", names,
                                  _counts(len(names), per_class), reused=True)
        shutil.rmtree(target)

    tmp = root / f".{spec.dataset_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_into(tmp, spec, seed, per_class, names)
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        os.replace(tmp, target)  # all or nothing: an interrupted write leaves no half dataset behind
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return WrittenDataset(spec.name, root, target, f"configs/datasets/{spec.config}.yaml", names,
                          _counts(len(names), per_class), reused=False)


def _counts(n_classes: int, per_class: tuple[int, int, int]) -> dict[str, int]:
    return {split: n_classes * k for split, k in zip(("train", "val", "test"), per_class)}


def _write_into(folder: Path, spec: WorldDatasetSpec, seed: int, per_class: tuple[int, int, int],
                names: list[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), 1])
    split: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
    for label, (combo, classname) in enumerate(zip(_combinations(spec, seed), names)):
        class_dir = classname.replace(" ", "_")
        (folder / "images" / class_dir).mkdir(parents=True)
        k = 0
        for split_name, count in zip(("train", "val", "test"), per_class):
            for _ in range(count):
                k += 1
                scene = sample_scene(rng, fixed=combo, choices=spec.choices, styles=spec.styles)
                rel = f"{class_dir}/{k:04d}.png"
                Image.fromarray(render(scene, rng)).save(folder / "images" / rel, format="PNG", compress_level=6)
                split[split_name].append([rel, label, classname])
    with open(folder / spec.split_file, "w") as f:
        json.dump(split, f, indent=1)
