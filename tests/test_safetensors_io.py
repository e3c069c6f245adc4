"""All-or-nothing safetensors writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from quantprompt.safetensors_io import save_atomic


def test_save_atomic_round_trips_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.safetensors"
    save_atomic({"a": torch.arange(3.0)}, path, metadata={"k": "v"})
    save_atomic({"a": torch.ones(2)}, path)
    assert torch.equal(load_file(str(path))["a"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["x.safetensors"]


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError):
        save_atomic({"a": "not a tensor"}, path)
    assert list(tmp_path.iterdir()) == []
