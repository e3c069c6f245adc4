"""Food101 (CoOp): ``food-101/images`` + ``split_zhou_Food101.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register


@register
class Food101(SplitFileDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
