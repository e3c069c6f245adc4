"""The one module through which ``trainers/``, ``datasets/`` and ``train.py`` get Dassl's names.

Real Dassl.pytorch is used when it is importable; otherwise our built-in engine provides the same names with
the same behaviour. ``QUANTPROMPT_BACKEND`` forces a choice: ``auto`` (default), ``dassl`` or ``engine``.
Checkpoints are always loaded with our ``load_checkpoint`` (``torch.load(..., weights_only=True)``), whatever
the backend, because Dassl's own loader unpickles arbitrary objects; ``SafeCheckpointMixin`` makes a trainer
*write* weights_only-safe checkpoints under real Dassl too (Dassl pickles its warmup scheduler's successor).
"""

from __future__ import annotations

import importlib.util
import os

_VALID = ("auto", "dassl", "engine")
_requested = os.environ.get("QUANTPROMPT_BACKEND", "auto").strip().lower() or "auto"
if _requested not in _VALID:
    raise ValueError(
        f"QUANTPROMPT_BACKEND={_requested!r} is not one of {', '.join(_VALID)}; unset it or pick one of those."
    )
if _requested == "dassl" and importlib.util.find_spec("dassl") is None:
    raise ImportError(
        "QUANTPROMPT_BACKEND=dassl but Dassl.pytorch is not importable; install it from its public repository "
        "(see docs/engine.md, 'Optional: Dassl.pytorch') or set QUANTPROMPT_BACKEND=engine."
    )

BACKEND = "dassl" if _requested == "dassl" or (_requested == "auto" and importlib.util.find_spec("dassl")) else "engine"

if BACKEND == "dassl":  # pragma: no cover - exercised only where Dassl is installed
    from dassl.config import get_cfg_default
    from dassl.data import DataManager
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from dassl.data.transforms import build_transform
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_lr_scheduler, build_optimizer
    from dassl.utils import (
        collect_env_info,
        listdir_nohidden,
        mkdir_if_missing,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )
else:
    from quantprompt.engine.config import get_cfg_default
    from quantprompt.engine.data import (
        DATASET_REGISTRY,
        DataManager,
        DatasetBase,
        Datum,
        build_dataset,
        build_transform,
    )
    from quantprompt.engine.metrics import compute_accuracy
    from quantprompt.engine.optim import build_lr_scheduler, build_optimizer
    from quantprompt.engine.trainer import TRAINER_REGISTRY, TrainerX, build_trainer
    from quantprompt.engine.utils import (
        collect_env_info,
        listdir_nohidden,
        mkdir_if_missing,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )

from quantprompt.engine.checkpoint import (  # noqa: E402  (ours under both backends: weights_only-safe files)
    CheckpointError,
    SafeCheckpointMixin,
    load_checkpoint,
    load_pretrained_weights,
    load_scheduler_state,
    scheduler_state_dict,
)

__all__ = [
    "BACKEND",
    "CheckpointError",
    "SafeCheckpointMixin",
    "DATASET_REGISTRY",
    "DataManager",
    "DatasetBase",
    "Datum",
    "TRAINER_REGISTRY",
    "TrainerX",
    "build_dataset",
    "build_lr_scheduler",
    "build_optimizer",
    "build_trainer",
    "build_transform",
    "collect_env_info",
    "compute_accuracy",
    "get_cfg_default",
    "listdir_nohidden",
    "load_checkpoint",
    "load_pretrained_weights",
    "load_scheduler_state",
    "mkdir_if_missing",
    "read_json",
    "scheduler_state_dict",
    "set_random_seed",
    "setup_logger",
    "write_json",
]
