"""UCF101 (CoOp, middle video frames): ``ucf101/UCF-101-midframes`` + ``split_zhou_UCF101.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register


@register
class UCF101(SplitFileDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
