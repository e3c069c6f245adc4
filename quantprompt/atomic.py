"""Write a file all or nothing: an interrupted or failed write leaves the old file (or none), never a part.

Every file we write that a later step reads back (checkpoints and their pointer, ``.qpt`` prompts,
safetensors files, study reports) goes through :func:`write_atomic`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

__all__ = ["write_atomic"]


def write_atomic(path: Union[str, os.PathLike], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a hidden temporary file in ``path``'s folder, then move it onto ``path`` with
    ``os.replace`` (atomic on one file system); the temporary file is removed whatever happens, Ctrl-C
    included. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
