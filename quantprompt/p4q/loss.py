"""P4Q's objective: cross-entropy on the student's cosine logits + lambda * T^2 * KL(teacher || student)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["distillation_loss", "p4q_loss"]


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t / T) || softmax(s / T)), averaged over the batch (Hinton et al.'s scaling keeps the
    gradient size independent of T). Zero exactly when the two logit sets are equal."""
    t = float(temperature)
    log_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (t * t)


def p4q_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, lam: float, temperature: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """(total, cross-entropy, distillation term before lambda)."""
    ce = F.cross_entropy(student_logits.float(), labels)
    kd = distillation_loss(student_logits, teacher_logits.detach(), temperature)
    return ce + float(lam) * kd, ce, kd
