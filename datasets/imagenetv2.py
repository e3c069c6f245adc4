"""ImageNetV2 matched-frequency (CoOp), test only: ``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/``.

Folder ``<i>`` holds class ``i`` of ImageNet's ``classnames.txt`` (copied into ``imagenetv2/``). CoOp loops
over exactly 1000 folders; we loop over the classes listed in classnames.txt, so smaller synthetic copies work.
"""

from __future__ import annotations

import os
from typing import Any

from quantprompt.engine.compat import DatasetBase

from . import common
from .common import dataset_paths, list_images, make_datum, register, require_dir


@register
class ImageNetV2(DatasetBase):
    dataset_dir = "imagenetv2"

    def __init__(self, cfg: Any) -> None:
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, "imagenetv2-matched-frequency-format-val")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = common.read_classnames(text_file, "ImageNetV2")
        require_dir(self.image_dir, "ImageNetV2", "image folder")
        data = self.read_data(classnames)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: dict[str, str]) -> list:
        items = []
        for label, folder in enumerate(classnames):
            class_dir = os.path.join(self.image_dir, str(label))
            require_dir(class_dir, "ImageNetV2", f"folder of class {label} ({folder})")
            for imname in list_images(class_dir):
                items.append(make_datum(os.path.join(class_dir, imname), label, classnames[folder], "ImageNetV2"))
        return items
