"""ImageNet-Sketch (CoOp), test only: ``imagenet-sketch/images/<wnid>/`` + ``classnames.txt``."""

from __future__ import annotations

import os
from typing import Any

from quantprompt.engine.compat import DatasetBase

from . import common
from .common import dataset_paths, register
from .imagenet import read_folder_dataset


@register
class ImageNetSketch(DatasetBase):
    dataset_dir = "imagenet-sketch"

    def __init__(self, cfg: Any) -> None:
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = common.read_classnames(text_file, "ImageNetSketch")
        data = read_folder_dataset(self.image_dir, classnames, "ImageNetSketch", text_file)
        super().__init__(train_x=data, test=data)
