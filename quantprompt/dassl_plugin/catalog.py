"""The table of our trainers: which module defines each, and which are baselines (plain data, no imports), so
that the package and :mod:`.wrap` read one list without importing each other."""

from __future__ import annotations

__all__ = ["TRAINERS"]

# (module, class, baseline). One line per trainer: adding a trainer is adding its line here. A baseline is
# registered only on request and gives way to a host's class of the same name; the others are registered on
# import and must be unique in the registry.
TRAINERS: tuple[tuple[str, str, bool], ...] = (
    ("coop", "CoOp", True),
    ("cocoop", "CoCoOp", True),
    ("maple", "MaPLe", True),
    ("zsclip", "ZeroshotCLIP", True),
    ("coop", "NoiseCoOp", False),
    ("qcoop", "QCoOp", False),
    ("qcocoop", "QCoCoOp", False),
    ("qmaple", "QMaPLe", False),
    ("p4q", "P4Q", False),
)
