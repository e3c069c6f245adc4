"""Captions that name some of a scene's attributes, from a few templates, as alt-text names some of a photo's.

Shape is always named; colour, pattern, background and style each only sometimes, so the text
encoder learns each word on its own and can compose class names it never saw together (zero-shot transfer).
"""

from __future__ import annotations

import numpy as np

from .attributes import Scene

__all__ = ["caption", "object_phrase"]

_STYLE_NOUN = {"photo": "photo", "painting": "painting", "sketch": "sketch"}
_TEMPLATES = (
    "a {style} of a {obj}.",
    "a {obj}.",
    "a {obj} on a {bg} background.",
    "a {style} of a {obj} on a {bg} background.",
    "there is a {obj}.",
    "a {bg} background with a {obj}.",
    "{obj}",
)


def object_phrase(scene: Scene, rng: np.random.Generator) -> str:
    """E.g. "striped red square": shape always, the other adjectives with fixed probabilities."""
    words = []
    if scene.pattern != "plain" and rng.uniform() < 0.75 or scene.pattern == "plain" and rng.uniform() < 0.25:
        words.append(scene.pattern)
    if rng.uniform() < 0.85:
        words.append(scene.colour)
    words.append(scene.shape)
    return " ".join(words)


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption of ``scene``; the style is named for most non-photos (a painting is usually called one)."""
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    if "{style}" not in template and scene.style != "photo" and rng.uniform() < 0.8:
        template = "a {style} of a {obj}."
    return template.format(style=_STYLE_NOUN[scene.style], obj=object_phrase(scene, rng),
                           bg=scene.background)
