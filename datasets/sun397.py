"""SUN397 (CoOp): ``sun397/SUN397`` + ``split_zhou_SUN397.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register


@register
class SUN397(SplitFileDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
