"""Gaussian-noise baseline (paper Fig. 2) as a parametrization: W + N(0, std^2), in training mode only."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GaussianNoise"]


class GaussianNoise(nn.Module):
    """Adds fresh N(0, std^2) noise at every access while ``self.training``; identity in eval mode.

    The noise is drawn from torch's global generator (seeded runs are repeatable); gradients pass unchanged.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def extra_repr(self) -> str:
        return f"std={self.std}"

    def forward(self, w: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return w + torch.randn_like(w) * self.std
        return w
