"""QCoOp: CoOp with its context K-Means-quantized during training (QPrompt, ECCV 2024)."""

from __future__ import annotations

from .coop import CoOp


class QCoOp(CoOp):
    """CoOp's keys plus ``TRAINER.QPROMPT.*``; writes ``prompt_learner/model.qpt-<epoch>`` beside checkpoints."""

    METHOD = "qcoop"
    QUANTIZED = True
