"""QMaPLe: MaPLe with all prompts and projection layers quantized (QPrompt, ECCV 2024, Table 1)."""

from __future__ import annotations

from .maple import MaPLe


class QMaPLe(MaPLe):
    """MaPLe's keys plus ``TRAINER.QPROMPT.*``; writes ``MultiModalPromptLearner/model.qpt-<epoch>``."""

    METHOD = "qmaple"
    QUANTIZED = True
