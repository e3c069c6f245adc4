"""CoOp (Zhou et al., IJCV 2022) and NoiseCoOp, the Gaussian-noise regularised CoOp of the paper's Fig. 2."""

from __future__ import annotations

from .base import PromptTrainer


class CoOp(PromptTrainer):
    """Context Optimization: learnable context vectors in front of (or around) the class name.

    Config: ``TRAINER.COOP.{N_CTX, CTX_INIT, CSC, CLASS_TOKEN_POSITION, PREC}``; checkpoints in
    ``prompt_learner/`` as CoOp's.
    """

    METHOD = "coop"
    NODE = "COOP"
    MODEL_NAME = "prompt_learner"


class NoiseCoOp(CoOp):
    """CoOp whose context gets N(0, NOISE_STD^2) noise in training mode only (``TRAINER.QPROMPT.NOISE_STD``)."""

    METHOD = "noisecoop"
    NOISE = True
