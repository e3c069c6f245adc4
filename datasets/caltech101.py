"""Caltech101 (CoOp): ``caltech-101/101_ObjectCategories`` + ``split_zhou_Caltech101.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register

# CoOp builds its split without these two folders and renames four classes; kept for reference/extension.
IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@register
class Caltech101(SplitFileDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
