"""Where our YAML configs are, so a foreign CoOp/MaPLe checkout can pass them to its ``--config-file``.

The configs stay in the repository's ``configs/`` folder (CoOp's layout: ``configs/trainers/<Trainer>/<name>.yaml``
and ``configs/datasets/<name>.yaml``, read by our ``scripts/``); nothing is copied. :func:`configs_dir` finds
that folder from the installed package, and :func:`resolve` turns a short name into a file path::

    quantprompt configs                         # the folder
    quantprompt configs QCoOp                   # the names available for QCoOp
    quantprompt configs QCoOp/vit_b16_ctxv1     # .../configs/trainers/QCoOp/vit_b16_ctxv1.yaml

No torch import: this runs inside shell command substitutions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["ENV_CONFIGS", "available", "configs_dir", "resolve"]

ENV_CONFIGS = "QUANTPROMPT_CONFIGS"


def _looks_like_configs(folder: Path) -> bool:
    return (folder / "trainers").is_dir() and (folder / "datasets").is_dir()


def configs_dir() -> Path:
    """The configs folder: ``$QUANTPROMPT_CONFIGS`` if set, else the ``configs/`` folder of the source tree the
    package is installed from (``pip install -e``, or ``PYTHONPATH`` on a clone)."""
    override = os.environ.get(ENV_CONFIGS, "").strip()
    if override:
        folder = Path(override).expanduser()
        if not _looks_like_configs(folder):
            raise FileNotFoundError(
                f"{ENV_CONFIGS}={override} is not a quantprompt configs folder (it needs trainers/ and datasets/); "
                f"unset it or point it at the configs/ folder of a quantprompt clone"
            )
        return folder.resolve()
    package = Path(__file__).resolve().parent
    for folder in (package / "configs", package.parent / "configs"):
        if _looks_like_configs(folder):
            return folder
    raise FileNotFoundError(
        f"no configs/ folder beside the quantprompt package at {package}: the configs ship with the source "
        f"repository. Install quantprompt from a clone (`pip install -e /path/to/quantprompt`) or set "
        f"{ENV_CONFIGS}=/path/to/quantprompt/configs"
    )


def available(trainer: str, root: Optional[Path] = None) -> list[str]:
    """Config names (file stems) of ``configs/trainers/<trainer>/``; ``[]`` when there is no such trainer."""
    folder = (root or configs_dir()) / "trainers" / trainer
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve(name: str) -> Path:
    """Path of a config given as ``<Trainer>/<name>``, ``trainers/<Trainer>/<name>``, ``datasets/<name>`` (the
    ``.yaml`` suffix optional). A name that matches nothing raises FileNotFoundError listing what exists."""
    root = configs_dir()
    rel = name.strip().strip("/")
    if rel.endswith(".yaml"):
        rel = rel[: -len(".yaml")]
    parts = rel.split("/")
    if not rel or ".." in parts:
        raise ValueError(f"config name {name!r} must look like QCoOp/vit_b16_ctxv1 or datasets/caltech101")
    if parts[0] not in ("trainers", "datasets"):
        parts = ["trainers", *parts]
    path = root.joinpath(*parts).with_suffix(".yaml") if len(parts) > 1 else root / parts[0]
    if path.is_file():
        return path
    if parts[0] == "datasets":
        names = sorted(p.stem for p in (root / "datasets").glob("*.yaml"))
        raise FileNotFoundError(f"no dataset config {name!r} in {root / 'datasets'}; available: {', '.join(names)}")
    trainer = parts[1] if len(parts) > 1 else ""
    names = available(trainer, root)
    if not names:
        trainers = sorted(p.name for p in (root / "trainers").iterdir() if p.is_dir())
        raise FileNotFoundError(f"no trainer {trainer!r} in {root / 'trainers'}; trainers: {', '.join(trainers)}")
    raise FileNotFoundError(
        f"no config {name!r}: {root / 'trainers' / trainer} has {', '.join(names)}"
    )
