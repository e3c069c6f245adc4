"""Write a safetensors file all or nothing: an interrupted or failed write leaves no partial file behind.

Used for every safetensors file we write (the world CLIP cache, P4Q exports, P4Q calibrations).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .atomic import write_atomic

__all__ = ["save_atomic"]


def save_atomic(tensors: Mapping[str, Any], path: Union[str, os.PathLike], metadata: Optional[dict[str, str]] = None) -> Path:
    """``safetensors.torch.save_file(tensors, path, metadata)`` through a hidden temporary file in the same
    folder, moved into place with ``os.replace`` (atomic on one file system); creates the folder."""
    from safetensors.torch import save_file

    return write_atomic(path, lambda tmp: save_file(dict(tensors), tmp, metadata=metadata))
