"""ImageNet (CoOp): ``imagenet/images/{train,val}/<wnid>/`` + ``imagenet/classnames.txt``.

As in CoOp, the official val set is the test set and also serves as val; labels follow the sorted folder
names. CoOp caches the folder scan in ``preprocessed.pkl``; we never unpickle, so the folders are scanned on
each run (an existing ``preprocessed.pkl`` is ignored).
"""

from __future__ import annotations

import os
from typing import Any

from quantprompt.engine.compat import DatasetBase

from . import common
from .common import (
    DatasetNotFoundError,
    dataset_paths,
    list_class_folders,
    list_images,
    load_or_make_fewshot,
    make_datum,
    register,
    require_dir,
    subsample_classes,
    subsample_option,
)


def read_folder_dataset(image_dir: str, classnames: dict[str, str], dataset: str, text_file: str) -> list:
    """Datum list from ``image_dir/<folder>/<image>``; label = index of the folder in sorted order."""
    require_dir(image_dir, dataset, "image folder")
    items = []
    for label, folder in enumerate(list_class_folders(image_dir)):
        if folder not in classnames:
            raise DatasetNotFoundError(
                f"{dataset}: folder {os.path.join(image_dir, folder)} has no line in {text_file}; "
                f"copy ImageNet's classnames.txt there (see {common.docs_ref(dataset)})"
            )
        folder_dir = os.path.join(image_dir, folder)
        for imname in list_images(folder_dir):
            items.append(make_datum(os.path.join(folder_dir, imname), label, classnames[folder], dataset))
    return items


@register
class ImageNet(DatasetBase):
    dataset_dir = "imagenet"

    read_classnames = staticmethod(common.read_classnames)

    def __init__(self, cfg: Any) -> None:
        subsample = subsample_option(cfg)
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = common.read_classnames(text_file, "ImageNet")
        train = read_folder_dataset(os.path.join(self.image_dir, "train"), classnames, "ImageNet", text_file)
        # Standard practice: evaluate on the official val set, which is also used as val (last-step model).
        test = read_folder_dataset(os.path.join(self.image_dir, "val"), classnames, "ImageNet", text_file)

        train, _ = load_or_make_fewshot(self, cfg, train, None, self.split_fewshot_dir, self.image_dir, "ImageNet")
        train, test = subsample_classes(train, test, subsample=subsample)
        super().__init__(train_x=train, val=test, test=test)
