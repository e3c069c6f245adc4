"""Size column: payload bytes from a run's .qpt or checkpoint, shown in KB as in the paper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from quantprompt import quant
from quantprompt.results import build_report
from quantprompt.results.sizes import checkpoint_size, format_kb, run_size, state_dict_fp16_bytes
from quantprompt.results.synthetic import write_log


class _Learner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(4, 512, generator=torch.Generator().manual_seed(0)))


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prompt_learner = _Learner()


def write_qcoop_run(run: Path, bits: int = 1) -> bytes:
    model = _Model()
    quant.quantize_(model, quant.QuantConfig(bits=bits, targets=["prompt_learner.ctx"]))
    blob = quant.export(model, metadata={"method": "qcoop", "bits": bits})
    (run / "prompt_learner").mkdir(parents=True, exist_ok=True)
    (run / "prompt_learner" / "model.qpt-10").write_bytes(blob)
    return blob


def write_coop_checkpoint(run: Path, epoch: int = 10) -> None:
    # CoOp's original checkpoints also hold the fixed token_prefix/suffix buffers: not learned, not counted
    state = {
        "ctx": torch.zeros(4, 512),
        "token_prefix": torch.zeros(10, 1, 512),
        "token_suffix": torch.zeros(10, 72, 512),
    }
    (run / "prompt_learner").mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": state, "epoch": epoch, "optimizer": None},
        run / "prompt_learner" / f"model.pth.tar-{epoch}",
    )


@pytest.mark.parametrize(
    "n_bytes, text",
    [
        (0, "0KB"),
        (260, "0.26KB"),
        (4096, "4.1KB"),
        (70_800, "70.8KB"),
        (16_400, "16.4KB"),
        (1_051_000, "1051KB"),
        (7_096_000, "7096KB"),
        (None, "-"),
    ],
)
def test_format_kb_like_the_paper(n_bytes, text) -> None:
    assert format_kb(n_bytes) == text


def test_qpt_payload_is_the_papers_026_kb(tmp_path: Path) -> None:
    run = tmp_path / "seed1"
    blob = write_qcoop_run(run)
    info, problem = run_size(run, "QCoOp")
    assert problem is None and info.source == "qpt"
    assert info.payload_bytes == 260 and info.file_bytes == len(blob)
    assert info.header_bytes is not None and info.header_bytes > 0


def test_checkpoint_counts_learned_tensors_in_fp16(tmp_path: Path) -> None:
    run = tmp_path / "seed1"
    write_coop_checkpoint(run, epoch=5)
    write_coop_checkpoint(run, epoch=10)
    info = checkpoint_size(run / "prompt_learner" / "model.pth.tar-10")
    assert info.payload_bytes == 4096
    info, problem = run_size(run, "CoOp")
    assert info.payload_bytes == 4096 and info.path.endswith("model.pth.tar-10")
    # quantizer buffers of a quantized checkpoint are not learned tensors; the latent weight is
    sd = {
        "prompt_learner.parametrizations.ctx.original": torch.zeros(4, 512),
        "prompt_learner.parametrizations.ctx.0.centers": torch.zeros(1, 2),
        "step": torch.tensor(3),
    }
    assert state_dict_fp16_bytes(sd) == 4096


def test_missing_or_broken_model_files(tmp_path: Path) -> None:
    assert run_size(tmp_path, "ZeroshotCLIP")[0].payload_bytes == 0
    info, problem = run_size(tmp_path / "nothing", "CoOp")
    assert info is None and "no .qpt or checkpoint" in problem
    run = tmp_path / "seed1"
    (run / "prompt_learner").mkdir(parents=True)
    (run / "prompt_learner" / "model-best.qpt").write_bytes(b"QPRM garbage")
    info, problem = run_size(run, "QCoOp")
    assert info is None and "cannot read model file" in problem


def test_size_from_the_trainers_storage_line(tmp_path: Path) -> None:
    run = tmp_path / "seed1"
    log = write_log(run, 70.0, "dassl")
    log.write_text(
        log.read_text().replace(
            "Finish training",
            "Storage of learned parameters (packed .qpt): 260 bytes payload + 51 bytes header = "
            "311 bytes\nFinish training",
        )
    )
    info, problem = run_size(run, "QCoOp")
    assert problem is None and (info.payload_bytes, info.source) == (260, "log")


def test_size_column_in_table(tmp_path: Path) -> None:
    root = tmp_path / "output"
    for trainer in ("CoOp", "QCoOp"):
        for seed in (1, 2):
            common = f"dtd/shots_16/{trainer}/vit_b16/seed{seed}"
            train = root / "base2new/train_base" / common
            write_log(train, 80.0, "coop")
            write_log(root / "base2new/test_new" / common, 60.0, "eval")
            if trainer == "CoOp":
                write_coop_checkpoint(train)
            else:
                write_qcoop_run(train)
    report = build_report(root)
    assert report.warnings == []
    rows = {r[0]: r for r in report.tables[0].rows}
    assert rows["CoOp"][1] == "4.1KB" and rows["QCoOp"][1] == "0.26KB"
