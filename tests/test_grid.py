"""quantprompt.grid without training: the grid's calls, the scripts' plans, the local scheduler (GPU pinning,
train -> test order, failures, reruns), the SLURM dry run and flag checks.

The real per-setting scripts run, with ``PYTHON`` pointing at a stand-in for ``python train.py`` that records
what it was given and writes a log like a finished run (tests/test_grid_e2e.py runs the real trainer).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantprompt.grid import Call, GridError, expand, plan_grid
from quantprompt.grid.cli import build_parser, main, split_pass_through
from quantprompt.grid.local import run_local, slot_env, visible_gpus
from quantprompt.grid.plan import call_argv, split_script_opts
from quantprompt.grid.progress import Tracker, failure_report
from quantprompt.grid.slurm import ChainTask, SlurmOptions, parse_mem, parse_time

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"

FAKE = textwrap.dedent("""\
    #!{python}
    # stand-in for `python train.py ...`: record the call, write a finished run's log, fail on request
    import json, os, sys, time
    args = sys.argv[2:]
    out = args[args.index("--output-dir") + 1]
    t0 = time.time()
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0.3")))
    fail = os.environ.get("FAKE_FAIL")
    with open(os.environ["FAKE_LEDGER"], "a") as f:
        f.write(json.dumps({{"argv": sys.argv[1:], "out": out, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "omp": os.environ.get("OMP_NUM_THREADS"), "t0": t0, "t1": time.time()}}) + "\\n")
    if fail and fail in out:
        print("boom: simulated failure in", out)
        sys.exit(3)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "w") as f:
        f.write("" if "--eval-only" in args else "epoch [1/1] batch [1/1] loss 1.0 (1.0)\\nFinish training\\n")
        f.write("* accuracy: 50.0%\\n")
