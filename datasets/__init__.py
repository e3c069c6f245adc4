"""CoOp's 15 datasets as Dassl ``DatasetBase`` classes, registered in ``DATASET_REGISTRY`` on import.

Imported from the repo root (``import datasets``), never installed. Dassl names come from
``quantprompt.engine.compat``: real Dassl when installed, the built-in engine otherwise.
"""

from . import (  # noqa: F401  (importing registers each class)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
    world,
)
from .caltech101 import Caltech101
from .common import DatasetNotFoundError
from .dtd import DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_a import ImageNetA
from .imagenet_r import ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenetv2 import ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .ucf101 import UCF101
from .world import WorldObjects, WorldPaintings, WorldPatterns, WorldShapes, WorldSketches

DATASET_NAMES = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft",
    "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA",
    "ImageNetR",
)
# the demo world's datasets (quantprompt.world, docs/demo.md)
WORLD_DATASET_NAMES = ("WorldShapes", "WorldPatterns", "WorldObjects", "WorldSketches", "WorldPaintings")

__all__ = [
    "DATASET_NAMES",
    "WORLD_DATASET_NAMES",
    "DatasetNotFoundError",
    "Caltech101",
    "DescribableTextures",
    "EuroSAT",
    "FGVCAircraft",
    "Food101",
    "ImageNet",
    "ImageNetA",
    "ImageNetR",
    "ImageNetSketch",
    "ImageNetV2",
    "OxfordFlowers",
    "OxfordPets",
    "SUN397",
    "StanfordCars",
    "UCF101",
    "WorldObjects",
    "WorldPaintings",
    "WorldPatterns",
    "WorldShapes",
    "WorldSketches",
]
