"""Storage of a run's learned parameters, for the tables' Size column.

What is counted is the *payload*: for a quantized run, the packed indices plus fp16 codebooks in its ``.qpt``
(header excluded, as the paper's 0.26 KB for QCoOp); for any other run, the learned tensors of its checkpoint
stored in fp16 (2 bytes per value, as the paper's 4.1 KB for CoOp's 4x512 context). Zero-shot CLIP learns
nothing: 0 bytes. KB are 1000 bytes, as in the paper.

Files looked for below a run folder (any model sub-folder, e.g. ``prompt_learner/`` or MaPLe's
``MultiModalPromptLearner/``): ``model-best.qpt`` else the highest ``model.qpt-<epoch>``; otherwise
``model-best.pth.tar`` else the highest ``model.pth.tar-<epoch>``; without model files, the
``Storage of learned parameters (...): N bytes payload`` line our trainers print at the end of training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

__all__ = [
    "SizeInfo",
    "run_size",
    "qpt_size",
    "checkpoint_size",
    "format_kb",
    "find_model_files",
    "state_dict_fp16_bytes",
    "storage_from_log",
]

_QPT_RE = re.compile(r"^model\.qpt-(\d+)$")
_CKPT_RE = re.compile(r"^model\.pth\.tar-(\d+)$")
# Buffers that CoOp's original code saved although they are fixed token embeddings (it deletes them on load).
_FIXED_KEYS = ("token_prefix", "token_suffix")
_ORIGINAL_RE = re.compile(r"\.original\d*$")


@dataclass
class SizeInfo:
    """Payload bytes of one run and the file they were read from."""

    payload_bytes: int
    source: str  # "qpt" | "checkpoint" | "log" | "zero-shot"
    path: Optional[str] = None
    header_bytes: Optional[int] = None
    file_bytes: Optional[int] = None

    @property
    def kb(self) -> float:
        return self.payload_bytes / 1000.0


def format_kb(n_bytes: Optional[float]) -> str:
    """Bytes as the paper writes them: 0KB, 0.26KB, 4.1KB, 70.8KB, 1774KB ("-" when unknown)."""
    if n_bytes is None:
        return "-"
    kb = n_bytes / 1000.0
    if n_bytes == 0:
        return "0KB"
    if kb < 1:
        return f"{kb:.2f}KB"
    if kb < 100:
        return f"{kb:.1f}KB"
    return f"{kb:.0f}KB"


def _best_file(folder: Path, best_name: str, pattern: re.Pattern) -> Optional[Path]:
    best = folder / best_name
    if best.is_file():
        return best
    numbered = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and p.is_file():
            numbered.append((int(m.group(1)), p))
    return max(numbered)[1] if numbered else None


def find_model_files(run_dir: Union[str, Path]) -> dict[str, list[Path]]:
    """``{"qpt": [...], "checkpoint": [...]}``: one file per model sub-folder (best, else last epoch)."""
    run_dir = Path(run_dir)
    out: dict[str, list[Path]] = {"qpt": [], "checkpoint": []}
    if not run_dir.is_dir():
        return out
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        q = _best_file(sub, "model-best.qpt", _QPT_RE)
        if q is not None:
            out["qpt"].append(q)
        c = _best_file(sub, "model-best.pth.tar", _CKPT_RE)
        if c is not None:
            out["checkpoint"].append(c)
    return out


def qpt_size(path: Union[str, Path]) -> SizeInfo:
    """Payload / header / file bytes of a ``.qpt`` (``quant.size_report``); raises quant.FormatError."""
    from quantprompt import quant

    blob = Path(path).read_bytes()
    info = quant.size_report(blob)
    return SizeInfo(
        payload_bytes=int(info["payload_bytes"]),
        source="qpt",
        path=str(path),
        header_bytes=info.get("header_bytes"),
        file_bytes=len(blob),
    )


def state_dict_fp16_bytes(state_dict: dict[str, Any]) -> int:
    """2 bytes per value of every floating tensor that is learned.

    Left out: CoOp's fixed ``token_prefix``/``token_suffix`` buffers and quantizer state: in the current layout
    ``<name>.qprompt_latent`` and ``<name>.qprompt_quantizer.*`` beside the tensor ``<name>`` itself, in the older
    one the tensors under ``parametrizations.<name>.`` other than ``.original``.
    """
    import torch

    total = 0
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if key.split(".")[-1] in _FIXED_KEYS:
            continue
        if ".parametrizations." in f".{key}" and not _ORIGINAL_RE.search(key):
            continue
        if key.endswith(".qprompt_latent") or ".qprompt_quantizer." in key:
            continue
        total += value.numel() * 2
    return total


def checkpoint_size(path: Union[str, Path]) -> SizeInfo:
    """fp16 bytes of the learned tensors of a CoOp/Dassl checkpoint (``torch.load(weights_only=True)``)."""
    import torch

    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint dict with a 'state_dict' (got {type(ckpt).__name__})")
    return SizeInfo(
        payload_bytes=state_dict_fp16_bytes(state),
        source="checkpoint",
        path=str(path),
        file_bytes=Path(path).stat().st_size,
    )


def run_size(run_dir: Union[str, Path], trainer: str = "") -> tuple[Optional[SizeInfo], Optional[str]]:
    """(size, problem): the payload of a run, preferring ``.qpt`` files; ``problem`` says why size is None."""
    from .tree import is_zeroshot

    if trainer and is_zeroshot(trainer):
        return SizeInfo(0, "zero-shot"), None
    files = find_model_files(run_dir)
    try:
        if files["qpt"]:
            infos = [qpt_size(p) for p in files["qpt"]]
            return SizeInfo(
                sum(i.payload_bytes for i in infos),
                "qpt",
                str(infos[0].path),
                header_bytes=sum(i.header_bytes or 0 for i in infos),
                file_bytes=sum(i.file_bytes or 0 for i in infos),
            ), None
        if files["checkpoint"]:
            infos = [checkpoint_size(p) for p in files["checkpoint"]]
            return SizeInfo(
                sum(i.payload_bytes for i in infos),
                "checkpoint",
                str(infos[0].path),
                file_bytes=sum(i.file_bytes or 0 for i in infos),
            ), None
    except Exception as err:  # noqa: BLE001 - a broken file is a warning in a table, not a crash
        return None, f"{run_dir}: cannot read model file ({type(err).__name__}: {err})"
    logged = storage_from_log(run_dir)
    if logged is not None:
        return logged, None
    return None, f"{run_dir}: no .qpt or checkpoint found for the Size column"


_STORAGE_RE = re.compile(r"^Storage of learned parameters \(([^)]*)\):\s*(\d+) bytes payload")


def storage_from_log(run_dir: Union[str, Path]) -> Optional[SizeInfo]:
    """Our trainers print ``Storage of learned parameters (packed .qpt): 260 bytes payload + ...`` at the end
    of training: the size of a run whose model files were not kept (a log-only copy of an output tree)."""
    from .tree import find_logs

    for log in reversed(find_logs(run_dir)):
        try:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            m = _STORAGE_RE.match(line.strip())
            if m:
                return SizeInfo(int(m.group(2)), "log", str(log))
    return None