""")


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    exe = tmp_path / "fakepython"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    data = tmp_path / "data"
    data.mkdir()  # the scripts check that the dataset root exists; the stand-in reads nothing
    ledger = tmp_path / "ledger.jsonl"
    for key in ("CFG", "DATA", "OUTPUT", "LOADEP", "SHOTS", "SEEDS", "SHOTS_LIST", "FAKE_FAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHON", str(exe))
    monkeypatch.setenv("FAKE_LEDGER", str(ledger))
    monkeypatch.setenv("DATA", str(data))
    monkeypatch.setenv("CFG", "tiny")
    monkeypatch.chdir(tmp_path)
    return {"out": tmp_path / "output", "ledger": ledger, "tmp": tmp_path}


def calls(ledger: Path) -> list[dict]:
    return [json.loads(x) for x in ledger.read_text().splitlines()] if ledger.exists() else []


def grid(fake: dict, *args: str) -> tuple[int, str, str]:
    """``python -m quantprompt.grid`` in a subprocess (a grid installs signal handlers and prints a lot)."""
    res = subprocess.run([sys.executable, "-m", "quantprompt.grid", *args, "--output", str(fake["out"])],
                         capture_output=True, text=True, cwd=fake["tmp"],
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return res.returncode, res.stdout, res.stderr


# ---- the grid's calls -----------------------------------------------------------------------------------

def test_expand_follows_the_sequential_order() -> None:
    b2n = expand("base2new", ["qcoop", "coop"], ["caltech101", "dtd"], ["1", "2"])
    assert [c.label for c in b2n[:4]] == ["qcoop base2new_train caltech101 1", "qcoop base2new_test caltech101 1",
                                          "qcoop base2new_train caltech101 2", "qcoop base2new_test caltech101 2"]
    assert len(b2n) == 2 * 2 * 2 * 2 and b2n[-1].label == "coop base2new_test dtd 2"
    assert [c.kind for c in b2n[:2]] == ["train", "test"]
    xd = expand("xd", ["qcoop"], seeds=["1"])
    assert xd[0].label == "qcoop xd_train 1" and len(xd) == 11 and xd[1].args == ("caltech101", "1")
    dg = expand("dg", ["qcoop"], seeds=["1"])
    assert [c.args[0] for c in dg[1:]] == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    fs = expand("fewshot", ["coop"], ["dtd"], ["1", "2"], ["1", "16"])
    assert [c.args for c in fs] == [("dtd", "1", "1"), ("dtd", "1", "2"), ("dtd", "16", "1"), ("dtd", "16", "2")]
    assert len(expand("base2new", ["qcoop"])) == 11 * 3 * 2  # the paper's 11 datasets x 3 seeds
    with pytest.raises(GridError, match="setting must be one of base2new, xd, dg, fewshot"):
        expand("b2n", ["qcoop"])
    with pytest.raises(GridError, match="no method"):
        expand("base2new", [])


def test_plan_is_what_the_script_runs(fake: dict) -> None:
    opts = ["--shots", "2", "--output", str(fake["out"]), "OPTIM.MAX_EPOCH", "1"]
    g = plan_grid("base2new", expand("base2new", ["qcoop"], ["caltech101"], ["1"]), SCRIPTS, opts=opts)
    train, test = g.runs
    assert train.status == test.status == "new" and test.after == 0 and train.after is None
    common = Path("caltech101") / "shots_2" / "QCoOp" / "tiny" / "seed1"
    assert train.dir == fake["out"] / "base2new" / "train_base" / common
    assert test.dir == fake["out"] / "base2new" / "test_new" / common and test.needs == train.dir
    assert train.log == fake["out"] / "grid_logs" / "base2new" / "train_base" / (str(common) + ".log")
    assert not fake["out"].exists()  # planning created nothing
    for run in (train, test):  # the script, run for real, calls train.py with exactly the planned arguments
        subprocess.run(run.argv, check=True, capture_output=True, cwd=fake["tmp"])
    got = calls(fake["ledger"])
    assert [c["argv"] for c in got] == [list(train.command[1:]), list(test.command[1:])]
    assert train.command[1] == "train.py" and "--eval-only" in test.command and "OPTIM.MAX_EPOCH" in test.command
    again = plan_grid("base2new", [train.call, test.call], SCRIPTS, opts=opts)
    assert [r.status for r in again.runs] == ["finished", "finished"]


def test_plan_links_evaluations_and_drops_shared_folders(fake: dict) -> None:
    opts = ["--output", str(fake["out"])]
    zs = plan_grid("base2new", expand("base2new", ["zsclip"], ["caltech101"], ["1"]), SCRIPTS, opts=opts)
    assert [r.after for r in zs.runs] == [None, None]  # zero-shot evaluations load no trained model
    assert len(zs.chains()) == 2
    xd = plan_grid("xd", expand("xd", ["qcoop"], ["caltech101", "dtd"], ["1"]), SCRIPTS, opts=opts)
    assert [r.after for r in xd.runs] == [None, 0, 0] and xd.chains() == [[0, 1, 2]]
    assert xd.runs[1].needs == fake["out"] / "imagenet" / "QCoOp" / "tiny_16shots" / "seed1"
    # zero-shot "few-shot" runs of every shots x seed share one folder: run once
    fs = plan_grid("fewshot", expand("fewshot", ["zsclip"], ["caltech101"], ["1", "2"], ["1", "2"]), SCRIPTS,
                   opts=opts)
    assert len(fs.runs) == 1 and len(fs.dropped) == 3


def test_plan_errors_name_the_bad_value(fake: dict, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(GridError, match="unknown method 'qcop'.*qcoop"):
        plan_grid("base2new", expand("base2new", ["qcop"], ["caltech101"], ["1"]), SCRIPTS)
    with pytest.raises(GridError, match="unknown dataset 'caltec'; valid names:.*caltech101"):
        plan_grid("base2new", expand("base2new", ["qcoop"], ["caltec"], ["1"]), SCRIPTS)
    with pytest.raises(GridError, match="seed must be a non-negative integer, got 'x'"):
        plan_grid("base2new", expand("base2new", ["qcoop"], ["caltech101"], ["x"]), SCRIPTS)
    assert main(["base2new", "caltech101", "--methods", "qcoop", "--cfg", "nope", "--dry-run"]) == 2
    assert "configs/trainers/QCoOp/nope.yaml" in capsys.readouterr().err
    assert main(["base2new", "--methods", "qcoop", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
    assert main(["base2new", "--methods", "qcoop", "--launcher", "slurm", "--time", "soon", "--dry-run"]) == 2
    assert "--time 'soon' is not a SLURM time" in capsys.readouterr().err
    assert not fake["out"].exists() and not calls(fake["ledger"])


def test_pass_through_options() -> None:
    p = build_parser()
    ours, rest = split_pass_through(p, ["base2new", "--partition", "A.b", "--jobs", "2", "OPTIM.LR", "0.1"])
    assert ours == ["base2new", "--partition", "A.b", "--jobs", "2"] and rest == ["OPTIM.LR", "0.1"]
    ours, rest = split_pass_through(p, ["xd", "--", "OPTIM.LR", "0.1"])
    assert ours == ["xd"] and rest == ["--", "OPTIM.LR", "0.1"]
    with pytest.raises(GridError, match="--jobs comes after the KEY VALUE options"):
        split_pass_through(p, ["base2new", "OPTIM.LR", "0.1", "--jobs", "2"])


def test_call_options_merge_with_the_grid_options_as_the_scripts_read_them() -> None:
    assert split_script_opts(["--cfg", "A.b", "--shots", "2", "OPTIM.LR", "0.1"]) == \
        (["--cfg", "A.b", "--shots", "2"], ["OPTIM.LR", "0.1"])  # A.b is --cfg's value, not a KEY
    assert split_script_opts(["--data", "d", "--", "X.Y", "1"]) == (["--data", "d"], ["X.Y", "1"])
    call = Call("coop", "base2new_train.sh", ("d1", "1"), ("--cfg", "demo", "--", "OPTIM.MAX_EPOCH", "2"), tag="CoOp")
    assert call.label == "coop base2new_train d1 1 [CoOp]" and call.kind == "train"
    assert call_argv(Path("/s"), call, ["--data", "D", "OPTIM.LR", "0.1"]) == [
        "bash", "/s/coop/base2new_train.sh", "d1", "1", "--cfg", "demo", "--data", "D",
        "--", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.1"]
    assert call_argv(Path("/s"), Call("zsclip", "fewshot.sh", ("d", "4", "1"))) == \
        ["bash", "/s/zsclip/fewshot.sh", "d", "4", "1"]
    with pytest.raises(GridError, match="KEY VALUE options must come in pairs"):
        call_argv(Path("/s"), Call("coop", "base2new_train.sh", ("d", "1"), ("--", "OPTIM.LR")))


def test_hand_built_mixed_grid_runs_in_process_with_its_own_env_and_reports_each_end(fake: dict) -> None:
    """What ``quantprompt demo`` and ``quantprompt study`` do: calls of several settings with per-call configs,
    KEY VALUE options and tags, run by ``run_local`` with an environment, an output stream and a callback."""
    import io

    out_root = str(fake["out"])
    mk = [
        Call("coop", "base2new_train.sh", ("caltech101", "1"), ("--cfg", "tiny", "--", "OPTIM.MAX_EPOCH", "3"), "a"),
        Call("coop", "base2new_test.sh", ("caltech101", "1"), ("--cfg", "tiny", "--", "OPTIM.MAX_EPOCH", "3"), "a"),
        Call("qcoop", "fewshot.sh", ("dtd", "2", "1"), ("--shots", "9"), "b"),  # fewshot's shots are positional
        Call("coop", "xd_train.sh", ("1",), (), "c"),
        Call("coop", "xd_test.sh", ("dtd", "1"), (), "c"),
    ]
    g = plan_grid("mixed", mk, SCRIPTS, opts=["--output", out_root])
    assert [r.after for r in g.runs] == [None, 0, None, None, 3]
    assert g.runs[1].command[g.runs[1].command.index("--load-epoch") + 1] == "3"
    assert g.results_command().endswith(f"{out_root} --table")  # every table found
    ended: list[tuple[str, int]] = []
    stream = io.StringIO()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rc = run_local(g, jobs=2, gpus=[], env=env, out=stream, echo=False,
                   on_end=lambda run, status, took: ended.append((run.call.tag, status)))
    text = stream.getvalue()
    assert rc == 0, text
    assert sorted(ended) == [("a", 0), ("a", 0), ("b", 0), ("c", 0), ("c", 0)]
    assert "start  coop base2new_train caltech101 1 [a]" in text and "5/5 runs done" in text
    got = calls(fake["ledger"])
    assert len(got) == 5 and {c["omp"] for c in got} == {"1"}  # the caller's env, not the cores / jobs default
    train = next(c for c in got if "train_base" in c["out"])
    assert train["argv"][-2:] == ["OPTIM.MAX_EPOCH", "3"]
    with pytest.raises(GridError, match="setting must be one of"):
        plan_grid("everything", mk, SCRIPTS)
    again = plan_grid("mixed", mk, SCRIPTS, opts=["--output", out_root])
    assert again.todo() == []  # resumable: everything finished is skipped


def test_runs_under_different_output_roots_never_share_a_log(fake: dict) -> None:
    """The study gives each method its own output root; two methods with the same trainer, config, dataset and
    seed once wrote one log file (the second overwrote the first)."""
    roots = [fake["out"] / "runs" / name for name in ("noise_0.01", "noise_0.1")]
    mk = [Call("coop", "base2new_train.sh", ("caltech101", "1"), ("--output", str(r)), r.name) for r in roots]
    g = plan_grid("mixed", mk, SCRIPTS, log_dir=fake["out"] / "logs")
    logs = [r.log for r in g.runs]
    assert len(set(logs)) == 2
    assert [log.relative_to(fake["out"] / "logs").parts[0] for log in logs] == ["noise_0.01", "noise_0.1"]
    single = plan_grid("mixed", mk[:1], SCRIPTS, log_dir=fake["out"] / "logs")  # one root: paths as before
    assert single.runs[0].log.relative_to(fake["out"] / "logs").parts[0] == "base2new"


# ---- the local launcher ---------------------------------------------------------------------------------

def test_gpus_and_slot_environment() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 5,GPU-abc"}) == ["3", "5", "GPU-abc"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,4"}) == ["2"]  # CUDA stops at the first invalid id
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert [slot_env({}, s, 3, ["3", "5"])["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["3", "5", "3"]
    cpu = slot_env({}, 0, 4, [], cpus=16)
    assert cpu["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in cpu
    assert slot_env({"OMP_NUM_THREADS": "2"}, 0, 4, [], cpus=16)["OMP_NUM_THREADS"] == "2"  # the user's wins
    assert "OMP_NUM_THREADS" not in slot_env({}, 0, 1, [], cpus=16)  # one job: torch's default, as before


def test_jobs_pin_each_run_to_a_gpu_and_test_after_train(fake: dict) -> None:
    args = ["base2new", "caltech101", "--methods", "qcoop,coop", "--seeds", "1,2", "--jobs", "2",
            "--gpus", "3,5"]
    rc, out, err = grid(fake, *args)
    assert rc == 0, out + err
    got = calls(fake["ledger"])
    assert len(got) == 8 and {c["gpu"] for c in got} == {"3", "5"}
    for a in got:  # two runs at the same time never share a GPU
        for b in got:
            if a is not b and a["gpu"] == b["gpu"]:
                assert a["t1"] <= b["t0"] or b["t1"] <= a["t0"]
    by_out = {c["out"]: c for c in got}
    for c in got:
        if "test_new" in c["out"]:
            train = by_out[c["out"].replace("test_new", "train_base")]
            assert train["t1"] <= c["t0"], "an evaluation started before its model was trained"
    assert "8/8 runs done" in out and "0 failed" in out
    assert "[grid " in out and "ETA" in out
    assert f"results: python {REPO / 'tools' / 'parse_test_res.py'} {fake['out']} --table base2new" in out
    log = fake["out"] / "grid_logs" / "base2new" / "train_base" / "caltech101" / "shots_16" / "CoOp" / "tiny" / \
        "seed2.log"
    assert "Run this job and save the output to" in log.read_text()
    rc, out, err = grid(fake, *args)  # everything finished: nothing runs again
    assert rc == 0 and out.count("Results are available in") == 8 and len(calls(fake["ledger"])) == 8


def test_failed_run_is_reported_and_the_same_command_completes_the_grid(
        fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["base2new", "caltech101", "--methods", "qcoop", "--seeds", "1,2", "--jobs", "2", "--tail", "5"]
    monkeypatch.setenv("FAKE_FAIL", "train_base/caltech101/shots_16/QCoOp/tiny/seed2")
    rc, out, err = grid(fake, *args)
    monkeypatch.delenv("FAKE_FAIL")
    assert rc == 1, out + err
    assert "FAILED qcoop base2new_train caltech101 2: exit status 3; log " in out
    assert "    | boom: simulated failure in" in out  # the last lines of its log
    assert "NOT RUN qcoop base2new_test caltech101 2" in out  # its evaluation waited and was not started
    assert "2/4 runs done" in out and "1 failed" in out
    assert len(calls(fake["ledger"])) == 3
    rc, out, err = grid(fake, *args)
    assert rc == 0, out + err
    assert out.count("Results are available in") == 2 and "2 runs to do, 2 already finished" in out
    assert sorted(c["out"].split("/")[-5] + c["out"][-1] for c in calls(fake["ledger"])[3:]) == \
        ["caltech1012", "caltech1012"]


def test_tracker_counts_and_estimate() -> None:
    now = [0.0]
    t = Tracker(total=5, workers=2, already_done=1, clock=lambda: now[0])
    t.add("train", 2)
    t.add("test", 2)
    assert t.eta() is None and "ETA ?" in t.line()
    t.started("a", "train")
    t.started("b", "train")
    now[0] = 100.0
    t.finished("a", ok=True)
    t.started("c", "test")
    now[0] = 110.0
    t.finished("c", ok=True)
    # left: train "b" running 110 s of an expected 100 (0 left), one test queued (10 s), on 2 workers
    assert t.eta() == pytest.approx(5.0)
    t.finished("b", ok=False)
    assert (t.done, t.failed, t.queued, len(t.running)) == (3, 1, 1, 0)
    assert t.line().startswith("[grid 0:01:50] 3/5 runs done (1 already finished), 0 running, 1 queued, 1 failed")
    assert failure_report([("x", None, "exit status 2")], ["y"], 5) == \
        "FAILED x: exit status 2\nNOT RUN y: the run it evaluates failed"


# ---- the SLURM launcher (the real path through submitit is in tests/test_grid_e2e.py) ------------------

def test_slurm_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_time("240") == 240 and parse_time("4:00:00") == 240 and parse_time("1-00:00:00") == 1440
    assert parse_time("1-2") == 26 * 60 and parse_time("90:30") == 91
    assert parse_mem("32G") == 32.0 and parse_mem("64000M") == pytest.approx(62.5) and parse_mem("1T") == 1024
    for bad, fn in (("0", parse_time), ("4h", parse_time), ("lots", parse_mem), ("0G", parse_mem)):
        with pytest.raises(GridError, match=f"'{bad}'"):
            fn(bad)
    params = SlurmOptions(partition="gpu", time="2:00:00", gpus_per_task=2, mem="64G",
                          extra={"constraint": "a100"}).executor_parameters("qp")
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 120 and params["gpus_per_node"] == 2
    assert params["mem_gb"] == 64.0 and params["slurm_additional_parameters"] == {"constraint": "a100"}
    import submitit  # the parameters are ones submitit accepts, for SLURM (it checks them) and locally
    import submitit.slurm.slurm

    monkeypatch.setattr(submitit.slurm.slurm.shutil, "which", lambda name: f"/usr/bin/{name}")  # "on a cluster"
    for cluster in ("slurm", "local"):
        submitit.AutoExecutor(folder=tmp_path / cluster, cluster=cluster).update_parameters(**params)
    delayed = ChainTask().checkpoint({"runs": []})  # requeue on timeout: the same task again
    assert isinstance(delayed.function, ChainTask) and delayed.args == ({"runs": []},)


def test_slurm_dry_run_prints_the_array_and_runs_nothing(fake: dict) -> None:
    rc, out, err = grid(fake, "base2new", "caltech101", "--methods", "qcoop,zsclip", "--seeds", "1,2",
                        "--launcher", "slurm", "--partition", "gpu", "--time", "4:00:00", "--mem", "64G",
                        "--dry-run", "OPTIM.MAX_EPOCH", "1")
    assert rc == 0, out + err
    # qcoop: train + its test per seed (2 tasks); zsclip's evaluations load nothing (4 tasks)
    assert "would submit 6 array task(s) with submitit (cluster=slurm)" in out
    assert "slurm_partition = gpu" in out and "timeout_min = 240" in out and "mem_gb = 64.0" in out
    assert "gpus_per_node = 1" in out and "cpus_per_task = 8" in out
    task0 = out[out.index("task 0:"):out.index("task 1:")]
    assert task0.index("base2new_train.sh caltech101 1") < task0.index("base2new_test.sh caltech101 1")
    assert "train.py: " in task0 and "--trainer QCoOp" in task0 and "OPTIM.MAX_EPOCH 1" in task0
    assert not fake["out"].exists() and not calls(fake["ledger"])  # nothing ran, nothing was written


def test_slurm_without_sbatch_is_explained(fake: dict, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    import quantprompt.grid.slurm as slurm

    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    assert main(["base2new", "caltech101", "--methods", "qcoop", "--seeds", "1", "--launcher", "slurm"]) == 2
    assert "sbatch/srun not found" in capsys.readouterr().err
    assert not calls(fake["ledger"])


def test_submitit_task_failure_is_reported_and_rerun_submits_only_what_is_left(
        fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["base2new", "caltech101", "--methods", "qcoop", "--seeds", "1,2", "--launcher", "submitit-local",
            "--gpus-per-task", "0", "--cpus-per-task", "1", "--time", "10", "--status-every", "5", "--tail", "4"]
    monkeypatch.setenv("FAKE_FAIL", "train_base/caltech101/shots_16/QCoOp/tiny/seed2")
    rc, out, err = grid(fake, *args)
    monkeypatch.delenv("FAKE_FAIL")
    assert rc == 1, out + err
    assert "submitted 2 task(s)" in out and "1/2 tasks done, 1 failed" in out
    assert "FAILED task 1: qcoop base2new_train caltech101 2 (+1 evaluation(s))" in out
    # the report names the run that did not finish, with the last lines of its log; its evaluation never ran
    assert "FAILED qcoop base2new_train caltech101 2: not finished; log " in out
    assert "    | boom: simulated failure in" in out
    assert not any("test_new" in c["out"] and c["out"].endswith("seed2") for c in calls(fake["ledger"]))
    rc, out, err = grid(fake, *args)
    assert rc == 0, out + err
    assert "2 runs to do in 1 array task(s), 2 runs already finished" in out and "1/1 tasks done" in out
    assert len(calls(fake["ledger"])) == 5  # 3 the first time (one failed), the 2 left the second time


def test_quantprompt_grid_subcommand(fake: dict, capsys: pytest.CaptureFixture) -> None:
    from quantprompt.cli import main as quantprompt_main

    assert quantprompt_main(["grid", "xd", "caltech101", "--methods", "qmaple", "--seeds", "3", "--dry-run",
                             "--output", str(fake["out"])]) == 0
    out = capsys.readouterr().out
    assert "#0 [new] qmaple xd_train 3" in out and "#1 [new] qmaple xd_test caltech101 3 (after #0)" in out
    assert "--table xd" in out and not fake["out"].exists()


def test_array_task_runs_evaluations_only_after_their_train_run(tmp_path: Path) -> None:
    from quantprompt.grid.slurm import ChainFailed, run_chain

    def run(name: str, script: str, finished: bool = False) -> dict:
        return {"label": name, "argv": ["bash", "-c", script], "log": str(tmp_path / f"{name}.log"),
                "dir": str(tmp_path / name), "finished": finished}

    train_fails = {"cwd": str(tmp_path), "runs": [run("train", "echo boom-train; exit 3"),
                                                  run("test1", "touch ran1")]}
    with pytest.raises(ChainFailed, match=r"(?s)train: exit status 3; log .*train\.log.*\| boom-train"):
        run_chain(train_fails)
    assert not (tmp_path / "ran1").exists()  # nothing evaluates a model that was not trained
    one_test_fails = {"cwd": str(tmp_path), "runs": [run("train", "exit 9", finished=True),
                                                     run("test1", "echo boom-test1; exit 4"),
                                                     run("test2", "touch ran2")]}
    with pytest.raises(ChainFailed, match="test1: exit status 4") as err:
        run_chain(one_test_fails)
    assert "train" not in str(err.value).split(":")[0] and (tmp_path / "ran2").exists()  # the others still ran
    assert run_chain({"cwd": str(tmp_path), "runs": [run("ok", "echo fine")]}) == ["ok"]
    assert "$ bash -c 'echo fine'" in (tmp_path / "ok.log").read_text()


def test_scripts_run_with_the_interpreter_that_runs_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid started as ``venv/bin/python -m quantprompt.grid`` without activating the venv must not run its
    scripts with whatever ``python`` is first on PATH: PYTHON defaults to this interpreter; a user's is kept."""
    from quantprompt.grid.plan import script_env

    monkeypatch.delenv("PYTHON", raising=False)
    assert script_env()["PYTHON"] == sys.executable
    assert script_env({"PYTHON": "/opt/py/bin/python3", "A": "1"}) == {"PYTHON": "/opt/py/bin/python3", "A": "1"}
