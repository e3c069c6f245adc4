"""OpenAI's installed ``clip`` package, loaded under a private module name.

Why private: CoOp, MaPLe and PromptSRC checkouts ship their own edited ``clip/`` folder, first on ``sys.path``
when their ``train.py`` runs (MaPLe's ``CLIP.__init__`` even needs an extra ``design_details`` argument). A
plain ``import clip`` would bind us to that copy, and putting ours into ``sys.modules["clip"]`` would change
what the host's own code gets. So we locate the files of the installed distribution (``clip-anytorch``, or
OpenAI's ``clip`` from GitHub) through ``importlib.metadata`` and import them as the package
:data:`PRIVATE_NAME`; the package uses relative imports only, so its submodules resolve inside it. The host's
``import clip`` is never touched.

``clip`` imports ``pkg_resources`` at import time, which prints a deprecation warning on every run; that one
warning is silenced here so user logs stay clean.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["DISTRIBUTIONS", "PRIVATE_NAME", "openai_clip", "openai_clip_dir"]

PRIVATE_NAME = "_quantprompt_openai_clip"
# Distributions that install OpenAI's ``clip`` package, in the order they are tried.
DISTRIBUTIONS = ("clip-anytorch", "clip", "openai-clip")
_SUBMODULES = ("clip", "model", "simple_tokenizer")
_LOCK = threading.Lock()


def openai_clip_dir() -> Path:
    """The folder of the installed OpenAI ``clip`` package (the one holding ``clip.py`` and ``model.py``).

    Found through the installed distribution's file list, never through ``sys.path``, so a ``clip/`` folder of
    the current working directory or of a host repository cannot take its place.
    """
    for dist_name in DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for entry in dist.files or ():
            parts = Path(str(entry)).parts
            if len(parts) == 2 and parts == ("clip", "model.py"):
                folder = Path(str(dist.locate_file(entry))).parent
                if (folder / "__init__.py").is_file() and (folder / "clip.py").is_file():
                    return folder
    raise ImportError(
        "OpenAI's CLIP package is not installed (looked for the distributions "
        f"{', '.join(DISTRIBUTIONS)}); install it with `pip install clip-anytorch`. A `clip/` folder inside a "
        "repository is never used by quantprompt."
    )


def _load_private(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        PRIVATE_NAME, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - only for a broken installation
        raise ImportError(f"cannot import OpenAI's clip package from {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PRIVATE_NAME] = module  # relative imports inside the package look their parent up here
    try:
        spec.loader.exec_module(module)
        for sub in _SUBMODULES:
            importlib.import_module(f"{PRIVATE_NAME}.{sub}")
    except BaseException:
        for name in [n for n in sys.modules if n == PRIVATE_NAME or n.startswith(PRIVATE_NAME + ".")]:
            del sys.modules[name]
        raise
    return module


def openai_clip() -> ModuleType:
    """Return OpenAI's ``clip`` package (with ``.clip``, ``.model``, ``.simple_tokenizer`` imported).

    The module is ``sys.modules[PRIVATE_NAME]``, loaded once per process from the installed distribution;
    ``sys.modules["clip"]`` is neither read nor written.
    """
    module = sys.modules.get(PRIVATE_NAME)
    if module is not None and all(hasattr(module, sub) for sub in _SUBMODULES):
        return module
    with _LOCK:
        module = sys.modules.get(PRIVATE_NAME)
        if module is not None and all(hasattr(module, sub) for sub in _SUBMODULES):
            return module
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            return _load_private(openai_clip_dir())
