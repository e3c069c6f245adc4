"""OxfordPets (CoOp): ``oxford_pets/images`` + ``split_zhou_OxfordPets.json``.

Also carries CoOp's static helpers (``OxfordPets.read_split`` & co.), which CoOp-style dataset classes of
other projects call.
"""

from __future__ import annotations

from . import common
from .common import SplitFileDataset, register


@register
class OxfordPets(SplitFileDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"

    read_split = staticmethod(common.read_split)
    save_split = staticmethod(common.save_split)
    subsample_classes = staticmethod(common.subsample_classes)
    split_trainval = staticmethod(common.split_trainval)
