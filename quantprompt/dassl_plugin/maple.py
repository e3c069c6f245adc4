"""MaPLe (Khattak et al., CVPR 2023): coupled deep prompts on the text and vision branches."""

from __future__ import annotations

from .base import PromptTrainer


class MaPLe(PromptTrainer):
    """Config: ``TRAINER.MAPLE.{N_CTX, CTX_INIT, PREC, PROMPT_DEPTH}``.

    Checkpoints go to ``MultiModalPromptLearner/`` (the name MaPLe registers) with MaPLe's ``prompt_learner.*``
    keys, but hold only the learned tensors (MaPLe's own checkpoints also carry the frozen CLIP; loading one
    of those keeps just its ``prompt_learner.*`` entries).
    """

    METHOD = "maple"
    NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"
    REPORT_ACC = False  # MaPLe's trainer logs the loss only
