"""Errors raised while loading CLIP weights.

One exception family so callers (trainers, CLI) can catch every loading problem with one ``except`` and show
its message, which always names the spec/file and what to do about it.
"""

from __future__ import annotations

__all__ = ["CLIPLoadError", "CLIPFileNotFoundError"]


class CLIPLoadError(ValueError):
    """A CLIP spec, file or checkpoint cannot be turned into an OpenAI ``clip.model.CLIP``."""


class CLIPFileNotFoundError(CLIPLoadError, FileNotFoundError):
    """The weights are not on disk (and could not be downloaded); the message says which file to put where."""
