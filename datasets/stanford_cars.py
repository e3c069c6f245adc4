"""StanfordCars (CoOp): ``stanford_cars/{cars_train,cars_test}`` + ``split_zhou_StanfordCars.json``.

The split's image paths are relative to the dataset folder itself (``cars_train/00001.jpg``).
"""

from __future__ import annotations

from .common import SplitFileDataset, register


@register
class StanfordCars(SplitFileDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
