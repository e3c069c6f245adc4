"""P4Q (Sun et al., 2024): prompt a post-training-quantized CLIP back to full-precision accuracy.

PTQ of both CLIP encoders (b-bit per-channel weights, 8-bit per-tensor activations, calibrated), CoOp prompts
in the quantized text encoder, a low-bit adapter on the image features, distillation from the full-precision
CLIP; export to a real int8 / int4 file and an int8 CPU backend. No Dassl, no yacs. See docs/p4q.md.
"""

from __future__ import annotations

from .calibration import CALIBRATORS, calibrate
from .fakequant import ActQuant, fake_quant_weight, qmax_of, weight_codes, weight_scale
from .loss import distillation_loss, p4q_loss
from .ptq import FP_ENCODERS, quantized_clip

__all__ = [
    "CALIBRATORS", "FP_ENCODERS", "ActQuant", "calibrate", "distillation_loss", "fake_quant_weight", "p4q_loss",
    "qmax_of", "quantized_clip", "weight_codes", "weight_scale",
]
