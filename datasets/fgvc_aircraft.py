"""FGVCAircraft (CoOp): ``fgvc_aircraft/images`` with the dataset's own ``variants.txt`` and
``images_variant_{train,val,test}.txt`` (no split_zhou file: the official split is used)."""

from __future__ import annotations

import os
from typing import Any

from quantprompt.engine.compat import DatasetBase

from .common import (
    DatasetNotFoundError,
    dataset_paths,
    load_or_make_fewshot,
    make_datum,
    register,
    require_dir,
    require_file,
    subsample_classes,
    subsample_option,
)


@register
class FGVCAircraft(DatasetBase):
    dataset_dir = "fgvc_aircraft"

    def __init__(self, cfg: Any) -> None:
        subsample = subsample_option(cfg)
        dataset_paths(self, cfg)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        require_dir(self.image_dir, "FGVCAircraft", "image folder")

        variants = os.path.join(self.dataset_dir, "variants.txt")
        require_file(variants, "FGVCAircraft", "class list")
        with open(variants) as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}

        train = self.read_data(cname2lab, "images_variant_train.txt")
        val = self.read_data(cname2lab, "images_variant_val.txt")
        test = self.read_data(cname2lab, "images_variant_test.txt")

        train, val = load_or_make_fewshot(self, cfg, train, val, self.split_fewshot_dir, self.image_dir,
                                          "FGVCAircraft")
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, cname2lab: dict[str, int], split_file: str) -> list:
        """``<image id> <variant name>`` per line -> Datum list (label = line of the variant in variants.txt)."""
        filepath = os.path.join(self.dataset_dir, split_file)
        require_file(filepath, "FGVCAircraft", "split file")
        items = []
        with open(filepath) as f:
            for line in f:
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                classname = " ".join(parts[1:])
                if classname not in cname2lab:
                    raise DatasetNotFoundError(
                        f"FGVCAircraft: class {classname!r} in {filepath} is not listed in variants.txt"
                    )
                impath = os.path.join(self.image_dir, parts[0] + ".jpg")
                items.append(make_datum(impath, cname2lab[classname], classname, "FGVCAircraft", filepath))
        return items
