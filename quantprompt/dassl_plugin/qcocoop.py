"""QCoCoOp: CoCoOp with its context and meta-net weights quantized (QPrompt, ECCV 2024)."""

from __future__ import annotations

from .cocoop import CoCoOp


class QCoCoOp(CoCoOp):
    """CoCoOp's keys plus ``TRAINER.QPROMPT.*``; writes ``prompt_learner/model.qpt-<epoch>``."""

    METHOD = "qcocoop"
    QUANTIZED = True
