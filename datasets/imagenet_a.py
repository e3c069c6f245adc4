"""ImageNet-A (CoOp), test only: ``imagenet-adversarial/imagenet-a/<wnid>/`` + ``classnames.txt``.

200 of ImageNet's classes, labelled 0..199 in sorted folder order (as CoOp); README.txt is skipped.
"""

from __future__ import annotations

import os
from typing import Any

from quantprompt.engine.compat import DatasetBase

from . import common
from .common import dataset_paths, register
from .imagenet import read_folder_dataset


@register
class ImageNetA(DatasetBase):
    dataset_dir = "imagenet-adversarial"

    def __init__(self, cfg: Any) -> None:
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, "imagenet-a")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = common.read_classnames(text_file, "ImageNetA")
        data = read_folder_dataset(self.image_dir, classnames, "ImageNetA", text_file)
        super().__init__(train_x=data, test=data)
