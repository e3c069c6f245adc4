"""Benchmark grids end to end on the tiny CLIP and a synthetic Caltech101 (engine backend): ``--jobs 2``, a
run killed half-way and resumed by the next call, and the SLURM path through submitit's local executor."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPTS = ["--shots", "2", "OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "0"]
TRAINERS = {"qcoop": "QCoOp", "coop": "CoOp"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("grid")
    make_dataset(root / "data", "Caltech101", n_classes=4, images_per_class=8, seed=0)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS", "SEEDS", "SHOTS_LIST", "CUDA_VISIBLE_DEVICES")}
    env.update(QUANTPROMPT_BACKEND="engine", DATA=str(root / "data"), CFG="tiny", PYTHON=sys.executable,
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO),
               CUDA_VISIBLE_DEVICES="")
    return {"root": root, "env": env, "done": None}


def grid(world: dict, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantprompt.grid", *args, "--output", str(out), *OPTS],
                          cwd=world["root"], env=world["env"], capture_output=True, text=True)


def run_dir(out: Path, phase: str, trainer: str, seed: int) -> Path:
    return out / "base2new" / phase / "caltech101" / "shots_2" / trainer / "tiny" / f"seed{seed}"


def accuracy(run: Path) -> float:
    logs = sorted(run.glob("log.txt*"))
    found = re.findall(r"^\* accuracy: ([\d.]+)%$", logs[-1].read_text(), re.M) if logs else []
    assert found, f"no final accuracy in {run}"
    return float(found[-1])


def results_table(stdout: str) -> str:
    """Run the results command the grid printed at its end."""
    line = [x for x in stdout.splitlines() if x.startswith("results: ")][-1]
    cmd = shlex.split(line[len("results: "):])
    assert cmd[0] == "python" and cmd[-2:] == ["--table", "base2new"]
    res = subprocess.run([sys.executable, *cmd[1:]], capture_output=True, text=True, env={**os.environ,
                         "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    return res.stdout


def two_by_two(world: dict) -> Path:
    """Base-to-new, 2 methods x 2 seeds, 2 at a time (once per module)."""
    if world["done"] is None:
        out = world["root"] / "jobs2"
        res = grid(world, out, "base2new", "caltech101", "--methods", "qcoop,coop", "--seeds", "1,2",
                   "--jobs", "2", "--status-every", "5")
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        world["done"] = (out, res.stdout)
    return world["done"]


def test_jobs2_completes_a_base2new_grid(world: dict) -> None:
    out, stdout = two_by_two(world)
    assert "8 runs to do, 0 already finished; 2 at a time, on CPU" in stdout
    assert "8/8 runs done" in stdout and "0 failed" in stdout
    for trainer in TRAINERS.values():
        for seed in (1, 2):
            for phase in ("train_base", "test_new"):
                assert 0.0 <= accuracy(run_dir(out, phase, trainer, seed)) <= 100.0
            test_log = (run_dir(out, "test_new", trainer, seed) / "log.txt").read_text()
            assert 'model.pth.tar-2"' in test_log  # the evaluation loaded its trained model
    table = results_table(stdout)
    for trainer in TRAINERS.values():
        assert re.search(rf"^{trainer}\s+\S+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", table, re.M), table
    assert "mean over 2 seed(s) (1, 2)" in table


def test_submitit_local_executor_completes_a_partly_failed_grid(world: dict) -> None:
    done, _ = two_by_two(world)
    out = world["root"] / "submitit"
    shutil.copytree(done, out)
    # as after a partial failure: a whole train->test chain lost, and one evaluation lost
    for phase in ("train_base", "test_new"):
        shutil.rmtree(run_dir(out, phase, "QCoOp", 1))
    shutil.rmtree(run_dir(out, "test_new", "CoOp", 2))
    kept = (run_dir(out, "train_base", "CoOp", 2) / "log.txt").read_text()
    res = grid(world, out, "base2new", "caltech101", "--methods", "qcoop,coop", "--seeds", "1,2",
               "--launcher", "submitit-local", "--gpus-per-task", "0", "--cpus-per-task", "1", "--mem", "2G",
               "--time", "20", "--status-every", "5")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "3 runs to do in 2 array task(s), 5 runs already finished" in res.stdout
    assert "submitted 2 task(s)" in res.stdout and "2/2 tasks done, 0 failed" in res.stdout
    for trainer in TRAINERS.values():
        for seed in (1, 2):
            for phase in ("train_base", "test_new"):
                assert 0.0 <= accuracy(run_dir(out, phase, trainer, seed)) <= 100.0
    # the finished train run was not run again; each task ran in its own process, logging under submitit/
    assert (run_dir(out, "train_base", "CoOp", 2) / "log.txt").read_text() == kept
    assert not list(run_dir(out, "train_base", "CoOp", 2).glob("log.txt-*"))
    task_logs = list((out / "grid_logs" / "submitit").glob("*_log.out"))
    assert len(task_logs) == 2
    assert any("done qcoop base2new_test caltech101 1" in p.read_text() for p in task_logs)
    assert "QCoOp" in results_table(res.stdout)


def test_killed_run_is_resumed_by_the_next_call(world: dict) -> None:
    out = world["root"] / "killed"
    cmd = ["bash", str(REPO / "scripts" / "coop" / "benchmark.sh"), "base2new", "caltech101", "--output", str(out),
           "--shots", "2", "OPTIM.MAX_EPOCH", "30", "OPTIM.WARMUP_EPOCH", "0"]
    env = {**world["env"], "SEEDS": "1"}
    train = run_dir(out, "train_base", "CoOp", 1)
    first = subprocess.Popen(cmd, cwd=world["root"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 600
    while not (train / "prompt_learner" / "model.pth.tar-1").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # benchmark.sh execs the grid: this is the grid process
    stdout, _ = first.communicate(timeout=120)
    assert first.returncode == 130, stdout[-3000:]
    assert "grid: stopping 1 running run(s); the same command resumes them" in stdout
    log = (train / "log.txt").read_text()
    assert "Finish training" not in log  # stopped half-way ...
    time.sleep(1.0)
    assert (train / "log.txt").read_text() == log  # ... and really stopped (train.py was terminated too)
    res = subprocess.run(cmd, cwd=world["root"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"Unfinished run in {train}: resuming" in res.stdout
    resumed = sorted(train.glob("log.txt-*"))
    assert len(resumed) == 1
    text = resumed[0].read_text()
    assert "Found checkpoint at" in text and "epoch [1/30]" not in text and "epoch [30/30]" in text
    assert 0.0 <= accuracy(run_dir(out, "test_new", "CoOp", 1)) <= 100.0
    assert "2/2 runs done" in res.stdout
