"""``qp.quantize_trainers``: QPrompt applied to a host checkout's own trainers (engine backend, in process).

The anchor: the wrapper applied to our own CoOp / CoCoOp trainers reproduces QCoOp / QCoCoOp bit for bit (same
logits, same .qpt bytes, same checkpoints). Then fake hosts shaped like the public prompt learners
(tests/fake_host_trainers.py.txt): an own forward_backward with an extra loss (KgCoOp), state_dict averaging and
reload (PromptSRC's GPA), two parameter groups; their checkpoints keep the host's names, resume is exact, and
the evaluated model equals what the packed .qpt reloads to. The same hosts run as a foreign checkout, under the
engine and real Dassl, in tests/test_dassl_plugin_foreign.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

import torch  # noqa: E402

import train  # noqa: E402
from quantprompt import quant  # noqa: E402
from quantprompt.engine.compat import BACKEND, TRAINER_REGISTRY, set_random_seed  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(BACKEND != "engine", reason="in-process tests of the engine backend")]
HOSTS = ("KgLike", "SrcLike", "TwoGroups", "FullFineTune", "Frozen")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("wrap") / "data"
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    return root


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, type]:
    """The fake host trainers, registered once in this process, and their Q-classes."""
    import quantprompt.dassl_plugin as qp

    if "KgLike" not in TRAINER_REGISTRY:
        src = (Path(__file__).parent / "fake_host_trainers.py.txt").read_text()
        mod = "quantprompt.engine.compat"
        path = tmp_path_factory.mktemp("hosts") / "fake_host_trainers.py"
        path.write_text(src.format(engine=mod, optim=mod, utils=mod))
        spec = importlib.util.spec_from_file_location("fake_host_trainers", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert qp.quantize_trainers(*HOSTS) == [f"Q{h}" for h in HOSTS]
    assert qp.quantize_trainers("KgLike") == ["QKgLike"]  # again: harmless
    return {name: TRAINER_REGISTRY.get(name) for name in (*HOSTS, *(f"Q{h}" for h in HOSTS))}


def cfg_for(data: Path, trainer: str, out: Path, *opts: str, config: str = "QCoOp", sub: str = "base",
            shots: str = "4"):
    args = ["--root", str(data), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{config}/tiny.yaml"), "--output-dir", str(out),
            "DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", sub, "OPTIM.LR", "0.5",
            "TRAINER.QPROMPT.CAC.INTERVAL", "1", "TRAINER.QPROMPT.CAC.KL_THRESHOLD", "0.0", *opts]
    train.import_plugins()
    return train.setup_cfg(train.build_parser().parse_args(args))


def quietly(fn, *args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        fn(*args)
    return buf.getvalue()


def make(cls: type, cfg):
    set_random_seed(cfg.SEED)
    out = {}
    text = quietly(lambda: out.setdefault("t", cls(cfg)))
    return out["t"], text


def logits(trainer) -> torch.Tensor:
    trainer.set_model_mode("eval")
    batch = next(iter(trainer.test_loader))
    with torch.no_grad():
        return trainer.model(batch["img"])


def state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# ------------------------------------------------------------------------------------------------------------
# the anchor: wrapped CoOp == QCoOp, wrapped CoCoOp == QCoCoOp
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host,ours", [("CoOp", "QCoOp"), ("CoCoOp", "QCoCoOp")])
def test_wrapped_own_trainer_equals_our_q_trainer(data: Path, tmp_path: Path, host: str, ours: str) -> None:
    import quantprompt.dassl_plugin as qp

    results = {}
    for label, cls in (("ours", TRAINER_REGISTRY.get(ours)), ("wrapped", qp.wrap_trainer(getattr(qp, host)))):
        trainer, _ = make(cls, cfg_for(data, ours, tmp_path / label, "OPTIM.MAX_EPOCH", "3", config=ours))
        log = quietly(trainer.train)
        folder = tmp_path / label / "prompt_learner"
        results[label] = (logits(trainer), (folder / "model.qpt-3").read_bytes(), state(folder / "model.pth.tar-3"),
                          quant.stats(trainer.model), log)
    a, b = results["ours"], results["wrapped"]
    assert torch.equal(a[0], b[0])
    assert a[1] == b[1]  # the same .qpt bytes, metadata included
    assert list(a[2]) == list(b[2]) and all(torch.equal(a[2][k], b[2][k]) for k in a[2])
    assert sum(s["reclusters"] for s in b[3].values()) > 0  # CAC ran through the optimizer hook
    assert {n: s["reclusters"] for n, s in a[3].items()} == {n: s["reclusters"] for n, s in b[3].items()}
    storage = [line for line in b[4].splitlines() if line.startswith("Storage of learned parameters")]
    assert storage == [line for line in a[4].splitlines() if line.startswith("Storage of learned parameters")]
    assert len(storage) == 1 and "(packed .qpt)" in storage[0]


# ------------------------------------------------------------------------------------------------------------
# the entry point and its refusals
# ------------------------------------------------------------------------------------------------------------
def test_quantize_trainers_refuses_unknown_own_and_taken_names(hosts: dict) -> None:
    import quantprompt.dassl_plugin as qp
    from quantprompt.engine.compat import TrainerX

    with pytest.raises(ValueError, match=r"no trainer 'PromptSCR' in TRAINER_REGISTRY \(registered: .*KgLike.*\)"):
        qp.quantize_trainers("PromptSCR")
    if "CoOp" in TRAINER_REGISTRY:
        with pytest.raises(ValueError, match="CoOp is quantized by QuantPrompt's own QCoOp; use --trainer QCoOp"):
            qp.quantize_trainers("CoOp")
    with pytest.raises(ValueError, match="QCoOp is one of QuantPrompt's own trainers"):
        qp.quantize_trainers("QCoOp")
    with pytest.raises(ValueError, match="name at least one trainer"):
        qp.quantize_trainers()

    class Taken(TrainerX):
        pass

    class QTaken(TrainerX):
        pass

    TRAINER_REGISTRY.register(Taken)
    TRAINER_REGISTRY.register(QTaken)
    with pytest.raises(ValueError, match=r"QTaken is already registered by .*QTaken; the quantized Taken cannot"):
        qp.quantize_trainers("Taken")
    assert hosts["QKgLike"].QPROMPT_HOST is hosts["KgLike"] and issubclass(hosts["QKgLike"], hosts["KgLike"])


@pytest.mark.parametrize("host,opts,message", [
    ("Frozen", (), r"QFrozen: the host trains nothing: no parameter with requires_grad is held by its optimizer"),
    ("KgLike", ("TRAINER.QPROMPT.TARGETS", "['prompt_learner.nope']"),
     r"QKgLike: TRAINER.QPROMPT.TARGETS: target 'prompt_learner.nope' matches no parameter of self.model "
     r"\(CoOp\); .* of what the host trains: prompt_learner.ctx$"),
    ("FullFineTune", ("TRAINER.QPROMPT.MAX_PARAMS", "100000"),
     r"QFullFineTune: the host trains 960,337 values in \d+ tensors, more than a prompt-sized set "
     r"\(TRAINER.QPROMPT.MAX_PARAMS=100000\).* or raise TRAINER.QPROMPT.MAX_PARAMS"),
    ("KgLike", ("TRAINER.QPROMPT.MODE", "'fast'"), r"TRAINER.QPROMPT.MODE='fast' is not one of qat, ptq, off, noise"),
])
def test_refused_before_training(data: Path, tmp_path: Path, hosts: dict, host: str, opts: tuple,
                                 message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(hosts[f"Q{host}"], cfg_for(data, f"Q{host}", tmp_path, *opts))
    assert not (tmp_path / "prompt_learner").exists()


# ------------------------------------------------------------------------------------------------------------
# fake hosts: own loss, GPA, two parameter groups
# ------------------------------------------------------------------------------------------------------------
def test_extra_loss_host_checkpoints_keep_host_names_and_resume_exactly(data: Path, tmp_path: Path,
                                                                       hosts: dict) -> None:
    from quantprompt.results import run_size

    cls = hosts["QKgLike"]
    run = tmp_path / "train"
    trainer, built = make(cls, cfg_for(data, "QKgLike", run, "OPTIM.MAX_EPOCH", "3"))
    assert "QPrompt: 1-bit qat on 1 trained tensors (" in built
    log = quietly(trainer.train)
    (run / "log.txt").write_text(log)
    ctx = trainer.model.prompt_learner.ctx.detach()
    assert ctx.unique().numel() <= 2  # 1 bit: two values
    sd = state(run / "prompt_learner" / "model.pth.tar-3")
    assert torch.equal(sd["ctx"], ctx)  # the host's name holds the values the model uses
    assert sd["ctx"].unique().numel() <= 2 and not torch.equal(sd["ctx.qprompt_latent"], sd["ctx"])
    assert {k for k in sd if not k.startswith("ctx.qprompt_quantizer.")} == {"ctx", "ctx.qprompt_latent"}
    qpt = run / "prompt_learner" / "model.qpt-3"
    assert f"Packed prompt saved to {qpt}" in log and qpt.is_file()
    size, problem = run_size(run, "QKgLike")
    assert problem is None and size.source == "qpt" and size.payload_bytes == quant.size_report(qpt.read_bytes())[
        "payload_bytes"]
    assert re.search(r"^Storage of learned parameters \(packed \.qpt\): \d+ bytes payload", log, re.M)
    # resume after epoch 1 of 3: the same final checkpoint and .qpt
    cut = tmp_path / "cut"
    (cut / "prompt_learner").mkdir(parents=True)
    shutil.copy(run / "prompt_learner" / "model.pth.tar-1", cut / "prompt_learner" / "model.pth.tar-1")
    (cut / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    resumed, _ = make(cls, cfg_for(data, "QKgLike", cut, "OPTIM.MAX_EPOCH", "3"))
    assert "(will resume training)" in quietly(resumed.train)
    assert (cut / "prompt_learner" / "model.qpt-3").read_bytes() == qpt.read_bytes()
    again = state(cut / "prompt_learner" / "model.pth.tar-3")
    assert all(torch.equal(again[k], sd[k]) for k in sd)


def test_eval_only_on_new_classes_from_qpt_equals_checkpoint(data: Path, tmp_path: Path, hosts: dict) -> None:
    cls = hosts["QKgLike"]
    run = tmp_path / "train"
    trainer, _ = make(cls, cfg_for(data, "QKgLike", run, "OPTIM.MAX_EPOCH", "2"))
    quietly(trainer.train)
    out = {}
    for flag in ("False", "True"):
        t, _ = make(cls, cfg_for(data, "QKgLike", tmp_path / flag, "TEST.LOAD_QPT", flag, sub="new"))
        text = quietly(t.load_model, str(run), 2)
        out[flag] = (logits(t), text)
    assert 'Loading packed prompt from "' in out["True"][1] and "model.qpt-2" in out["True"][1]
    assert torch.equal(out["False"][0], out["True"][0])


def test_gpa_reload_refits_codebook_and_matches_qpt(data: Path, tmp_path: Path, hosts: dict) -> None:
    cls = hosts["QSrcLike"]
    run = tmp_path / "train"
    trainer, _ = make(cls, cfg_for(data, "QSrcLike", run, "OPTIM.MAX_EPOCH", "3"))
    log = quietly(trainer.train)
    assert "Using GPA model for final inference..." in log
    assert ("QPrompt: prompt_learner.ctx: codebook fitted again to the loaded latent weights (averaged or edited "
            "state_dict)") in log
    learner = trainer.model.prompt_learner
    latent = learner.parametrizations.ctx.original.detach().clone()
    q = learner.parametrizations.ctx[0]
    assert torch.equal(learner.ctx, q.quantize(latent))
    centers = q.centers.clone()
    q.cluster_(latent)  # the codebook is K-Means of the averaged latent weights, not an average of codebooks
    assert torch.equal(q.centers, centers)
    evaluated = logits(trainer)
    # the packed .qpt of the last epoch reloads to exactly the evaluated prompt (the host averaged its frozen
    # CLIP weights too, as PromptSRC does, which moves their last bits: the logits agree to float precision) ...
    fresh, _ = make(cls, cfg_for(data, "QSrcLike", tmp_path / "qpt", "TEST.LOAD_QPT", "True"))
    quietly(fresh.load_model, str(run), 3)
    assert torch.equal(fresh.model.prompt_learner.ctx, learner.ctx)
    assert torch.allclose(logits(fresh), evaluated, rtol=0, atol=1e-4)
    # ... and so does the checkpoint, through the host's own load_model (token buffers dropped, strict=False)
    host, _ = make(cls, cfg_for(data, "QSrcLike", tmp_path / "ckpt"))
    assert "Loading weights to VLPromptLearner" in quietly(host.load_model, str(run), 3)
    assert torch.equal(logits(host), evaluated)


def test_two_parameter_groups(data: Path, tmp_path: Path, hosts: dict) -> None:
    trainer, _ = make(hosts["QTwoGroups"], cfg_for(data, "QTwoGroups", tmp_path, "OPTIM.MAX_EPOCH", "2",
                                                   "TRAINER.QPROMPT.CAC.RECLUSTER", "'always'", config="QCoCoOp"))
    quietly(trainer.train)
    stats = quant.stats(trainer.model)
    assert sorted(stats) == ["prompt_learner.ctx", "prompt_learner.meta_net.linear1.bias",
                             "prompt_learner.meta_net.linear1.weight", "prompt_learner.meta_net.linear2.bias",
                             "prompt_learner.meta_net.linear2.weight"]
    steps = {s["steps"] for s in stats.values()}
    assert steps == {trainer.num_batches * 2}  # one CAC check per optimizer step, for both groups
    lrs = [g["lr"] for g in trainer.optim.param_groups]
    assert lrs[1] == pytest.approx(lrs[0] * 0.5)
    blob = (tmp_path / "prompt_learner" / "model.qpt-2").read_bytes()
    assert sorted(quant.size_report(blob)["tensors"]) == sorted(stats)


def test_noise_mode_is_the_noise_baseline(data: Path, tmp_path: Path, hosts: dict) -> None:
    trainer, text = make(hosts["QKgLike"], cfg_for(data, "QKgLike", tmp_path, "TRAINER.QPROMPT.MODE", "'noise'",
                                                   "TRAINER.QPROMPT.NOISE_STD", "0.5", "OPTIM.MAX_EPOCH", "1"))
    assert "QPrompt: Gaussian noise (std 0.5) on 1 trained tensors" in text
    learner = trainer.model.prompt_learner
    learner.train()
    assert not torch.equal(learner.ctx, learner.ctx)  # fresh noise at every access in training mode
    learner.eval()
    assert torch.equal(learner.ctx, learner.parametrizations.ctx.original)
    log = quietly(trainer.train)
    assert "Storage of learned parameters (fp16)" in log and not list(tmp_path.rglob("*.qpt*"))


def test_older_checkpoint_layout_still_loads(data: Path, tmp_path: Path) -> None:
    """A QCoOp checkpoint written before the host-named keys (torch's ``parametrizations.ctx.original`` ...)."""
    import quantprompt.dassl_plugin as qp

    cls = qp.QCoOp
    run = tmp_path / "train"
    trainer, _ = make(cls, cfg_for(data, "QCoOp", run, "OPTIM.MAX_EPOCH", "1"))
    quietly(trainer.train)
    path = run / "prompt_learner" / "model.pth.tar-1"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt["state_dict"]
    old = {"parametrizations.ctx.original": sd["ctx.qprompt_latent"]}
    old.update({f"parametrizations.ctx.0.{k.rsplit('.', 1)[1]}": v for k, v in sd.items()
                if k.startswith("ctx.qprompt_quantizer.")})
    ckpt["state_dict"] = old
    torch.save(ckpt, path)
    fresh, _ = make(cls, cfg_for(data, "QCoOp", tmp_path / "eval", sub="base"))
    assert f'Loading weights to prompt_learner from "{path}"' in quietly(fresh.load_model, str(run), 1)
    assert torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    assert torch.equal(logits(fresh), logits(trainer))
