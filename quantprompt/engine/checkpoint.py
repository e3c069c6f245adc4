"""Checkpoints with Dassl's file names and keys, written and read without unpickling objects.

Layout (as Dassl/CoOp)::

    <output>/<model-name>/model.pth.tar-<epoch>    {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    <output>/<model-name>/model-best.pth.tar       (TEST.FINAL_MODEL best_val)
    <output>/<model-name>/checkpoint               text: the file name of the latest save (read by resume)

Every load is ``torch.load(..., weights_only=True)``: a checkpoint is data, never code. ``save_checkpoint``
therefore refuses, at save time, any value that such a load could not read back (it names the key), instead of
writing a file that fails later.
"""

from __future__ import annotations

import os
import os.path as osp
import shutil
import warnings
from collections import Counter, OrderedDict
from typing import Any, Optional

from quantprompt.atomic import write_atomic
from quantprompt.engine.utils import mkdir_if_missing

__all__ = [
    "CheckpointError",
    "SafeCheckpointMixin",
    "get_rng_state",
    "load_checkpoint",
    "load_pretrained_weights",
    "load_scheduler_state",
    "resume_from_checkpoint",
    "resume_models",
    "save_models",
    "set_rng_state",
    "save_checkpoint",
    "scheduler_state_dict",
]


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read safely (corrupt, truncated, or holding pickled objects)."""


_PLAIN = (int, float, bool, str, bytes, type(None))


def _plain_copy(value: Any, where: str) -> Any:
    """Return ``value`` with NumPy scalars turned into Python numbers; raise TypeError for anything a
    ``weights_only`` load could not restore."""
    import torch

    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()  # NumPy scalars (np.float64 even subclasses float) would be pickled as objects
    if isinstance(value, (torch.Tensor, torch.dtype, torch.device, torch.Size)) or isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        # OrderedDict and Counter (MultiStepLR's milestones) load with weights_only; other dicts become dict
        out = type(value)() if isinstance(value, (OrderedDict, Counter)) else {}
        for key, item in value.items():
            out[key] = _plain_copy(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple, set)):
        items = [_plain_copy(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return type(value)(items) if type(value) in (list, tuple, set) else list(items)
    raise TypeError(
        f"cannot save {where} of type {type(value).__module__}.{type(value).__qualname__} in a checkpoint: "
        "checkpoints hold only tensors and plain values (they are loaded with torch.load(weights_only=True)); "
        "store its state_dict() or a plain value instead"
    )


def _atomic_save(obj: Any, fpath: str) -> None:
    import torch

    write_atomic(fpath, lambda tmp: torch.save(obj, tmp))


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Save ``state`` to ``save_dir/model_name`` (default ``model.pth.tar-<state["epoch"]>``) and record the name
    in ``save_dir/checkpoint``; ``is_best`` also copies it to ``model-best.pth.tar``. Returns the path written.
    """
    mkdir_if_missing(save_dir)
    state = dict(state)
    if remove_module_from_keys and "state_dict" in state:  # weights saved from nn.DataParallel
        state["state_dict"] = OrderedDict(
            (k[len("module."):] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )
    state = _plain_copy(state, "checkpoint")
    if not model_name:
        model_name = f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, model_name)
    _atomic_save(state, fpath)
    print(f"Checkpoint saved to {fpath}")

    # every file resume reads is written whole: a run killed at any moment leaves the old one or the new one
    write_atomic(osp.join(save_dir, "checkpoint"), lambda tmp: _write_text(tmp, f"{osp.basename(fpath)}\n"))

    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), "model-best.pth.tar")
        write_atomic(best_fpath, lambda tmp: shutil.copy(fpath, tmp))
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


