"""Test fixtures: synthetic datasets in CoOp's on-disk format (see :func:`make_dataset`).

Only numpy and Pillow are needed; torch is never imported here.
"""

from .synthetic import DATASET_NAMES, SyntheticDataset, make_dataset, resolve_name

__all__ = ["DATASET_NAMES", "SyntheticDataset", "make_dataset", "resolve_name"]
