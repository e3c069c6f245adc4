"""Top-k accuracy as ``dassl.metrics.compute_accuracy`` (percentages, one 1-element tensor per k)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["compute_accuracy"]


def compute_accuracy(output: Any, target: Any, topk: Sequence[int] = (1,)) -> list[Any]:
    """Accuracy in percent of ``output`` (batch x classes logits) against ``target`` for each k in ``topk``.

    Returns a list of 1-element tensors, as Dassl does, so ``compute_accuracy(out, y)[0].item()`` works.
    A tuple/list ``output`` uses its first element (models returning (logits, features)).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    if output.dim() != 2:
        raise ValueError(f"compute_accuracy expects logits of shape (batch, classes), got {tuple(output.shape)}")
    if maxk > output.size(1):
        raise ValueError(f"topk={tuple(topk)} asks for more classes than the {output.size(1)} in the output")
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand(maxk, -1))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
