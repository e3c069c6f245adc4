"""The GPU path: every test here is marked ``cuda`` and skipped, with one line of reason, without a CUDA device.

``bash bench/gpu.sh`` runs them (``python -m pytest -m cuda``) on a lent GPU machine before the benchmarks.
What they check: every trainer trains two epochs through train.py with PREC fp16, amp and fp32; CUDA logits
equal CPU fp32 logits within the tolerances of tests/test_precision.py; K-Means on CUDA equals the CPU result;
the truncated text encoder equals the full 77-position one in fp16; P4Q calibrates, trains and exports on CUDA
and the export reloads on the CPU with the same predictions; engine checkpoints written on CUDA resume on the CPU
and the other way round.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import trainrun  # noqa: E402  (tests/trainrun.py)

from quantprompt import clip as qclip  # noqa: E402
from quantprompt import prompting, quant  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("one_thread")]

MODELS = ("zsclip", "coop", "noisecoop", "qcoop", "cocoop", "qcocoop", "maple", "qmaple", "p4q")
CLASSNAMES = ["cat", "dog", "red car", "tree"]
#: CUDA vs CPU, fraction of max |logits_cpu_fp32|: fp32 1e-3 (kernels sum in another order); fp16 as in
#: tests/test_precision.py (2.5 %); P4Q's quantized activations 10 % (see tests/test_precision.py)
LOGIT_TOLERANCE = {"fp32": 1e-3, "fp16": 0.025}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("cuda") / "data"
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    return root


def _images(device: str = "cpu") -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)


def _build(name: str, precision: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    opts: dict = {} if name == "zsclip" else {"n_ctx": 4, "ctx_init": "a photo of a"}
    model = prompting.build(name, qclip.tiny(seed=0).to(device), CLASSNAMES, precision=precision, **opts)
    if name == "p4q":
        model.calibrate([_images(device)])
    return model.eval()


# ---------------------------------------------------------------------------------------- train.py on CUDA
#: ZeroshotCLIP has no PREC (CLIP runs in fp16): one run
RUNS = [(t, p) for t in trainrun.TRAINERS for p in ("fp16", "amp", "fp32") if t != "ZeroshotCLIP" or p == "fp16"]


@pytest.mark.parametrize("trainer,prec", RUNS)
def test_train_py_two_epochs_on_cuda(data: Path, tmp_path: Path, trainer: str, prec: str) -> None:
    out = tmp_path / "run"
    log = trainrun.run(trainrun.argv(data, trainer, out, "OPTIM.MAX_EPOCH", "2",
                                     *trainrun.prec_opts(trainer, prec)))
    trainrun.accuracy(log)
    if trainer == "ZeroshotCLIP":
        return
    assert "epoch [2/2]" in log
    state = trainrun.checkpoint(out, trainer, 2)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    ctx = state[trainrun.CTX_KEYS[trainer]]
    assert ctx.dtype == (torch.float16 if prec == "fp16" else torch.float32)  # fp16 ran in half, amp in fp32
    if trainer in trainrun.PACKED:
        folder = trainrun.MODEL_FOLDERS.get(trainer, "prompt_learner")
        assert (out / folder / "model.qpt-2").is_file()


# ------------------------------------------------------------------------------------- CUDA vs CPU numbers
@pytest.fixture
def no_tf32() -> Iterator[None]:
    """fp32 on CUDA means fp32: cuDNN convolutions (CLIP's patch embedding) default to TF32 on Ampere+."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    yield
    torch.backends.cudnn.allow_tf32 = conv
    torch.set_float32_matmul_precision(matmul)


@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", MODELS)
def test_cuda_logits_equal_cpu_fp32_logits(name: str, precision: str) -> None:
    ref = _build(name, "fp32", "cpu")
    model = _build(name, precision, "cuda")
    with torch.no_grad():
        expected = ref(_images()).float()
        got = model(_images("cuda")).float().cpu()
    tol = 0.10 if name == "p4q" else LOGIT_TOLERANCE[precision]
    err = float((got - expected).abs().max() / expected.abs().max())
    assert err <= tol, f"{name} {precision}: CUDA logits differ by {err:.4f} of max |logit| (tolerance {tol})"


@pytest.mark.parametrize("k", [2, 4, 16])
@pytest.mark.parametrize("n", [2048, 100_000])
def test_kmeans_on_cuda_equals_cpu(n: int, k: int) -> None:
    """Up to 2^16 values CUDA input is clustered on the CPU (identical by construction); above, both devices
    sort and run the same exact Lloyd, so they agree up to float64 prefix sums summed in another order."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(n + k))
    c_cpu, idx_cpu = quant.kmeans_1d(x, k, seed=0)
    c_gpu, idx_gpu = quant.kmeans_1d(x.cuda(), k, seed=0)
    assert c_gpu.is_cuda and idx_gpu.is_cuda
    torch.testing.assert_close(c_gpu.cpu(), c_cpu, rtol=1e-5, atol=1e-6)
    same = float((idx_gpu.cpu() == idx_cpu).float().mean())
    assert same >= 0.9999, f"{(1 - same) * n:.0f} of {n} assignments differ"  # values at a midpoint only


@pytest.mark.parametrize("k", [2, 16])
def test_kmeans_on_cuda_matches_cpu_on_qmaple_sized_input(k: int) -> None:
    """3.5 M values (QMaPLe's prompts): the CPU bins instead of sorting (quantprompt/quant/kmeans.py), CUDA
    sorts; both end in an exact Lloyd fixed point, so the objective agrees within 1e-5 and the centers closely."""
    x = torch.randn(3_500_000, generator=torch.Generator().manual_seed(k)) * 0.02
    c_cpu, _ = quant.kmeans_1d(x, k, seed=0)
    c_gpu, _ = quant.kmeans_1d(x.cuda(), k, seed=0)
    ratio = quant.inertia_1d(x, c_gpu.cpu()) / quant.inertia_1d(x, c_cpu)
    assert abs(ratio - 1.0) <= 1e-5, ratio
    torch.testing.assert_close(c_gpu.cpu(), c_cpu, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["zsclip", "coop", "cocoop", "maple", "qcoop"])
def test_truncated_text_encoder_equals_full_77_in_fp16(name: str) -> None:
    model = _build(name, "fp16", "cuda")
    images = _images("cuda")
    outputs = []
    for truncate in (True, False):
        model.text_encoder.truncate = truncate
        model.invalidate_cache()
        with torch.no_grad():
            outputs.append(model(images).float())
    cut, full = outputs
    # fp16 (11 bits): features summed in another order differ by a few 1e-4, a logit (100 x cosine) by up to
    # ~0.1, under 1 % of max |logit|; a wrong mask or position moves logits by ~1 and more
    err = float((cut - full).abs().max() / full.abs().max())
    assert err <= 1e-2, f"{name}: truncated and 77-position logits differ by {err:.4f} of max |logit|"


# ------------------------------------------------------------------------------------------ P4Q on CUDA
def test_p4q_trained_on_cuda_reloads_on_cpu_with_the_same_predictions(data: Path, tmp_path: Path) -> None:
    from quantprompt.engine.compat import build_trainer
    from quantprompt.p4q.export import load_p4q

    out = tmp_path / "p4q"
    opts = ("OPTIM.MAX_EPOCH", "2", "TRAINER.P4Q.EXPORT", "True")
    log = trainrun.run(trainrun.argv(data, "P4Q", out, *opts))
    assert "P4Q: PTQ calibrated" in log and "P4Q export saved to" in log
    trainer = build_trainer(trainrun.cfg_for(trainrun.argv(data, "P4Q", tmp_path / "probe", *opts)))
    assert trainer.device.type == "cuda"
    trainer.load_model(str(out), epoch=2)
    trainer.set_model_mode("eval")
    batch = next(iter(trainer.test_loader))
    with torch.no_grad():
        on_cuda = trainer.model(batch["img"].cuda()).float().cpu()
        loaded = load_p4q(out / "model.p4q.safetensors", device="cpu")
        on_cpu = loaded(batch["img"]).float()
    # the integer layers compute exactly on both devices; the float parts (LayerNorm, attention, GELU) round
    # differently, which can move an activation across a grid step: logits within 10 % (tests/test_precision.py)
    diff = float((on_cuda - on_cpu).abs().max())
    assert diff <= 0.10 * float(on_cpu.abs().max())
    # the same prediction wherever the CPU's top-2 margin exceeds twice the largest logit difference
    top2 = on_cpu.topk(2, dim=1).values
    decisive = (top2[:, 0] - top2[:, 1]) > 2 * diff
    assert decisive.any(), "no test image with a clear prediction: the comparison would say nothing"
    assert torch.equal(on_cuda.argmax(1)[decisive], on_cpu.argmax(1)[decisive])


# ------------------------------------------------------------------------- checkpoints across devices
def _cut_back(src: Path, dst: Path, folder: str = "prompt_learner") -> None:
    """The output folder of a run killed right after epoch 1."""
    (dst / folder).mkdir(parents=True)
    shutil.copy(src / folder / "model.pth.tar-1", dst / folder / "model.pth.tar-1")
    (dst / folder / "checkpoint").write_text("model.pth.tar-1\n")


@pytest.mark.parametrize("first,then", [("True", "False"), ("False", "True")])
def test_checkpoint_resumes_across_devices(data: Path, tmp_path: Path, first: str, then: str) -> None:
    """USE_CUDA True/False: written on one device, resumed on the other, ends where an uninterrupted run on
    the second device ends (within float tolerance: CUDA and CPU kernels round differently)."""
    opts = ("OPTIM.MAX_EPOCH", "2")
    start = tmp_path / "start"
    trainrun.run(trainrun.argv(data, "QCoOp", start, *opts, "USE_CUDA", first))
    cut = tmp_path / "cut"
    _cut_back(start, cut)
    log = trainrun.run(trainrun.argv(data, "QCoOp", cut, *opts, "USE_CUDA", then, extra=("--resume", str(cut))))
    assert "Found checkpoint at" in log and "epoch [2/2]" in log and "epoch [1/2]" not in log
    whole = tmp_path / "whole"
    trainrun.run(trainrun.argv(data, "QCoOp", whole, *opts, "USE_CUDA", then))
    a, b = trainrun.checkpoint(cut, "QCoOp", 2), trainrun.checkpoint(whole, "QCoOp", 2)
    assert a.keys() == b.keys()
    latent = trainrun.CTX_KEYS["QCoOp"]
    # epoch 2 moves the latent by ~40 % of its norm: a resume that lost the optimizer or quantizer state would
    # be that far off, CUDA-vs-CPU rounding is ~1e-6
    assert trainrun.relative_difference(a[latent], b[latent]) <= 1e-3
    assert (cut / "prompt_learner" / "model.qpt-2").is_file()

