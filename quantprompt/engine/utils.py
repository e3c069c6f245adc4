"""Small helpers with the names and behaviour of ``dassl.utils`` (logging to log.txt, seeding, JSON, meters).

``setup_logger`` is what produces CoOp's ``log.txt``: from the call on, everything printed to stdout is also
written to ``<output>/log.txt`` (or ``log.txt-<YYYY-mm-dd-HH-MM-SS>`` when a log.txt already exists, so an earlier
run's log is never overwritten), exactly as Dassl names them; the result parsers rely on those names.
"""

from __future__ import annotations

import errno
import json
import os
import os.path as osp
import random
import sys
import time
import warnings
from collections import defaultdict
from difflib import SequenceMatcher
from typing import Any, Optional, TextIO

__all__ = [
    "AverageMeter",
    "Logger",
    "MetricMeter",
    "check_availability",
    "check_isfile",
    "collect_env_info",
    "count_num_param",
    "get_most_similar_str_to_a_from_b",
    "listdir_nohidden",
    "mkdir_if_missing",
    "read_image",
    "read_json",
    "restore_stdout",
    "set_random_seed",
    "setup_logger",
    "tolist_if_not",
    "write_json",
]


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) unless it exists; safe against a concurrent creation."""
    if not dirname or osp.exists(dirname):
        return
    try:
        os.makedirs(dirname)
    except OSError as err:
        if err.errno != errno.EEXIST:
            raise


def check_isfile(fpath: str) -> bool:
    """True if ``fpath`` is a file; warns otherwise (Dassl's behaviour)."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"', stacklevel=2)
    return isfile


def read_json(fpath: str) -> Any:
    """Read a JSON file; a missing file raises FileNotFoundError naming the path."""
    if not osp.isfile(fpath):
        raise FileNotFoundError(f'No JSON file at "{fpath}"')
    with open(fpath, encoding="utf-8") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented JSON (Dassl's layout: indent 4), creating the folder if needed."""
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_image(path: str) -> Any:
    """Open an image as RGB ``PIL.Image``; a missing file raises FileNotFoundError naming the path."""
    from PIL import Image

    if not osp.exists(path):
        raise FileNotFoundError(f'No image at "{path}"')
    return Image.open(path).convert("RGB")


def collect_env_info() -> str:
    """Torch's environment report plus Pillow's version (what CoOp prints as '** System info **').

    ``QUANTPROMPT_ENV_INFO=brief`` prints versions and platform only: torch's full report shells out to pip,
    conda and nvidia-smi, which costs seconds to a minute per process on a busy machine (``quantprompt demo``
    runs dozens of short processes and sets it).
    """
    import PIL

    if os.environ.get("QUANTPROMPT_ENV_INFO", "full").strip().lower() == "brief":
        import platform

        import torch

        return (f"PyTorch version: {torch.__version__}\nPython: {platform.python_version()}\n"
                f"OS: {platform.platform()}\n(brief report: QUANTPROMPT_ENV_INFO=brief)\n        Pillow ({PIL.__version__})")
    from torch.utils.collect_env import get_pretty_env_info

    try:
        env_str = get_pretty_env_info()
    except Exception as err:  # collect_env shells out (nvidia-smi, pip, ...); never fail a run for it
        import platform

        import torch

        env_str = f"PyTorch version: {torch.__version__}\nPython: {platform.python_version()}\n(collect_env: {err})"
    env_str += f"\n        Pillow ({PIL.__version__})"
    return env_str


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """The entries of ``path`` not starting with a dot (optionally sorted)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: list[str]) -> Optional[str]:
    """The string of ``b`` most similar to ``a`` (for 'did you mean' messages)."""
    best, chosen = 0.0, None
    for candidate in b:
        sim = SequenceMatcher(None, a, candidate).ratio()
        if sim >= best:
            best, chosen = sim, candidate
    return chosen


def check_availability(requested: str, available: list[str]) -> None:
    """Raise ValueError if ``requested`` is not in ``available``, suggesting the closest name."""
    if requested not in available:
        guess = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            f"The requested one is expected to belong to {available}, but got [{requested}] "
            f"(do you mean [{guess}]?)"
        )


def tolist_if_not(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


class Logger:
    """A stdout replacement writing every message both to the console and to a file (Dassl's ``Logger``).

    Unlike Dassl's, closing it never closes the real console.
    """

    def __init__(self, fpath: Optional[str] = None, console: Optional[TextIO] = None) -> None:
        self.console = console if console is not None else sys.stdout
        self.file: Optional[TextIO] = None
        self.fpath = fpath
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            self.file = open(fpath, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def write(self, msg: str) -> int:
        self.console.write(msg)
        if self.file is not None and not self.file.closed:
            self.file.write(msg)
        return len(msg)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            try:
                os.fsync(self.file.fileno())
            except OSError:  # pragma: no cover - e.g. a file system without fsync
                pass

    def isatty(self) -> bool:
        isatty = getattr(self.console, "isatty", None)
        return bool(isatty()) if callable(isatty) else False

    def fileno(self) -> int:
        return self.console.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.console, "encoding", "utf-8") or "utf-8"

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()

    def __getattr__(self, name: str) -> Any:
        # anything else a library asks of sys.stdout (buffer, errors, ...) comes from the console
        console = self.__dict__.get("console")
        if console is None:
            raise AttributeError(name)
        return getattr(console, name)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()


def setup_logger(output: Optional[str] = None) -> Optional[Logger]:
    """Tee stdout into ``output`` (a .txt/.log path, or a folder that gets ``log.txt``), as Dassl does.

    An existing log file is never overwritten: the new one gets the suffix ``-%Y-%m-%d-%H-%M-%S``.
    Returns the :class:`Logger` (Dassl returns None); :func:`restore_stdout` undoes the redirection.
    """
    if output is None:
        return None
    fpath = output if output.endswith((".txt", ".log")) else osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    console = sys.stdout.console if isinstance(sys.stdout, Logger) else sys.stdout
    if isinstance(sys.stdout, Logger):
        sys.stdout.close()
    logger = Logger(fpath, console=console)
    sys.stdout = logger
    return logger


def restore_stdout() -> None:
    """Close the log file opened by :func:`setup_logger` and give stdout back its console."""
    if isinstance(sys.stdout, Logger):
        logger = sys.stdout
        logger.flush()
        sys.stdout = logger.console
        logger.close()


class AverageMeter:
    """Current value and running average (optionally an exponential moving average) of a scalar."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val: float = 0
        self.avg: float = 0
        self.sum: float = 0
        self.count: int = 0

    def update(self, val: Any, n: int = 1) -> None:
        if hasattr(val, "item"):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + self.val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """A set of :class:`AverageMeter` keyed by name; ``str()`` gives Dassl's ``loss 0.1234 (0.2345)`` text."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: defaultdict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[dict[str, Any]]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError(f"MetricMeter.update() takes a dict of name -> value, got {type(input_dict).__name__}")
        for key, value in input_dict.items():
            if hasattr(value, "item"):
                value = value.item()
            self.meters[key].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())


def count_num_param(model: Any = None, params: Any = None) -> int:
    """Number of elements in ``model``'s parameters (or in ``params``)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        total = 0
        for p in params:
            if isinstance(p, dict):  # a param group: "params" is a tensor or a list of tensors
                group = p["params"]
                total += sum(q.numel() for q in group) if isinstance(group, (list, tuple)) else group.numel()
            else:
                total += p.numel()
        return total
    raise ValueError("count_num_param() needs model or params")
