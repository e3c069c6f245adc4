"""Helpers shared by CoOp's dataset classes: split files, few-shot cache, base/new classes, errors.

Split files are CoOp's ``split_zhou_<Name>.json``: ``{"train"|"val"|"test": [[impath relative to the image
folder, label, classname], ...]}``. Few-shot subsets are cached per (shots, seed) as JSON in the same format
(``split_fewshot/shot_<K>-seed_<S>.json``), never as pickle. Anything missing raises ``DatasetNotFoundError``
naming the path and the DATASETS.md section that explains how to get it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

from quantprompt.engine.compat import DATASET_REGISTRY, DatasetBase, Datum

__all__ = [
    "DOCS_FILE",
    "DOCS_SECTIONS",
    "DatasetNotFoundError",
    "SUBSAMPLE_CHOICES",
    "SplitFileDataset",
    "dataset_paths",
    "list_class_folders",
    "list_images",
    "docs_ref",
    "fewshot_cache_path",
    "load_or_make_fewshot",
    "make_datum",
    "read_and_split_data",
    "read_classnames",
    "read_split",
    "register",
    "require_dir",
    "require_file",
    "save_split",
    "split_trainval",
    "subsample_classes",
    "subsample_option",
]

DOCS_FILE = "DATASETS.md"
# Dataset class name -> heading of its section in DATASETS.md (CoOp's headings).
DOCS_SECTIONS = {
    "ImageNet": "ImageNet",
    "Caltech101": "Caltech101",
    "OxfordPets": "OxfordPets",
    "StanfordCars": "StanfordCars",
    "OxfordFlowers": "Flowers102",
    "Food101": "Food101",
    "FGVCAircraft": "FGVCAircraft",
    "SUN397": "SUN397",
    "DescribableTextures": "DTD",
    "EuroSAT": "EuroSAT",
    "UCF101": "UCF101",
    "ImageNetV2": "ImageNetV2",
    "ImageNetSketch": "ImageNet-Sketch",
    "ImageNetA": "ImageNet-A",
    "ImageNetR": "ImageNet-R",
    "WorldShapes": "Demo world datasets",
    "WorldPatterns": "Demo world datasets",
    "WorldObjects": "Demo world datasets",
    "WorldSketches": "Demo world datasets",
    "WorldPaintings": "Demo world datasets",
}
SUBSAMPLE_CHOICES = ("all", "base", "new")
FEWSHOT_FORMAT = "quantprompt-fewshot-v1"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, split/annotation file or image is missing; the message says where to look."""


def docs_ref(dataset: str) -> str:
    """``DATASETS.md#<anchor>`` (GitHub anchor of the dataset's section)."""
    section = DOCS_SECTIONS.get(dataset, dataset)
    anchor = re.sub(r"[^a-z0-9 _-]", "", section.lower()).replace(" ", "-")
    return f"{DOCS_FILE}#{anchor}"


def _missing(dataset: str, what: str, path: str, extra: str = "") -> DatasetNotFoundError:
    section = DOCS_SECTIONS.get(dataset, dataset)
    return DatasetNotFoundError(
        f"{dataset}: {what} not found: {path}{extra}. Download and lay out the dataset as described in "
        f"{DOCS_FILE}, section '{section}' ({docs_ref(dataset)})."
    )


def require_dir(path: str, dataset: str, what: str = "dataset folder", root: Optional[str] = None) -> None:
    if not os.path.isdir(path):
        extra = f" (DATASET.ROOT is {root!r})" if root is not None else ""
        raise _missing(dataset, what, path, extra)


def require_file(path: str, dataset: str, what: str = "file") -> None:
    if not os.path.isfile(path):
        raise _missing(dataset, what, path)


def make_datum(impath: str, label: int, classname: str, dataset: str, source: Optional[str] = None) -> Any:
    """A Datum whose missing image is reported with the file that listed it and the docs section."""
    try:
        return Datum(impath=impath, label=label, classname=classname)
    except (FileNotFoundError, AssertionError):
        extra = f" (listed in {source})" if source else ""
        raise _missing(dataset, "image", impath, extra) from None


def subsample_option(cfg: Any) -> str:
    """``DATASET.SUBSAMPLE_CLASSES`` (CoOp's train.py adds it; "all" when a config lacks it), validated."""
    value = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
    if value not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES={value!r} is not one of {list(SUBSAMPLE_CHOICES)}")
    return value


# --------------------------------------------------------------------------------------------- split files


def _to_records(items: Sequence[Any], path_prefix: str) -> list[list[Any]]:
    prefix = os.path.join(path_prefix, "")
    out = []
    for item in items:
        impath = item.impath
        # fast path (ImageNet has 1.28M items): paths were built by joining path_prefix
        rel = impath[len(prefix):] if impath.startswith(prefix) else os.path.relpath(impath, path_prefix)
        out.append([rel.replace(os.sep, "/"), int(item.label), item.classname])
    return out


