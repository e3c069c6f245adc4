"""bench/gpu.sh, the one-call GPU check, on a CPU: it parses, refuses to run without CUDA, logs under $OUT,
collects the `name: value` figures and exits non-zero when a step fails.

The steps themselves are replaced by a stand-in interpreter (``PYTHON``) that prints what each would print, so
these checks cost milliseconds; ``bash bench/gpu.sh --smoke`` runs the real steps at tiny shapes (about a minute)
and the bench options it uses are exercised below in process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="bench/gpu.sh needs bash and coreutils' timeout")

FAKE = """#!/usr/bin/env bash
# stand-in for python: what each step of bench/gpu.sh prints, and the exit status asked for by FAKE_FAIL
case "$*" in
  *"-m pytest"*) echo "57 passed"; [ "${FAKE_FAIL:-}" = tests ] && exit 1; exit 0 ;;
  *bench/train.py*) echo "train_step_speedup_coop_10_cpu: 2.500"; echo "noise: not a figure"; exit 0 ;;
  *bench/eval.py*) echo "coop_cache_speedup: 1.4"; [ "${FAKE_FAIL:-}" = eval ] && exit 3; exit 0 ;;
  *bench/quant.py*) echo "kmeans_max_inertia_ratio: 1"; exit 0 ;;
esac
echo "unexpected call: $*" >&2
exit 9
"""


def _run(tmp_path: Path, *args: str, fail: str = "", python: str | None = None) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": python or str(fake), "OUT": str(tmp_path / "out"), "FAKE_FAIL": fail}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_gpu_sh_parses() -> None:
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_smoke_run_logs_under_out_and_collects_the_figures(tmp_path: Path) -> None:
    res = _run(tmp_path, "--smoke")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "bench/gpu.sh: all steps passed" in res.stdout
    log = (tmp_path / "out" / "gpu.log").read_text()
    assert "== cuda tests" in log and "== bench/quant.py: ok" in log
    figures = (tmp_path / "out" / "figures.txt").read_text().splitlines()
    assert figures == ["train_step_speedup_coop_10_cpu: 2.500", "coop_cache_speedup: 1.4",
                       "kmeans_max_inertia_ratio: 1"]


@pytest.mark.parametrize("fail,name", [("tests", "cuda tests"), ("eval", "bench/eval.py")])
def test_a_failed_step_makes_the_script_fail(tmp_path: Path, fail: str, name: str) -> None:
    res = _run(tmp_path, "--smoke", fail=fail)
    assert res.returncode == 1
    assert f"bench/gpu.sh: FAILED: {name}" in res.stdout
    assert "== bench/quant.py: ok" in res.stdout  # the other steps still ran
    assert f"FAILED: {name}" in (tmp_path / "out" / "gpu.log").read_text()


def test_without_cuda_it_says_so_and_exits_2(tmp_path: Path) -> None:
    fake = tmp_path / "no-cuda-python"  # the real interpreter, with every CUDA device hidden
    fake.write_text(f'#!/usr/bin/env bash\nCUDA_VISIBLE_DEVICES="" exec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    res = _run(tmp_path, python=str(fake))
    assert res.returncode == 2
    assert "no CUDA device" in res.stdout and "bash bench/gpu.sh --smoke" in res.stdout
    assert not (tmp_path / "out" / "figures.txt").exists()


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    res = _run(tmp_path, "--fast")
    assert res.returncode == 2 and "unknown argument '--fast'" in res.stderr


def test_bench_train_figure_suffix_on_cpu(capsys: pytest.CaptureFixture) -> None:
    """The options bench/gpu.sh passes to bench/train.py, at tiny shapes on the CPU (peak memory is CUDA-only)."""
    sys.path.insert(0, str(REPO))
    try:
        from bench import train as bench_train
    finally:
        sys.path.remove(str(REPO))
    import torch

    threads = torch.get_num_threads()
    try:
        figures = bench_train.main(["--device", "cpu", "--text-layers", "1", "--batch-size", "2", "--train",
                                    "coop:3", "--eval", "coop:3", "--repeats", "1", "--overhead-classes", "3",
                                    "--overhead-repeats", "1", "--eval-images", "1", "--figure-suffix", "_cpu",
                                    "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert set(figures) == {"train_step_speedup_coop_3_cpu", "eval_speedup_coop_3_cpu",
                            "train_step_overhead_qcoop_vs_coop_cpu", "train_step_overhead_wrapped_vs_host_cpu"}
    assert all(v > 0 for k, v in figures.items() if "speedup" in k)
    assert "train_step_speedup_coop_3_cpu: " in capsys.readouterr().out
