"""Name -> object registries with Dassl.pytorch's semantics (``TRAINER_REGISTRY``, ``DATASET_REGISTRY``, ...).

A trainer or dataset becomes selectable from a config by registering its class under its ``__name__``;
``train.py`` then looks it up by the name given in ``--trainer`` / ``DATASET.NAME``. Registering the same name
twice is an error (it almost always means two plugins define the same class) unless ``force=True``.
"""

from __future__ import annotations

from typing import Any, Optional, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry:
    """A mapping from names to classes/functions, filled by ``@REGISTRY.register()``.

    Usage, as in Dassl::

        TRAINER_REGISTRY = Registry("TRAINER")

        @TRAINER_REGISTRY.register()       # or @TRAINER_REGISTRY.register, or TRAINER_REGISTRY.register(Cls)
        class CoOp(TrainerX): ...

        TRAINER_REGISTRY.get("CoOp")
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry '
                f"(pass force=True to replace it)"
            )
        self._obj_map[name] = obj

    def register(self, obj: Optional[T] = None, force: bool = False) -> Any:
        """Register ``obj`` under ``obj.__name__``; without ``obj`` return a decorator that does so.

        Returns the registered object (Dassl returns ``None`` for the direct call; returning the object lets
        ``@REGISTRY.register`` without parentheses work as well).
        """
        if obj is None:

            def wrapper(fn_or_class: T) -> T:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)  # type: ignore[attr-defined]
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)  # type: ignore[attr-defined]
        return obj

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; a KeyError lists the registered names."""
        if name not in self._obj_map:
            known = ", ".join(sorted(self._obj_map)) or "(none)"
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry; registered names: {known}'
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __len__(self) -> int:
        return len(self._obj_map)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._obj_map.items())

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={self.registered_names()!r})"

