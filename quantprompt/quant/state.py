"""``state_dict`` keys of quantized modules under the names the host model gave its tensors.

torch's parametrize stores a parametrized tensor ``ctx`` as ``parametrizations.ctx.original`` (and a quantizer's
buffers as ``parametrizations.ctx.0.centers`` ...), so a checkpoint of a quantized model has no ``ctx``: every
tool that reads a checkpoint by the model's own names (CoOp's ``interpret_prompt.py`` reads
``state_dict["ctx"]``) breaks. The hooks installed here, on every module owning a tensor parametrized by
``quant`` (a :class:`KMeansQuantizer` and/or :class:`GaussianNoise`, nothing else), rewrite the keys:

* ``<owner>.ctx``: the tensor the model *uses* at evaluation: the quantized values (noise is training-only);
* ``<owner>.ctx.qprompt_latent``: the latent full-precision weights that training updates;
* ``<owner>.ctx.qprompt_quantizer.<buffer>``: the quantizer's state (codebook, CAC histogram, counters).

Loading accepts these keys, the older torch layout (``parametrizations.ctx.original`` ...), and a plain
``ctx`` alone (a host's unquantized checkpoint: it becomes the latent weights). After a load the quantized
prompt is made consistent: when the stored ``ctx`` is not what the loaded latent weights and codebook give
(code that averaged or edited ``state_dict``s, as PromptSRC's Gaussian prompt aggregation does), or when no
quantizer state came with the latent weights, the codebook is fitted again by K-Means to the loaded latent
weights (:meth:`KMeansQuantizer.cluster_`) and one line says so. The model then evaluates exactly what
``export`` packs.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from .noise import GaussianNoise
from .quantizer import KMeansQuantizer

__all__ = ["LATENT", "QUANTIZER", "install_state_hooks"]

LATENT = "qprompt_latent"  # <name>.qprompt_latent: the latent weights
QUANTIZER = "qprompt_quantizer"  # <name>.qprompt_quantizer.<buffer>: the quantizer's state
_MARK = "_qprompt_state_hooks"
_PENDING = "_qprompt_pending_load"


def _ours(owner: nn.Module) -> dict[str, tuple[Any, Optional[int]]]:
    """{attr: (ParametrizationList, index of its KMeansQuantizer or None)} for the tensors only quant parametrizes."""
    out: dict[str, tuple[Any, Optional[int]]] = {}
    if not parametrize.is_parametrized(owner):
        return out
    for attr, plist in owner.parametrizations.items():
        mods = list(plist)
        if not mods or not all(isinstance(p, (KMeansQuantizer, GaussianNoise)) for p in mods):
            continue  # a foreign parametrization: torch's keys stay as they are
        qi = [i for i, p in enumerate(mods) if isinstance(p, KMeansQuantizer)]
        out[attr] = (plist, qi[0] if qi else None)
    return out


@torch.no_grad()
def _eval_value(plist: Any) -> torch.Tensor:
    """The tensor the model uses in eval mode: the latent weights through every active quantizer."""
    value = plist.original.detach()
    for p in plist:
        if isinstance(p, KMeansQuantizer) and bool(p.active):
            value = p.quantize(value)
    return value.clone()


def _save_hook(owner: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    for attr, (plist, qi) in _ours(owner).items():
        inner = f"{prefix}parametrizations.{attr}."
        original = state_dict.pop(inner + "original", None)
        if original is None:
            continue
        moved = {k[len(inner):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(inner)]}
        name = prefix + attr
        value = _eval_value(plist)
        state_dict[name] = value
        if qi is not None:
            state_dict[f"{name}.{LATENT}"] = original
            for key, tensor in moved.items():
                index, _, buf = key.partition(".")
                if index == str(qi):
                    state_dict[f"{name}.{QUANTIZER}.{buf}"] = tensor


def _load_pre_hook(owner: nn.Module, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
                   missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    pending: dict[str, tuple[Optional[torch.Tensor], bool, str]] = {}
    for attr, (_plist, qi) in _ours(owner).items():
        inner = f"{prefix}parametrizations.{attr}."
        if inner + "original" in state_dict:
            continue  # the older layout: torch loads it as it is
        name = prefix + attr
        stored = None
        if f"{name}.{LATENT}" in state_dict:
            state_dict[inner + "original"] = state_dict.pop(f"{name}.{LATENT}")
            stored = state_dict.pop(name, None)
        elif name in state_dict:
            state_dict[inner + "original"] = state_dict.pop(name)  # a plain tensor: the latent weights
        else:
            continue  # missing: reported by torch under its own key
        had_state = False
        for key in [k for k in state_dict if k.startswith(f"{name}.{QUANTIZER}.")]:
            value = state_dict.pop(key)
            if qi is not None:
                state_dict[f"{inner}{qi}.{key[len(name) + len(QUANTIZER) + 2:]}"] = value
                had_state = True
        pending[attr] = (stored, had_state, name)
    setattr(owner, _PENDING, pending)


@torch.no_grad()
def _load_post_hook(owner: nn.Module, incompatible_keys: Any) -> None:
    pending = getattr(owner, _PENDING, None) or {}
    if hasattr(owner, _PENDING):
        delattr(owner, _PENDING)
    ours = _ours(owner)
    for attr, (stored, had_state, name) in pending.items():
        plist, qi = ours.get(attr, (None, None))
        if qi is None:
            continue
        q = plist[qi]
        if q.mode == "off" or not bool(q.active):
            continue  # identity quantizer, or PTQ before finalize_: nothing to make consistent
        latent = plist.original
        if had_state:
            if stored is None or torch.equal(q.quantize(latent).to(stored.dtype), stored.to(latent.device)):
                continue  # a genuine state (or the older layout, which has no stored value to compare)
            why = "averaged or edited state_dict"
        else:
            why = "no quantizer state with the latent weights"
        q.cluster_(latent)
        seen = (id(stored), why)
        if getattr(q, "_qprompt_last_refit", None) != seen:  # the same dict loaded twice (PromptSRC does): once
            print(f"QPrompt: {name}: codebook fitted again to the loaded latent weights ({why})")
        q._qprompt_last_refit = seen


def install_state_hooks(owner: nn.Module) -> None:
    """Give ``owner``'s quant-parametrized tensors host names in ``state_dict``/``load_state_dict`` (idempotent)."""
    if getattr(owner, _MARK, False):
        return
    owner.register_state_dict_post_hook(_save_hook)
    owner.register_load_state_dict_pre_hook(_load_pre_hook)
    owner.register_load_state_dict_post_hook(_load_post_hook)
    setattr(owner, _MARK, True)
