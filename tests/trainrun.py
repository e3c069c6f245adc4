"""Running train.py in the test process on the tiny CLIP: shared by the e2e, precision and CUDA tests.

Not a test module (no ``test_`` prefix): pytest puts ``tests/`` on ``sys.path``, so test modules
``import trainrun``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

#: every trainer with a tiny config, and the config node that holds its PREC (None: ZeroshotCLIP has none)
TRAINERS = {"ZeroshotCLIP": None, "CoOp": "COOP", "NoiseCoOp": "COOP", "QCoOp": "COOP", "CoCoOp": "COCOOP",
            "QCoCoOp": "COCOOP", "MaPLe": "MAPLE", "QMaPLe": "MAPLE", "P4Q": "COOP"}
#: the folder under the output directory that holds a trainer's checkpoints
MODEL_FOLDERS = {"MaPLe": "MultiModalPromptLearner", "QMaPLe": "MultiModalPromptLearner"}
#: trainers that write a packed .qpt next to each checkpoint
PACKED = ("QCoOp", "QCoCoOp", "QMaPLe", "P4Q")
#: the checkpoint key of each trainer's learned context, stored in CLIP's dtype under PREC fp16 (as in CoOp)
# the trained weights in each trainer's checkpoint: the context itself, or for the quantized ones the latent
# weights training updates (``<name>.qprompt_latent``, quant/state.py; ``ctx`` holds what the model used). Noise
# is training-only, so NoiseCoOp's ``ctx`` is its latent context.
CTX_KEYS = {"CoOp": "ctx", "NoiseCoOp": "ctx", "QCoOp": "ctx.qprompt_latent",
            "CoCoOp": "ctx", "QCoCoOp": "ctx.qprompt_latent", "MaPLe": "prompt_learner.ctx",
            "QMaPLe": "prompt_learner.ctx.qprompt_latent", "P4Q": "ctx.qprompt_latent"}


def argv(data: Path, trainer: str, out: Path, *opts: str, sub: str = "base", extra: tuple = (),
         shots: str = "2") -> list[str]:
    """train.py's arguments for ``trainer``'s tiny config on the synthetic Caltech101 at ``data``."""
    return ["--root", str(data), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{trainer}/tiny.yaml"),
            "--output-dir", str(out), *extra,
            "DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", sub, *opts]


def prec_opts(trainer: str, prec: str) -> tuple[str, ...]:
    """The config override that sets ``trainer``'s PREC (none for ZeroshotCLIP, which follows CLIP's fp16)."""
    node = TRAINERS[trainer]
    return () if node is None else (f"TRAINER.{node}.PREC", prec)


def run(args: list[str]) -> str:
    """train.py in this process; returns what it printed."""
    import train

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        train.cli(args)
    return buf.getvalue()


def cfg_for(args: list[str]) -> Any:
    """The config train.py would build from ``args`` (to build a trainer directly)."""
    import train

    parsed = train.build_parser().parse_args(args)
    train.import_plugins()
    return train.setup_cfg(parsed)


def accuracy(text: str) -> str:
    """The last ``* accuracy: X%`` of a log (what the result parsers read)."""
    found = re.findall(r"^\* accuracy: ([\d.]+)%$", text, re.M)
    assert found, text[-2000:]
    return found[-1]


def checkpoint(out: Path, trainer: str, epoch: int) -> dict:
    """The learned tensors of ``model.pth.tar-<epoch>`` (loaded on the CPU, weights only)."""
    import torch

    path = out / MODEL_FOLDERS.get(trainer, "prompt_learner") / f"model.pth.tar-{epoch}"
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def relative_difference(a: Any, b: Any) -> float:
    """||a - b|| / ||b|| in fp64 (0 when both are zero)."""
    a, b = a.double(), b.double()
    norm = float(b.norm())
    return float((a - b).norm()) / norm if norm else float((a - b).norm())
