"""What a table builder returns: tables whose cells are values (not text), plus warnings and figure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Table", "Report"]


@dataclass
class Table:
    """A rendered-agnostic table: cells are str, float, Stat or None (shown as '-')."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""
    spread: str = "std"  # what "±" means in cells: "std" | "95% CI (Student t)"


@dataclass
class Report:
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: numbers behind the figures: ``data["fewshot"] = {"shots": [...], "curves": {label: {shots: acc}}}``
    data: dict[str, Any] = field(default_factory=dict)
