"""Eval-mode cache of text features for prompt models whose text side does not depend on the image.

CoOp and MaPLe recompute the text features of every class for every test batch although, once training is
over, they are constant. We compute them once per evaluation and reuse them while nothing they depend on has
changed. "Nothing changed" is checked on every call, cheaply and without trusting callers:

* every tensor they depend on (learned parameters, quantizer buffers, CLIP's text tower) is held by
  reference together with its ``_version`` counter, which PyTorch bumps on every in-place write
  (optimizer steps, ``load_state_dict``, ``copy_``), and its storage: replacing a tensor object is seen
  by identity, replacing its data (``p.data = ...``) by the storage's address, and holding the old
  storage keeps its memory from being reused by a new one (no false hit after two swaps);
* the cache is dropped whenever it is consulted in training mode, when grad mode would require a graph,
  under a different autocast state, or by ``invalidate()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class TextFeatureCache:
    """Holds one value (a tensor or a tuple/list of tensors) plus the snapshot of the tensors it was computed
    from. Also used for MaPLe's image-independent vision prompts."""

    def __init__(self) -> None:
        self._value: Any = None
        self._deps: list[tuple[torch.Tensor, int, int, object]] = []
        self._context: tuple = ()
        self.hits = 0
        self.misses = 0

    def invalidate(self) -> None:
        """Forget the cached features (the next eval call recomputes them)."""
        self._value = None
        self._deps = []
        self._context = ()

    @staticmethod
    def _context_now() -> tuple:
        """Autocast state per device type: features computed under autocast have another dtype."""
        state = []
        for device_type in ("cpu", "cuda"):
            on = torch.is_autocast_enabled(device_type)
            state.append((on, torch.get_autocast_dtype(device_type) if on else None))
        return tuple(state)

    def _valid(self, deps: list[torch.Tensor]) -> bool:
        if self._value is None or len(deps) != len(self._deps) or self._context != self._context_now():
            return False
        for tensor, (old, version, ptr, _storage) in zip(deps, self._deps):
            if tensor is not old or tensor._version != version or tensor.data_ptr() != ptr:
                return False
        return True

    def get(self, deps: Iterable[torch.Tensor], compute: Callable[[], Any]) -> Any:
        """Return cached features if every dependency is unchanged, else ``compute()`` and remember it."""
        deps = list(deps)
        if self._valid(deps):
            self.hits += 1
            return self._value  # type: ignore[return-value]
        self.misses += 1
        self._value = _detach(compute())
        self._deps = [(t, t._version, t.data_ptr(), t.untyped_storage()) for t in deps]
        self._context = self._context_now()
        return self._value


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    return value
