"""Random scenes: the pretraining distribution and the downstream datasets' class-conditional ones."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .attributes import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, STYLES, Scene

__all__ = ["PRETRAIN_STYLES", "sample_scene"]

# How often pretraining sees each style: mostly photos, as CLIP's web data; paintings and sketches are the
# minority styles that a domain-shifted downstream set then leans on.
PRETRAIN_STYLES: dict[str, float] = {"photo": 0.85, "painting": 0.12, "sketch": 0.03}

_CHOICES = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS, "background": BACKGROUNDS}


def sample_scene(rng: np.random.Generator, fixed: Optional[Mapping[str, str]] = None,
                 choices: Optional[Mapping[str, tuple[str, ...]]] = None,
                 styles: Optional[Mapping[str, float]] = None) -> Scene:
    """A scene with ``fixed`` attributes; the others drawn uniformly from ``choices`` (default: all values)
    and the style from the ``styles`` weights (default: :data:`PRETRAIN_STYLES`)."""
    fixed = dict(fixed or {})
    values = {}
    for name, default in _CHOICES.items():
        options = (choices or {}).get(name, default)
        values[name] = fixed[name] if name in fixed else options[int(rng.integers(len(options)))]
    weights = styles or PRETRAIN_STYLES
    if "style" in fixed:
        values["style"] = fixed["style"]
    else:
        names = [s for s in STYLES if weights.get(s, 0) > 0]
        p = np.array([weights[s] for s in names], dtype=np.float64)
        values["style"] = names[int(rng.choice(len(names), p=p / p.sum()))]
    return Scene(**values)
