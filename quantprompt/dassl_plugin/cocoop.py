"""CoCoOp (Zhou et al., CVPR 2022): context conditioned on the image through a small meta-net."""

from __future__ import annotations

from .base import PromptTrainer


class CoCoOp(PromptTrainer):
    """Config: ``TRAINER.COCOOP.{N_CTX, CTX_INIT, PREC}`` and ours ``TEXT_BATCH_SIZE`` (prompts per text-encoder
    call); checkpoints in ``prompt_learner/`` as CoCoOp's."""

    METHOD = "cocoop"
    NODE = "COCOOP"
    MODEL_NAME = "prompt_learner"
    REPORT_ACC = False  # CoCoOp's trainer logs the loss only
