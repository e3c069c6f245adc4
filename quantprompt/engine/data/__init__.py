"""The data side of the built-in engine: Dassl's datasets, transforms, samplers and data manager.

``quantprompt.engine.compat`` hands these names to ``datasets/``, ``trainers/`` and ``train.py`` when Dassl
is not installed; they follow ``dassl.data`` (names, defaults, batch dicts, printed lines).
"""

from .data_manager import DataManager, DatasetWrapper, build_data_loader, read_image
from .datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset, check_availability
from .samplers import build_sampler
from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform

__all__ = [
    "AVAI_CHOICES",
    "DATASET_REGISTRY",
    "DataManager",
    "DatasetBase",
    "DatasetWrapper",
    "Datum",
    "INTERPOLATION_MODES",
    "build_data_loader",
    "build_dataset",
    "build_sampler",
    "build_transform",
    "check_availability",
    "read_image",
]
