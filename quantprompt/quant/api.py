"""One-call entry points: attach, step, finalize and remove quantizers / noise on any ``nn.Module``.

Optimizers may be built before or after ``quantize_`` / ``add_noise_``: torch's parametrize keeps the very same
``nn.Parameter`` object (moved to ``<owner>.parametrizations.<name>.original``), so an optimizer built earlier
still updates it.  ``remove_`` also keeps that object.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .config import NoiseConfig, QuantConfig
from .noise import GaussianNoise
from .quantizer import KMeansQuantizer
from .state import install_state_hooks
from .targets import match_targets, param_entries

__all__ = ["quantize_", "remove_", "step", "finalize_", "stats", "quantizers", "noise_modules", "add_noise_"]


def _parametrizations_of(owner: nn.Module, attr: str) -> list[nn.Module]:
    if parametrize.is_parametrized(owner, attr):
        return list(owner.parametrizations[attr])
    return []


def _find(module: nn.Module, kind: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in param_entries(module):
        for p in _parametrizations_of(e.owner, e.attr):
            if isinstance(p, kind):
                out[e.name] = p
    return out


def quantizers(module: nn.Module) -> dict[str, KMeansQuantizer]:
    """{user-facing parameter name: its KMeansQuantizer} for every quantized tensor of ``module``."""
    return _find(module, KMeansQuantizer)


def noise_modules(module: nn.Module) -> dict[str, GaussianNoise]:
    """{parameter name: its GaussianNoise parametrization}."""
    return _find(module, GaussianNoise)


def quantize_(module: nn.Module, cfg: QuantConfig) -> dict[str, KMeansQuantizer]:
    """Attach a K-Means quantizer to every parameter matched by ``cfg.targets`` (in place); returns them.

    QAT: the codebook is fitted by K-Means to the current (normalized) weights now and quantization is on.
    PTQ: identity until ``finalize_``.  off: attached, always identity.  Raises ValueError for an unmatched
    target (listing the parameter names), a non-float tensor or a tensor that is already quantized.
    ``state_dict`` then keeps the module's own names (``ctx`` holds the quantized values; the latent weights and
    the quantizer's state sit beside it, see :mod:`quantprompt.quant.state`).
    """
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"quantize_: cfg must be a QuantConfig, got {type(cfg).__name__}")
    entries = match_targets(module, cfg.targets, "quantize_")
    for e in entries:
        if not e.tensor.is_floating_point():
            raise ValueError(f"quantize_: parameter {e.name!r} has dtype {e.tensor.dtype}; only float tensors "
                             "can be quantized")
        if e.tensor.numel() == 0:
            raise ValueError(f"quantize_: parameter {e.name!r} is empty")
        if any(isinstance(p, KMeansQuantizer) for p in _parametrizations_of(e.owner, e.attr)):
            raise ValueError(f"quantize_: parameter {e.name!r} is already quantized; call quant.remove_ first")
    out: dict[str, KMeansQuantizer] = {}
    for e in entries:
        q = KMeansQuantizer(e.tensor.shape, cfg, device=e.tensor.device)
        q.train(e.owner.training)
        if cfg.mode == "qat":
            q.cluster_(e.tensor)
        parametrize.register_parametrization(e.owner, e.attr, q)
        install_state_hooks(e.owner)
        out[e.name] = q
    return out


def add_noise_(module: nn.Module, cfg: NoiseConfig) -> dict[str, GaussianNoise]:
    """Attach the Gaussian-noise parametrization (training mode only) to every parameter matched by targets."""
    if not isinstance(cfg, NoiseConfig):
        raise TypeError(f"add_noise_: cfg must be a NoiseConfig, got {type(cfg).__name__}")
    entries = match_targets(module, cfg.targets, "add_noise_")
    out: dict[str, GaussianNoise] = {}
    for e in entries:
        if not e.tensor.is_floating_point():
            raise ValueError(f"add_noise_: parameter {e.name!r} has dtype {e.tensor.dtype}; needs a float tensor")
        noise = GaussianNoise(cfg.std)
        noise.train(False)  # parametrize runs one check forward: draw no random numbers there
        parametrize.register_parametrization(e.owner, e.attr, noise)
        noise.train(e.owner.training)
        install_state_hooks(e.owner)
        out[e.name] = noise
    return out


def step(module: nn.Module) -> dict[str, dict[str, Any]]:
    """One constrained-adaptive-clustering check per quantized tensor; call once per optimizer step.

    Returns {name: info}; info has reclustered (bool), checked (whether the interval gate let the KL/error be
    computed), error_before (when checked), reclusters, kl, error, ref_error, steps_since, steps, active, bits,
    centers (rows x 2^b, normalized space).
    """
    out = {}
    for e in param_entries(module):
        for p in _parametrizations_of(e.owner, e.attr):
            if isinstance(p, KMeansQuantizer):
                out[e.name] = p.step(e.tensor)
    return out


def stats(module: nn.Module) -> dict[str, dict[str, Any]]:
    """The per-tensor figures of ``step`` without stepping (for logging)."""
    return {name: q.stats() for name, q in quantizers(module).items()}


def finalize_(module: nn.Module) -> dict[str, dict[str, Any]]:
    """PTQ: fit each PTQ quantizer's codebook to the final weights and switch quantization on.

    QAT and "off" quantizers, and PTQ ones already finalized, are left alone.  Returns {name: stats}.
    """
    out = {}
    for e in param_entries(module):
        for p in _parametrizations_of(e.owner, e.attr):
            if isinstance(p, KMeansQuantizer) and p.mode == "ptq" and not bool(p.active):
                p.cluster_(e.tensor)
                out[e.name] = p.stats()
    return out


@torch.no_grad()
def remove_(module: nn.Module, bake: bool = True) -> list[str]:
    """Remove every quantizer and noise parametrization; returns the names of the tensors freed.

    bake=True writes the quantized values (an active quantizer's output; noise is never baked) into the
    parameter; bake=False restores the latent full-precision weights.  The Parameter object is kept, so
    optimizers stay valid.  A tensor that also carries a parametrization that is not ours raises ValueError.
    """
    done = []
    for e in param_entries(module):
        plist = _parametrizations_of(e.owner, e.attr)
        ours = [p for p in plist if isinstance(p, (KMeansQuantizer, GaussianNoise))]
        if not ours:
            continue
        if len(ours) != len(plist):
            foreign = [type(p).__name__ for p in plist if p not in ours]
            raise ValueError(f"remove_: parameter {e.name!r} also has parametrizations {foreign} that are not "
                             "quant's; remove them first with torch.nn.utils.parametrize.remove_parametrizations")
        value = e.tensor.detach()
        for p in plist:
            if isinstance(p, KMeansQuantizer) and bake and bool(p.active):
                value = p.quantize(value)
        param = e.tensor
        parametrize.remove_parametrizations(e.owner, e.attr, leave_parametrized=False)
        param.copy_(value)
        done.append(e.name)
    return done
