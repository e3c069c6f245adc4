"""Every command-line entry point turns a bad input into one line on stderr, exit code 2, no traceback.

Each case runs the entry point as a user would (a fresh interpreter: this one, ``sys.executable``) with one bad
value, and asserts the one line names the value. ``--debug`` and ``QUANTPROMPT_DEBUG=1`` bring the traceback
back for bug reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "quantprompt.cli"]


def _run(argv: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "QUANTPROMPT_DEBUG"}
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", QUANTPROMPT_BACKEND="engine",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep), **extra)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def p4q_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny P4Q export, then the first 100,000 bytes of it (the issue's damaged file)."""
    from quantprompt import clip as qclip
    from quantprompt import prompting
    from quantprompt.p4q.export import export_p4q

    folder = tmp_path_factory.mktemp("p4q")
    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), ["cat", "dog"], n_ctx=4, precision="fp32", prompt_bits=4)
    size = model.image_encoder.input_resolution if hasattr(model.image_encoder, "input_resolution") else 32
    model.calibrate([torch.rand(2, 3, size, size)], "minmax")
    path = folder / "run.p4q.safetensors"
    export_p4q(model, path)
    return path


def _cut(path: Path, dest: Path, n: int) -> Path:
    dest.write_bytes(path.read_bytes()[:n])
    return dest


def test_train_py_reports_a_bad_config_value_in_one_line(tmp_path: Path) -> None:
    res = _run([sys.executable, str(REPO / "train.py"), "--root", str(tmp_path), "--trainer", "QCoOp",
                "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
                "--config-file", str(REPO / "configs/trainers/QCoOp/tiny.yaml"),
                "--output-dir", str(tmp_path / "out"), "TRAINER.QPROMPT.BITS", "9"], tmp_path)
    _one_line(res, "TRAINER.QPROMPT.BITS=9 is out of range 1..8")
    debug = _run([sys.executable, str(REPO / "train.py"), "--debug", "--root", str(tmp_path), "--trainer", "QCoOp",
                  "--config-file", str(REPO / "configs/trainers/QCoOp/tiny.yaml"),
                  "--output-dir", str(tmp_path / "out2"), "TRAINER.QPROMPT.BITS", "9"], tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "out of range 1..8" in debug.stderr


def test_train_py_reports_an_unknown_key_and_a_missing_file_in_one_line(tmp_path: Path) -> None:
    res = _run([sys.executable, str(REPO / "train.py"), "--trainer", "QCoOp", "--config-file", "nope.yaml"],
               tmp_path)
    _one_line(res, "--config-file nope.yaml: no such file")
    res = _run([sys.executable, str(REPO / "train.py"), "--trainer", "QCoOp", "TRAINER.QPROMPT.BITZ", "1"],
               tmp_path)
    _one_line(res, "TRAINER.QPROMPT.BITZ")


@pytest.mark.parametrize("int8", [True, False], ids=["int8", "fp32"])
def test_a_damaged_p4q_export_is_reported_as_one(p4q_export: Path, tmp_path: Path, int8: bool) -> None:
    """By content, not by name: the damaged export is renamed so that its name says nothing."""
    images = tmp_path / "imgs"
    images.mkdir()
    damaged = _cut(p4q_export, tmp_path / "renamed.bin", 100_000)
    res = _run([*CLI, "classify", "--prompt", str(damaged), *(["--int8"] if int8 else []), str(images)], tmp_path)
    _one_line(res, "renamed.bin: damaged P4Q export (truncated")
    by_name = _cut(p4q_export, tmp_path / "short.p4q.safetensors", 100)  # header cut: the name tells
    res = _run([*CLI, "inspect", str(by_name)], tmp_path)
    _one_line(res, "short.p4q.safetensors: damaged P4Q export")


def test_a_damaged_p4q_export_is_recognised_from_any_cut(p4q_export: Path, tmp_path: Path) -> None:
    from quantprompt.p4q.export import ExportFormatError, is_p4q_file, load_p4q

    data = p4q_export.read_bytes()
    header = int.from_bytes(data[:8], "little")
    for n in (header + 8, header + 9, 100_000, len(data) - 1):
        cut = tmp_path / f"cut{n}.bin"
        cut.write_bytes(data[:n])
        assert is_p4q_file(cut), n
        with pytest.raises(ExportFormatError, match="damaged P4Q export"):
            load_p4q(cut)
    qpt = tmp_path / "prompt.qpt"
    qpt.write_bytes(b"QPT" + bytes(100))
    assert not is_p4q_file(qpt) and not is_p4q_file(tmp_path / "missing.bin")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["inspect", "missing.qpt"], ["missing.qpt"]),
        (["configs", "QCoOp/no_such_config"], ["no_such_config"]),
        (["demo", "--methods", "NoSuchMethod"], ["NoSuchMethod"]),
        (["grid", "base2new", "--methods", "nosuchmethod", "--data", "."], ["nosuchmethod"]),
        (["results", "no_such_dir", "--table", "base2new"], ["no_such_dir"]),
        (["plot", "kl", "no_such_run", "-o", "k.png"], ["no_such_run"]),
        (["study", "--claims", "T1-nope", "--dry-run"], ["unknown claim 'T1-nope'; claims: T1-coop-vs-zs-new"]),
        (["study", "--protocol", "missing.yaml"], ["missing.yaml: no such file"]),
        (["classify", "--topk", "many"], ["--topk", "many"]),  # argparse's own errors: one line too
    ],
    ids=["inspect", "configs", "demo", "grid", "results", "plot", "study-claim", "study-protocol", "argparse"],
)
def test_quantprompt_subcommands_report_bad_input_in_one_line(tmp_path: Path, argv: list[str],
                                                              needles: list[str]) -> None:
    _one_line(_run([*CLI, *argv], tmp_path), *needles)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["tools/parse_test_res.py", "no_such_dir"], ["no_such_dir", "is not a directory"]),
        (["tools/plot.py", "epochs", "no_such_root", "-o", "x.png"], ["no_such_root"]),
        (["-m", "quantprompt.world", "write", "WorldNoSuch", "--root", "."], ["WorldNoSuch"]),
        (["-m", "quantprompt.grid", "base2new", "--methods", "nosuchmethod", "--data", "."], ["nosuchmethod"]),
    ],
    ids=["parse_test_res", "plot", "world", "grid-module"],
)
def test_tools_and_modules_report_bad_input_in_one_line(tmp_path: Path, argv: list[str],
                                                        needles: list[str]) -> None:
    argv = [str(REPO / a) if a.startswith("tools/") else a for a in argv]
    _one_line(_run([sys.executable, *argv], tmp_path), *needles)


def test_the_environment_variable_shows_the_traceback(tmp_path: Path) -> None:
    res = _run([*CLI, "configs", "QCoOp/no_such_config"], tmp_path, QUANTPROMPT_DEBUG="1")
    assert res.returncode != 0 and "Traceback" in res.stderr and "no_such_config" in res.stderr
