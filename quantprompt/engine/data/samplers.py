"""Dassl's ``build_sampler`` for the samplers CoOp-style training uses.

``RandomSampler`` (training) and ``SequentialSampler`` (evaluation) are torch's own, so the order of
batches depends only on torch's global generator, as with Dassl. Dassl's domain/class samplers serve its
domain-adaptation trainers; asking for them here is an error that says so.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

__all__ = ["build_sampler", "SUPPORTED_SAMPLERS", "DASSL_ONLY_SAMPLERS"]

SUPPORTED_SAMPLERS = ("RandomSampler", "SequentialSampler")
DASSL_ONLY_SAMPLERS = ("RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")


def build_sampler(
    sampler_type: str,
    cfg: Optional[Any] = None,
    data_source: Optional[Sequence[Any]] = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    """Return the sampler named by ``DATALOADER.{TRAIN_X,TRAIN_U,TEST}.SAMPLER``."""
    if data_source is None:
        raise ValueError("build_sampler needs a data_source (list of Datum)")
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type in DASSL_ONLY_SAMPLERS:
        raise ValueError(
            f"Sampler {sampler_type!r} (DATALOADER.*.SAMPLER) belongs to Dassl's domain-adaptation trainers and "
            f"is not implemented by the built-in engine; use one of {list(SUPPORTED_SAMPLERS)} or install "
            "Dassl.pytorch"
        )
    raise ValueError(
        f"Unknown sampler type: {sampler_type!r} (DATALOADER.*.SAMPLER); expected one of "
        f"{list(SUPPORTED_SAMPLERS)}"
    )
