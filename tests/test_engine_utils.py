"""dassl.utils equivalents: log.txt tee and naming, JSON, seeding, meters, parameter counts."""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quantprompt.engine.utils import (
    AverageMeter,
    Logger,
    MetricMeter,
    check_availability,
    collect_env_info,
    count_num_param,
    listdir_nohidden,
    mkdir_if_missing,
    read_json,
    restore_stdout,
    set_random_seed,
    setup_logger,
    write_json,
)


def test_setup_logger_tees_stdout_and_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    try:
        logger = setup_logger(str(out))
        assert isinstance(sys.stdout, Logger) and logger is sys.stdout
        print("* accuracy: 71.2%")
    finally:
        restore_stdout()
    assert not isinstance(sys.stdout, Logger)
    assert (out / "log.txt").read_text() == "* accuracy: 71.2%\n"
    assert "* accuracy: 71.2%" in capsys.readouterr().out  # console still gets it

    try:
        setup_logger(str(out))  # log.txt exists: Dassl appends a time stamp
        print("second run")
    finally:
        restore_stdout()
    names = sorted(os.listdir(out))
    assert names[0] == "log.txt" and len(names) == 2
    assert re.fullmatch(r"log\.txt-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}", names[1])
    assert (out / names[1]).read_text() == "second run\n"
    assert (out / "log.txt").read_text() == "* accuracy: 71.2%\n"

    try:
        setup_logger(str(tmp_path / "custom.log"))
        print("x")
    finally:
        restore_stdout()
    assert (tmp_path / "custom.log").read_text() == "x\n"
    assert setup_logger(None) is None


def test_json_dirs_and_listing(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "split.json"
    write_json({"train": [["x.jpg", 0, "cat"]]}, str(path))
    assert path.read_text().startswith('{\n    "train": [')  # Dassl's indent=4
    assert read_json(str(path)) == {"train": [["x.jpg", 0, "cat"]]}
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(str(tmp_path / "nope.json"))
    mkdir_if_missing(str(tmp_path / "c"))
    mkdir_if_missing(str(tmp_path / "c"))
    (tmp_path / ".hidden").write_text("")
    assert listdir_nohidden(str(tmp_path), sort=True) == ["a", "c"]


def test_set_random_seed_is_repeatable() -> None:
    set_random_seed(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_random_seed(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_meters() -> None:
    meter = AverageMeter()
    meter.update(torch.tensor(2.0))
    meter.update(4.0, n=3)
    assert (meter.val, meter.avg, meter.count) == (4.0, 3.5, 4)
    ema = AverageMeter(ema=True)
    ema.update(10.0)
    assert ema.avg == pytest.approx(1.0)
    metrics = MetricMeter()
    metrics.update({"loss": torch.tensor(1.5), "acc": 50.0})
    metrics.update({"loss": 0.5, "acc": 100.0})
    assert str(metrics) == "loss 0.5000 (1.0000) acc 100.0000 (75.0000)"
    metrics.update(None)
    with pytest.raises(TypeError, match="dict"):
        metrics.update([1.0])


def test_count_num_param_and_availability() -> None:
    model = torch.nn.Linear(3, 2)
    assert count_num_param(model) == 8
    assert count_num_param(params=[{"params": model.weight}, model.bias]) == 8
    assert count_num_param(params=[{"params": [model.weight, model.bias]}]) == 8
    with pytest.raises(ValueError):
        count_num_param()
    with pytest.raises(ValueError, match=r"do you mean \[CoOp\]"):
        check_availability("Coop", ["CoOp", "MaPLe"])


def test_collect_env_info_mentions_torch_and_pillow() -> None:
    info = collect_env_info()
    assert "PyTorch" in info and "Pillow (" in info
