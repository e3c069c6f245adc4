"""Quiet access to OpenAI's ``clip`` package.

``clip`` imports ``pkg_resources`` at import time, which prints a deprecation warning on every run; we import
it once here with that one warning silenced so user logs stay clean.
"""

from __future__ import annotations

import warnings
from types import ModuleType


def openai_clip() -> ModuleType:
    """Return the imported ``clip`` package (OpenAI CLIP, distribution ``clip-anytorch``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        import clip
        import clip.clip
        import clip.model
    return clip
