"""Resolving user-facing parameter names (PEFT-style exact names or regexes) to (owner module, attribute)."""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["ParamEntry", "param_entries", "match_targets"]


class ParamEntry(NamedTuple):
    name: str  # as the user sees it: "prompt_learner.ctx", even when parametrized
    owner: nn.Module
    attr: str
    tensor: Tensor  # the stored Parameter (the parametrization's ``original`` when parametrized)


def param_entries(module: nn.Module) -> list[ParamEntry]:
    """Every parameter of ``module`` under its user-facing name (``parametrizations.X.original`` -> ``X``)."""
    out: list[ParamEntry] = []
    seen: set[int] = set()
    for prefix, m in module.named_modules():
        if isinstance(m, parametrize.ParametrizationList):
            continue
        pre = f"{prefix}." if prefix else ""
        if parametrize.is_parametrized(m):
            for attr, plist in m.parametrizations.items():
                t = plist.original
                if id(t) not in seen:
                    seen.add(id(t))
                    out.append(ParamEntry(pre + attr, m, attr, t))
        for attr, p in m._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append(ParamEntry(pre + attr, m, attr, p))
    return out


def _names_listing(names: Sequence[str], limit: int = 200) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def match_targets(module: nn.Module, targets: Sequence[str], what: str) -> list[ParamEntry]:
    """Entries matched by ``targets`` (exact name, else ``re.fullmatch``); an unmatched target is an error."""
    entries = param_entries(module)
    names = [e.name for e in entries]
    chosen: dict[str, ParamEntry] = {}
    for t in targets:
        hits = [e for e in entries if e.name == t]
        if not hits:
            try:
                rx = re.compile(t)
            except re.error as err:
                raise ValueError(
                    f"{what}: target {t!r} is neither a parameter name nor a valid regular expression ({err}); "
                    f"parameters: {_names_listing(names)}") from None
            hits = [e for e in entries if rx.fullmatch(e.name)]
        if not hits:
            raise ValueError(
                f"{what}: target {t!r} matches no parameter of {type(module).__name__}; use an exact name or a "
                f"regex (full match) from: {_names_listing(names)}")
        for e in hits:
            chosen.setdefault(e.name, e)
    return list(chosen.values())
