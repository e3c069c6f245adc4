"""Dassl's dataset side: ``Datum``, ``DatasetBase``, ``DATASET_REGISTRY`` and ``build_dataset``.

Same names, attributes and sampling algorithm as ``dassl.data.datasets`` so that CoOp-style dataset classes
(``datasets/`` at the repo root) run unchanged on either backend. Differences are in the errors only: a
missing image is a ``FileNotFoundError`` naming the path (Dassl: a bare ``assert``), and an unknown dataset
name lists the registered ones and says how to register CoOp's datasets.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from difflib import SequenceMatcher
from typing import Any, Optional, Sequence

from quantprompt.engine.registry import Registry

__all__ = ["DATASET_REGISTRY", "Datum", "DatasetBase", "build_dataset", "check_availability"]

DATASET_REGISTRY = Registry("DATASET")


class Datum:
    """One labelled image: path, class label, domain label and class name (read-only, as in Dassl).

    The image must exist when the Datum is made, so that a broken split fails at load time rather than in
    the middle of an epoch.
    """

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        if not os.path.isfile(impath):
            raise FileNotFoundError(f"image file not found: {impath}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label!r}, domain={self._domain!r}, "
            f"classname={self._classname!r})"
        )


class DatasetBase:
    """Container of train_x / train_u / val / test lists of ``Datum``, with Dassl's helpers.

    Subclasses set ``dataset_dir`` (folder under ``DATASET.ROOT``) and, for domain datasets, ``domains``.
    ``num_classes`` is ``max(label) + 1`` of train_x and ``lab2cname`` / ``classnames`` come from train_x,
    exactly as in Dassl (so after base/new subsampling they describe the selected classes only).
    """

    dataset_dir = ""  # folder of the dataset under DATASET.ROOT
    domains: list[str] = []  # names of the domains (domain adaptation / generalization datasets)

    def __init__(
        self,
        train_x: Optional[list[Datum]] = None,
        train_u: Optional[list[Datum]] = None,
        val: Optional[list[Datum]] = None,
        test: Optional[list[Datum]] = None,
    ) -> None:
        if not train_x:
            raise ValueError(
                f"{type(self).__name__}: train_x is empty; the dataset split lists no training images "
                "(check the split file and DATASET.SUBSAMPLE_CLASSES)"
            )
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> Optional[list[Datum]]:
        return self._train_x

    @property
    def train_u(self) -> Optional[list[Datum]]:
        return self._train_u

    @property
    def val(self) -> Optional[list[Datum]]:
        return self._val

    @property
    def test(self) -> Optional[list[Datum]]:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """Number of classes as Dassl counts them: the largest label plus one."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> tuple[dict[int, str], list[str]]:
        """Label -> class name mapping and the class names ordered by label."""
        seen = {item.label: item.classname for item in data_source}
        mapping = {label: seen[label] for label in sorted(seen)}
        return mapping, list(mapping.values())

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        """Validate DATASET.SOURCE_DOMAINS / TARGET_DOMAINS against ``self.domains``."""
        if len(source_domains) == 0:
            raise ValueError("DATASET.SOURCE_DOMAINS is empty; list at least one of " f"{self.domains}")
        if len(target_domains) == 0:
            raise ValueError("DATASET.TARGET_DOMAINS is empty; list at least one of " f"{self.domains}")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Dassl downloads with gdown here; the built-in engine never downloads (see DATASETS.md)."""
        raise NotImplementedError(
            f"{type(self).__name__}: automatic download is not supported by the built-in engine; "
            f"download {url} to {dst} by hand (see DATASETS.md)"
        )

    def generate_fewshot_dataset(
        self, *data_sources: list[Datum], num_shots: int = -1, repeat: bool = False
    ) -> Any:
        """Sample ``num_shots`` items per class from each data source (Dassl's algorithm and RNG use).

        Uses the global ``random`` module like Dassl, classes in first-seen order, so a run seeded with
        ``random.seed(s)`` picks the very same images as Dassl/CoOp with seed ``s``. Classes with fewer
        items keep all of them (or draw with replacement when ``repeat``).
        """
        if num_shots < 1:
            if len(data_sources) == 1:
                return data_sources[0]
            return data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset: list[Datum] = []
            for items in tracker.values():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)

        if len(output) == 1:
            return output[0]
        return output

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group items by label (dict in first-seen label order)."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group items by domain label (dict in first-seen order)."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output


def _most_similar(name: str, candidates: Sequence[str]) -> Optional[str]:
    best, best_score = None, -1.0
    for candidate in candidates:
        score = SequenceMatcher(None, name.lower(), candidate.lower()).ratio()
        if score > best_score:
            best, best_score = candidate, score
    return best


def check_availability(requested: str, available: Sequence[str]) -> None:
    """Raise a ValueError listing ``available`` (and the closest match) when ``requested`` is not in it."""
    if requested in available:
        return
    if not available:
        raise ValueError(
            f"Dataset [{requested}] is not registered and no dataset is: import the repo-root package "
            "`datasets` (as train.py does) to register CoOp's datasets"
        )
    guess = _most_similar(requested, available)
    raise ValueError(
        f"The requested one is expected to belong to {sorted(available)}, but got [{requested}] "
        f"(do you mean [{guess}]?)"
    )


def build_dataset(cfg: Any) -> DatasetBase:
    """Instantiate the dataset class registered as ``cfg.DATASET.NAME``."""
    name = cfg.DATASET.NAME
    check_availability(name, DATASET_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)
