"""EuroSAT (CoOp): ``eurosat/2750`` + ``split_zhou_EuroSAT.json``."""

from __future__ import annotations

from .common import SplitFileDataset, register

# CoOp's descriptive class names for the folder names (the published split file already uses them).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@register
class EuroSAT(SplitFileDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