def _from_records(records: Any, path_prefix: str, dataset: str, source: str, key: str) -> list[Any]:
    if not isinstance(records, list):
        raise ValueError(f"{dataset}: {source}: '{key}' must be a list of [impath, label, classname]")
    out = []
    for record in records:
        if not (isinstance(record, (list, tuple)) and len(record) == 3):
            raise ValueError(
                f"{dataset}: {source}: entries of '{key}' must be [impath, label, classname], got {record!r}"
            )
        impath, label, classname = record
        out.append(make_datum(os.path.join(path_prefix, impath), int(label), classname, dataset, source))
    return out


def _read_json(path: str, dataset: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{dataset}: {path} is not valid JSON ({err}); delete it or download it again") from None


def _write_json(obj: Any, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache behind


def read_split(filepath: str, path_prefix: str, dataset: str = "dataset") -> tuple[list, list, list]:
    """Read a CoOp split file into (train, val, test) lists of Datum (image paths joined to path_prefix)."""
    require_file(filepath, dataset, "split file")
    print(f"Reading split from {filepath}")
    split = _read_json(filepath, dataset)
    missing = [k for k in ("train", "val", "test") if k not in split] if isinstance(split, dict) else ["train"]
    if missing:
        raise ValueError(f"{dataset}: split file {filepath} lacks {missing}; expected keys train, val, test")
    return tuple(_from_records(split[k], path_prefix, dataset, filepath, k) for k in ("train", "val", "test"))


def save_split(train: Sequence, val: Sequence, test: Sequence, filepath: str, path_prefix: str) -> None:
    """Write a CoOp split file (image paths relative to path_prefix)."""
    split = {k: _to_records(v, path_prefix) for k, v in (("train", train), ("val", val), ("test", test))}
    _write_json(split, filepath)
    print(f"Saved split to {filepath}")


def subsample_classes(*args: Sequence[Any], subsample: str = "all") -> Any:
    """CoOp's base/new split: sort the labels of the first list, base = first ceil(n/2), new = the rest.

    Every list keeps only the selected classes, relabelled 0.. in the old label order. "all" returns the
    inputs unchanged (as a tuple, like CoOp).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES={subsample!r} is not one of {list(SUBSAMPLE_CHOICES)}")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {old: new for new, old in enumerate(selected)}
    output = []
    for data in args:
        output.append([
            Datum(impath=item.impath, label=relabel[item.label], domain=item.domain, classname=item.classname)
            for item in data if item.label in relabel
        ])
    return output


# --------------------------------------------------------------------------------------------- few-shot


@contextmanager
def _python_random_seeded(seed: int) -> Iterator[None]:
    """Seed ``random`` as CoOp's train.py does before building the dataset; restore the state afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def fewshot_cache_path(split_fewshot_dir: str, num_shots: int, seed: int) -> str:
    return os.path.join(split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.json")


def _fingerprint(parts: dict[str, list[list[Any]]]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def load_or_make_fewshot(
    dataset_obj: Any,
    cfg: Any,
    train: list,
    val: Optional[list],
    split_fewshot_dir: str,
    path_prefix: str,
    dataset: str,
) -> tuple[list, Optional[list]]:
    """Apply ``DATASET.NUM_SHOTS``: K per class from train, min(K, 4) per class from val (when given).

    The subset is drawn with Dassl's ``generate_fewshot_dataset`` after ``random.seed(cfg.SEED)`` (CoOp seeds
    Python's RNG the same way right before), saved as JSON and reused on later runs with the same (K, seed).
    A cache made from a different split (its fingerprint differs) is redrawn. With a negative seed the draw
    is random and not cached.
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val
    seed = cfg.SEED
    source = {"train": _to_records(train, path_prefix)}
    if val is not None:
        source["val"] = _to_records(val, path_prefix)
    fingerprint = _fingerprint(source)

    if seed < 0:
        print(f"Note: SEED={seed} < 0, so the {num_shots}-shot subset is drawn at random and not cached")
        new_train = dataset_obj.generate_fewshot_dataset(train, num_shots=num_shots)
        new_val = None if val is None else dataset_obj.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        return new_train, new_val

    path = fewshot_cache_path(split_fewshot_dir, num_shots, seed)
    if os.path.isfile(path):
        data = _read_json(path, dataset)
        if isinstance(data, dict) and data.get("source_sha256") == fingerprint:
            print(f"Loading preprocessed few-shot data from {path}")
            new_train = _from_records(data["train"], path_prefix, dataset, path, "train")
            new_val = None if val is None else _from_records(data["val"], path_prefix, dataset, path, "val")
            return new_train, new_val
        print(f"Few-shot data in {path} was drawn from a different split; drawing it again")

    with _python_random_seeded(seed):
        new_train = dataset_obj.generate_fewshot_dataset(train, num_shots=num_shots)
        new_val = None if val is None else dataset_obj.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    data = {
        "format": FEWSHOT_FORMAT,
        "num_shots": num_shots,
        "seed": seed,
        "source_sha256": fingerprint,
        "train": _to_records(new_train, path_prefix),
    }
    if new_val is not None:
        data["val"] = _to_records(new_val, path_prefix)
    print(f"Saving preprocessed few-shot data to {path}")
    try:
        _write_json(data, path)
    except OSError as err:
        print(f"Warning: could not write the few-shot cache {path} ({err}); continuing without it")
    return new_train, new_val


# --------------------------------------------------------------------------------------------- readers


def read_classnames(text_file: str, dataset: str = "ImageNet") -> OrderedDict[str, str]:
    """ImageNet's classnames.txt: ``<folder> <class name>`` per line -> ordered {folder: class name}."""
    require_file(text_file, dataset, "class-name file")
    classnames: OrderedDict[str, str] = OrderedDict()
    with open(text_file) as f:
        for line in f:
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def list_images(folder: str) -> list[str]:
    """Non-hidden file names in ``folder``, sorted (CoOp keeps os.listdir order, which varies by system)."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))


def list_class_folders(folder: str) -> list[str]:
    """Non-hidden sub-folders of ``folder``, sorted (files such as README.txt are skipped)."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isdir(os.path.join(folder, f)))


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: Optional[dict[str, str]] = None,
) -> tuple[list, list, list]:
    """CoOp's DTD.read_and_split_data: split each class folder 50/20/30 at random (uses ``random``).

    Kept for dataset classes written against CoOp's API; our classes read the published split files instead.
    """
    categories = sorted(c for c in list_class_folders(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in list_images(category_dir)]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        if n_train < 1 or n_val < 1 or n_total - n_train - n_val < 1:
            raise ValueError(f"class folder {category_dir} has too few images ({n_total}) to split")
        name = new_cnames.get(category, category) if new_cnames else category
        train += [Datum(impath=im, label=label, classname=name) for im in images[:n_train]]
        val += [Datum(impath=im, label=label, classname=name) for im in images[n_train : n_train + n_val]]
        test += [Datum(impath=im, label=label, classname=name) for im in images[n_train + n_val :]]
    return train, val, test


def split_trainval(trainval: Sequence[Any], p_val: float = 0.2) -> tuple[list, list]:
    """CoOp's OxfordPets.split_trainval: hold out round(p_val * n) items per class as val (uses ``random``)."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: dict[int, list[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for idxs in tracker.values():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise ValueError(f"class with {len(idxs)} images is too small to hold out {p_val:.0%} for val")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


# --------------------------------------------------------------------------------------------- classes


def register(cls: type) -> type:
    """Register ``cls`` in DATASET_REGISTRY, tolerating a pipeline that already registered the name.

    Re-importing the same module (same module and class name) replaces the old entry; a different class
    of the same name (e.g. CoOp's own, imported first) is kept and a note says so.
    """
    name = cls.__name__
    if name in DATASET_REGISTRY.registered_names():
        existing = DATASET_REGISTRY.get(name)
        if (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__):
            DATASET_REGISTRY.register(cls, force=True)
        else:
            print(f"Note: dataset {name} is already registered (from {existing.__module__}); keeping that one")
        return cls
    DATASET_REGISTRY.register(cls)
    return cls


def dataset_paths(obj: Any, cfg: Any) -> str:
    """Resolve ``DATASET.ROOT``/<dataset_dir> into ``obj.dataset_dir`` (as CoOp does) and check it exists."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
    obj.dataset_dir = os.path.join(root, type(obj).dataset_dir)
    obj.split_fewshot_dir = os.path.join(obj.dataset_dir, "split_fewshot")
    require_dir(obj.dataset_dir, type(obj).__name__, "dataset folder", root=cfg.DATASET.ROOT)
    return obj.dataset_dir


class SplitFileDataset(DatasetBase):
    """A CoOp dataset read from its published split file: train/val/test, few-shot, base/new classes.

    Subclasses set ``dataset_dir`` (folder under DATASET.ROOT), ``image_subdir`` (folder the split's image
    paths are relative to; "" for the dataset folder itself) and ``split_file``.
    """

    dataset_dir = ""
    image_subdir = ""
    split_file = ""

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        subsample = subsample_option(cfg)
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_file)
        train, val, test = read_split(self.split_path, self.image_dir, name)
        train, val = load_or_make_fewshot(self, cfg, train, val, self.split_fewshot_dir, self.image_dir, name)
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)
