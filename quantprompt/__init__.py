"""QuantPrompt: quantized prompt tuning for CLIP.

Submodules (``clip``, ``quant``, ``prompting``, ``testing``, ``results``, ``engine``, ``p4q``, ``grid``,
``world``) are imported lazily so that ``import quantprompt`` never pulls in torch, clip or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"clip", "quant", "prompting", "testing", "results", "engine", "p4q", "grid", "world"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'quantprompt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
