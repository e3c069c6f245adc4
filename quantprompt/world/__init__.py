"""The demo world: procedural images and captions, a CLIP pretrained on them on the CPU, and downstream
datasets in CoOp's format, so the paper's base-to-new experiment runs for real in minutes (docs/demo.md).

Light at import: numpy only; torch is imported by the functions that train or load models.

>>> from quantprompt import world
>>> cached = world.ensure_clip("quick")           # pretrain once, then reuse ~/.cache/quantprompt/...
>>> world.write_dataset("data", "WorldShapes")    # data/world_shapes/ in CoOp's layout
"""

from __future__ import annotations

from .attributes import (
    BACKGROUNDS,
    COLOURS,
    PATTERNS,
    SHAPES,
    STYLES,
    WORLD_VERSION,
    Scene,
)
from .cache import PROFILES, CachedCLIP, check_cached, clip_path, ensure_clip, read_metadata
from .captions import caption
from .datasets import WORLD_DATASETS, WorldDatasetSpec, WrittenDataset, classnames, resolve, write_dataset
from .pretrain import (
    DEFAULT,
    QUICK,
    PretrainSettings,
    make_pool,
    pretrain,
    probe_zero_shot,
    zero_shot_accuracy,
)
from .render import IMAGE_SIZE, render
from .scenes import sample_scene

__all__ = [
    "BACKGROUNDS", "COLOURS", "PATTERNS", "SHAPES", "STYLES", "WORLD_VERSION", "Scene",
    "PROFILES", "CachedCLIP", "check_cached", "clip_path", "ensure_clip", "read_metadata", "caption",
    "WORLD_DATASETS", "WorldDatasetSpec", "WrittenDataset", "classnames", "resolve", "write_dataset",
    "DEFAULT", "QUICK", "PretrainSettings", "make_pool", "pretrain", "probe_zero_shot", "zero_shot_accuracy",
    "IMAGE_SIZE", "render", "sample_scene",
]