def load_checkpoint(fpath: Optional[str], map_location: Any = None) -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    ``map_location`` defaults to Dassl's choice (keep devices when CUDA is available, else CPU).
    Raises ValueError for ``None``, FileNotFoundError for a missing file and :class:`CheckpointError` for a
    file that is corrupt or holds pickled objects; each message names the path.
    """
    from pickle import UnpicklingError  # only the error type that weights_only=True loads raise

    import torch

    if fpath is None:
        raise ValueError("load_checkpoint() got fpath=None: give the path of a checkpoint file")
    fpath = os.fspath(fpath)
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    if osp.isdir(fpath):
        raise IsADirectoryError(
            f'"{fpath}" is a folder; give a checkpoint file such as {osp.join(fpath, "model-best.pth.tar")}'
        )
    if map_location is None:
        map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except UnpicklingError as err:
        if "lr_scheduler" in str(err) or "torch.optim" in str(err):
            raise CheckpointError(
                f'Unable to load checkpoint from "{fpath}" safely: it holds a pickled optimizer/scheduler object '
                "(Dassl.pytorch's warmup schedulers store their wrapped scheduler as an object), which "
                "torch.load(weights_only=True) refuses. Checkpoints written by the built-in engine (or saved with "
                "quantprompt.engine.checkpoint.scheduler_state_dict) hold plain values only; re-save this one "
                "from a trusted environment as {'state_dict': ..., 'epoch': ...}."
            ) from err
        raise CheckpointError(
            f'Unable to load checkpoint from "{fpath}" safely: it holds pickled Python objects, which '
            f"torch.load(weights_only=True) refuses ({str(err).splitlines()[0]}). Re-save it with plain values "
            "(e.g. {'state_dict': model.state_dict(), 'epoch': ...}) from a trusted environment."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f'Unable to load checkpoint from "{fpath}": the file is corrupt or not a torch checkpoint '
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Delete it and re-run "
            "(training resumes from the previous checkpoint) or point to another file."
        ) from err


def scheduler_state_dict(scheduler: Any) -> Optional[dict[str, Any]]:
    """``scheduler.state_dict()`` made loadable with ``weights_only=True``, for any backend.

    Dassl's warmup schedulers return their wrapped scheduler (``successor``) as an object; this replaces it by
    its own state dict (what the engine's warmup schedulers do natively). None stays None.
    """
    if scheduler is None:
        return None
    state = dict(scheduler.state_dict())
    successor = state.get("successor")
    if successor is not None and hasattr(successor, "state_dict"):
        state["successor"] = scheduler_state_dict(successor)
    return state


def load_scheduler_state(scheduler: Any, state: Optional[dict[str, Any]]) -> None:
    """Load a state written by :func:`scheduler_state_dict` into ``scheduler`` (engine or Dassl warmup, or plain)."""
    if scheduler is None or state is None:
        return
    successor_state = state.get("successor")
    successor = getattr(scheduler, "successor", None)
    if isinstance(successor_state, dict) and successor is not None:
        load_scheduler_state(successor, successor_state)
        state = {k: v for k, v in state.items() if k != "successor"}
        scheduler.__dict__.update(state)
        return
    scheduler.load_state_dict(state)


def latest_epoch_checkpoint(fdir: str) -> Optional[str]:
    """The ``model.pth.tar-<epoch>`` of highest epoch in ``fdir``, or None. Saves are renamed into place, so
    every such file is complete; the hidden ``.*.part-<pid>`` files of a run killed mid-save are not checkpoints."""
    if not osp.isdir(fdir):
        return None
    epochs = []
    for name in os.listdir(fdir):
        stem, _, epoch = name.rpartition("-")
        if stem == "model.pth.tar" and epoch.isdigit():
            epochs.append((int(epoch), name))
    return osp.join(fdir, max(epochs)[1]) if epochs else None


def resume_from_checkpoint(
    fdir: str, model: Any, optimizer: Any = None, scheduler: Any = None, return_extras: bool = False
) -> Any:
    """Load the checkpoint named in ``fdir/checkpoint`` into ``model`` (and ``optimizer``/``scheduler``).

    Returns the epoch stored in it, i.e. the number of finished epochs and so the epoch to start from; with
    ``return_extras`` a pair ``(epoch, {"best_result", "rng_state"})`` holding the engine's extra keys (None
    when absent, e.g. in a checkpoint written by Dassl).
    """
    pointer = osp.join(fdir, "checkpoint")
    if osp.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if not lines or not lines[0].strip():
            raise CheckpointError(f'"{pointer}" is empty; it should hold the name of a checkpoint file in {fdir}')
        fpath = osp.join(fdir, lines[0].strip())
    else:
        latest = latest_epoch_checkpoint(fdir)
        if latest is None:
            raise FileNotFoundError(
                f'No "checkpoint" file in "{fdir}": it names the checkpoint to resume from and is written with '
                "every save; resume from a folder written by a previous run"
            )
        # killed between the first save and its pointer: the save itself is complete (written by rename)
        print(f'No "checkpoint" file in "{fdir}"; resuming from the latest epoch saved there')
        fpath = latest
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        load_scheduler_state(scheduler, checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = int(checkpoint["epoch"])
    print(f"Previous epoch: {start_epoch}")
    if return_extras:
        return start_epoch, {key: checkpoint.get(key) for key in ("best_result", "rng_state")}
    return start_epoch


def load_pretrained_weights(model: Any, weight_path: str) -> None:
    """Copy into ``model`` the tensors of ``weight_path`` whose name and shape match; report the others.

    Accepts a checkpoint dict with "state_dict" or a bare state dict; strips ``module.`` prefixes.
    """
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'"{weight_path}" holds no state dict (found {type(state_dict).__name__})')
    model_dict = model.state_dict()
    matched: OrderedDict[str, Any] = OrderedDict()
    discarded: list[str] = []
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key in model_dict and hasattr(value, "size") and model_dict[key].size() == value.size():
            matched[key] = value
        else:
            discarded.append(key)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)", stacklevel=2)
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) generator states as tensors and plain values (weights_only-safe)."""
    import random

    import numpy as np
    import torch

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing parts are left alone)."""
    import random

    import numpy as np
    import torch

    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            (s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"])
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_models(trainer: Any, epoch: int, directory: str, is_best: bool = False, val_result: Optional[float] = None,
                model_name: str = "") -> None:
    """Dassl's ``save_model`` for any trainer holding ``_models/_optims/_scheds`` (engine or real Dassl), written
    so that ``torch.load(weights_only=True)`` reads it back: the scheduler state goes through
    :func:`scheduler_state_dict`, and the engine's extras ``best_result`` and ``rng_state`` (exact resume) are
    added beside Dassl's keys ``state_dict/epoch/optimizer/scheduler/val_result``.
    """
    rng_state = get_rng_state()
    for name in trainer.get_model_names():
        optim = trainer._optims[name]
        save_checkpoint(
            {
                "state_dict": trainer._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": scheduler_state_dict(trainer._scheds[name]),
                "val_result": val_result,
                "best_result": float(getattr(trainer, "best_result", float("-inf"))),
                "rng_state": rng_state,
            },
            osp.join(directory, name),
            is_best=is_best,
            model_name=model_name,
        )


def _has_checkpoint(fdir: str) -> bool:
    return osp.isfile(osp.join(fdir, "checkpoint")) or latest_epoch_checkpoint(fdir) is not None


def resume_models(trainer: Any, directory: str) -> int:
    """Dassl's ``resume_model_if_exist`` with weights_only loads; also restores ``best_result`` and the RNG
    state when the checkpoint has them. Returns the epoch to start from (0 when nothing to resume)."""
    names = trainer.get_model_names()
    if not all(_has_checkpoint(osp.join(directory, name)) for name in names):
        # also a run killed during its first save: the folder exists, no save in it was completed
        print("No checkpoint found, train from scratch")
        return 0
    print(f"Found checkpoint at {directory} (will resume training)")
    start_epoch = 0
    extras: dict[str, Any] = {}
    for name in names:
        start_epoch, extras = resume_from_checkpoint(
            osp.join(directory, name), trainer._models[name], trainer._optims[name], trainer._scheds[name],
            return_extras=True,
        )
    if extras.get("best_result") is not None:
        trainer.best_result = extras["best_result"]
    if extras.get("rng_state") is not None:
        set_rng_state(extras["rng_state"])
    return start_epoch


class SafeCheckpointMixin:
    """Put first in a trainer's bases (``class MyTrainer(SafeCheckpointMixin, TrainerX)``) to get weights_only-safe
    checkpoints and exact resume under *either* backend.

    Why: real Dassl pickles its warmup scheduler's wrapped scheduler object into every checkpoint, which
    ``torch.load(weights_only=True)`` (the default since torch 2.6, and our rule) refuses, so under Dassl
    ``--eval-only`` and resume of any config with ``OPTIM.WARMUP_EPOCH > 0`` fail. The engine's ``TrainerBase``
    already behaves like this.
    """

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Optional[float] = None,
                   model_name: str = "") -> None:
        save_models(self, epoch, directory, is_best=is_best, val_result=val_result, model_name=model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        return resume_models(self, directory)
