"""P4Q's low-bit adapter on the image features: a residual bottleneck d -> d/r -> d mixed with ratio alpha.

``out = alpha * fc2(relu(fc1(x))) + (1 - alpha) * x`` (CLIP-Adapter's residual form). No biases: every stored
tensor of the adapter is a weight matrix that ``quant.quantize_`` packs. ``fc2`` starts near zero, so at the
start of training the adapter only rescales the features and the cosine logits equal the PTQ model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Adapter"]


class Adapter(nn.Module):
    def __init__(self, dim: int, ratio: int = 4, alpha: float = 0.2) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, int) or not 1 <= ratio <= dim:
            raise ValueError(f"adapter ratio r={ratio!r} must be an integer from 1 to the feature width {dim}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"adapter alpha={alpha!r} must be a number in [0, 1]")
        self.ratio = ratio
        self.alpha = float(alpha)
        self.fc1 = nn.Linear(dim, dim // ratio, bias=False)
        self.fc2 = nn.Linear(dim // ratio, dim, bias=False)
        with torch.no_grad():
            self.fc2.weight.normal_(0.0, 1e-3)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, alpha={self.alpha}"

    def forward(self, x: Tensor) -> Tensor:
        return self.alpha * self.fc2(F.relu(self.fc1(x))) + (1.0 - self.alpha) * x
