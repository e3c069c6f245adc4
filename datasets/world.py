"""The demo world's datasets (``quantprompt.world``): CoOp split-file datasets written by ``quantprompt demo``.

``WorldShapes`` (colour + shape), ``WorldPatterns`` (pattern + shape), ``WorldObjects`` (pattern + colour +
shape), ``WorldSketches`` (WorldShapes' classes as sketches, a domain pretraining rarely saw: the demo's
base-to-new set) and ``WorldPaintings`` (WorldShapes as paintings, the domain-shifted target). Written by
``quantprompt.world.write_dataset`` (or ``quantprompt demo``) into ``DATASET.ROOT``; see docs/demo.md.
"""

from __future__ import annotations

from .common import SplitFileDataset, register


class _World(SplitFileDataset):
    image_subdir = "images"


@register
class WorldShapes(_World):
    dataset_dir = "world_shapes"
    split_file = "split_zhou_WorldShapes.json"


@register
class WorldPatterns(_World):
    dataset_dir = "world_patterns"
    split_file = "split_zhou_WorldPatterns.json"


@register
class WorldObjects(_World):
    dataset_dir = "world_objects"
    split_file = "split_zhou_WorldObjects.json"


@register
class WorldSketches(_World):
    dataset_dir = "world_sketches"
    split_file = "split_zhou_WorldSketches.json"


@register
class WorldPaintings(_World):
    dataset_dir = "world_paintings"
    split_file = "split_zhou_WorldPaintings.json"
