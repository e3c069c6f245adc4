"""Flowers102 (CoOp's OxfordFlowers): ``oxford_flowers/jpg`` + ``split_zhou_OxfordFlowers.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register


@register
class OxfordFlowers(SplitFileDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
