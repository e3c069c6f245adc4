"""DTD (CoOp's DescribableTextures): ``dtd/images`` + ``split_zhou_DescribableTextures.json``."""

from __future__ import annotations

from . import common
from .common import SplitFileDataset, register


@register
class DescribableTextures(SplitFileDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"

    # CoOp's helper that makes a 50/20/30 split from class folders (other projects' datasets call it).
    read_and_split_data = staticmethod(common.read_and_split_data)
