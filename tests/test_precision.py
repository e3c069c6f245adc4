"""Half precision on every commit: every model and trainer in fp16 and under amp, on the CPU.

Users train with ``PREC fp16`` or ``amp`` on GPUs; CI has none. torch computes half on the CPU, and
``QUANTPROMPT_CPU_HALF=1`` (quantprompt/clip/precision.py) keeps ``fp16`` there instead of promoting it to fp32,
so the precision users run is exercised here, on the tiny CLIP, against the fp32 run from the same init.

Modes: ``fp16`` (CLIP's weights in half, OpenAI's ``convert_weights``), ``amp-bf16`` (fp32 weights, CPU autocast
in bfloat16: what ``PREC amp`` does on a CPU) and ``amp-fp16`` (CPU autocast in float16: the arithmetic of
``PREC amp`` on CUDA). Stated tolerances, with the worst values measured on the tiny CLIP in brackets:

* logits: max |logits - logits_fp32| <= 2.5 % of max |logits_fp32| in fp16 (0.5 %; P4Q, whose weights sit on
  an 8-bit grid, 1.6 %), 1.5 % under amp-fp16 (0.4 %), 5 % under amp-bf16 (2.3 %; bfloat16 keeps 8 mantissa
  bits, fp16 11);
* gradients of the learned tensors: cosine with the fp32 gradient >= 0.999 in fp16 / amp-fp16 (0.9996), >= 0.99
  under amp-bf16 (0.996);
* P4Q with its activations quantized is the exception: every activation is rounded to a 255-level grid, and a
  half-precision difference that moves one across a rounding boundary changes it by a whole step, so its logits
  agree within 10 % (3.5 %) and its gradients with cosine >= 0.5 (0.84 in fp16); with the activation quantizers
  off it meets the tolerances above.

Where the quantizer depends on half rounding: K-Means, the CAC statistics, the indices and the packed bytes are
computed from the fp32 copy of the latent tensor and the codebook is stored in fp16 in every mode, so for the same
latent values they are bit-identical whatever precision the model runs in (tested). Under ``PREC fp16`` the
latent itself is fp16 (CoOp keeps the context in CLIP's dtype), so it is the fp32 init rounded to fp16 and the
optimizer's updates are rounded: codebooks move by about one fp16 rounding and an index flips where a latent value
sits within that distance of a decision midpoint (tested: >= 99 % of the indices agree). The storage claim, b
bits per weight plus 2^b fp16 centers, holds in every mode (tested: the .qpt has the same size and reloads into an
fp32 model bit for bit).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

import trainrun  # noqa: E402  (tests/trainrun.py)

from quantprompt import clip as qclip  # noqa: E402
from quantprompt import prompting, quant  # noqa: E402
from quantprompt.clip.precision import ENV_CPU_HALF, cpu_half_enabled  # noqa: E402

MODELS = ("zsclip", "coop", "noisecoop", "qcoop", "cocoop", "qcocoop", "maple", "qmaple", "p4q")
QUANTIZED = ("qcoop", "qcocoop", "qmaple", "p4q")
#: mode -> (precision passed to the model, autocast dtype or None)
MODES = {"fp16": ("fp16", None), "amp-bf16": ("amp", torch.bfloat16), "amp-fp16": ("amp", torch.float16)}
#: mode -> (logit tolerance as a fraction of max |logits_fp32|, minimum gradient cosine)
TOLERANCE = {"fp16": (0.025, 0.999), "amp-bf16": (0.05, 0.99), "amp-fp16": (0.015, 0.999)}
P4Q_QUANT_ACT_TOLERANCE = (0.10, 0.5)
CLASSNAMES = ["cat", "dog", "red car", "tree"]

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_half")  # one_thread: tests/conftest.py


@pytest.fixture
def cpu_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CPU_HALF, "1")


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.arange(4)


def _build(name: str, precision: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)  # the same init (and noise draws) in every mode
    opts: dict = {} if name == "zsclip" else {"n_ctx": 4, "ctx_init": "a photo of a"}
    if name.startswith("q"):
        opts["bits"] = 2
    opts.update(extra)
    model = prompting.build(name, qclip.tiny(seed=0), CLASSNAMES, precision=precision, **opts)
    if name == "p4q":
        model.calibrate([_images()[0]])
    return model


def _autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _forward_backward(model: torch.nn.Module, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32 copy) and the concatenated gradients of the learned tensors (empty for zero-shot)."""
    images, labels = _images()
    learned = list(model.trainable_parameters()) if hasattr(model, "trainable_parameters") else []
    if not learned:
        model.eval()
        with torch.no_grad(), _autocast(dtype):
            return model(images).float(), torch.zeros(0)
    model.train()
    with _autocast(dtype):
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in learned])
    return logits.detach().float(), grads


_REFERENCE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _reference(name: str, act_mode: str = "quant") -> tuple[torch.Tensor, torch.Tensor]:
    """The fp32 run of ``name`` (computed once per module)."""
    key = (name, act_mode)
    if key not in _REFERENCE:
        model = _build(name, "fp32")
        if name == "p4q":
            model.set_activation_mode(act_mode)
        _REFERENCE[key] = _forward_backward(model, None)
    return _REFERENCE[key]


def _compare(name: str, mode: str, act_mode: str, tolerance: tuple[float, float]) -> None:
    precision, dtype = MODES[mode]
    ref_logits, ref_grads = _reference(name, act_mode)
    model = _build(name, precision)
    if name == "p4q":
        model.set_activation_mode(act_mode)
    assert model.precision == precision  # fp16 stayed fp16 on the CPU
    logits, grads = _forward_backward(model, dtype)
    assert torch.isfinite(logits).all() and torch.isfinite(grads).all()
    rel, min_cos = tolerance
    err = float((logits - ref_logits).abs().max() / ref_logits.abs().max())
    assert err <= rel, f"{name} {mode}: logits differ by {err:.4f} of max |logit| (tolerance {rel})"
    if ref_grads.numel():
        cos = float(F.cosine_similarity(grads, ref_grads, dim=0))
        assert cos >= min_cos, f"{name} {mode}: gradient cosine {cos:.5f} < {min_cos}"
    # the evaluation cache: eval logits served from it equal recomputed ones, in this precision
    images, _ = _images()
    model.eval()
    cache = model._text_cache
    with torch.no_grad(), _autocast(dtype):
        first = model(images)
        hits = cache.hits
        cached = model(images)
        model.invalidate_cache()
        recomputed = model(images)
    assert torch.isfinite(first).all()
    assert torch.equal(first, cached) and torch.equal(first, recomputed)
    assert cache.hits == hits + (name in prompting.CACHED_MODELS)


# -------------------------------------------------------------------------------------------------- the switch
def test_cpu_half_switch_keeps_fp16_and_default_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _build("coop", "fp16")
    assert model.precision == "fp16" and model.prompt_learner.ctx.dtype == torch.float16
    assert model.image_encoder.conv1.weight.dtype == torch.float16
    monkeypatch.delenv(ENV_CPU_HALF)
    with pytest.warns(UserWarning, match="promoted to fp32"):
        promoted = _build("coop", "fp16")
    assert promoted.precision == "fp32" and promoted.prompt_learner.ctx.dtype == torch.float32
    clip_model, _ = qclip.load("tiny-vit", device="cpu", precision="fp16")
    assert clip_model.visual.conv1.weight.dtype == torch.float32  # qclip.load promotes too (with a log line)
    monkeypatch.setenv(ENV_CPU_HALF, "1")
    clip_model, _ = qclip.load("tiny-vit", device="cpu", precision="fp16")
    assert clip_model.visual.conv1.weight.dtype == torch.float16


@pytest.mark.parametrize("value", ["yes", "2", "true"])
def test_cpu_half_switch_rejects_other_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV_CPU_HALF, value)
    with pytest.raises(ValueError, match=rf"QUANTPROMPT_CPU_HALF='{value}' must be 1 .* or 0 / unset"):
        cpu_half_enabled()
    monkeypatch.setenv(ENV_CPU_HALF, "0")
    assert cpu_half_enabled() is False


# ------------------------------------------------------------------------------------ forward and backward
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_matches_fp32(name: str, mode: str) -> None:
    act_mode = "off" if name == "p4q" else "quant"  # P4Q's quantized activations: the next test
    _compare(name, mode, act_mode, TOLERANCE[mode])


@pytest.mark.parametrize("mode", list(MODES))
def test_p4q_quantized_activations_match_fp32_loosely(mode: str) -> None:
    """The exception stated in the module doc; fp16 autocast used to overflow P4Q's integer sums (NaN)."""
    _compare("p4q", mode, "quant", P4Q_QUANT_ACT_TOLERANCE)


# ----------------------------------------------------------------------- quantizer step, cache and export
def _latent(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The latent parameter behind quantized tensor ``name`` (``a.b.w`` -> ``a.b.parametrizations.w.original``)."""
    owner, _, attr = name.rpartition(".")
    return model.get_submodule(owner).parametrizations[attr].original


def _quantized_value(model: torch.nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    with torch.no_grad():
        return getattr(model.get_submodule(owner), attr).detach()


def _sgd_step(model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    _forward_backward(model, dtype)
    torch.optim.SGD(model.trainable_parameters(), lr=0.5).step()
    model.zero_grad(set_to_none=True)


def _quantizer_step(model: torch.nn.Module, recluster: str) -> dict:
    """One ``quant.step``: "always" forces K-Means; "cac" is the paper's check (every step here, KL and error
    conditions on), which re-clusters or not from the same statistics in every precision."""
    for q in quant.quantizers(model).values():
        q.cfg.recluster = recluster
        q.cfg.interval = 1
    return quant.step(model) or {}


def _comparable(info: dict) -> dict:
    return {name: {k: v for k, v in item.items() if k != "centers"} for name, item in info.items()}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", QUANTIZED)
def test_quantizer_does_not_depend_on_the_model_precision(name: str, mode: str) -> None:
    """Same latent values -> bit-identical K-Means codebooks, CAC statistics and decisions, indices and packed
    bytes, whatever precision the model runs in (the half model trains; an fp32 model is given its latents)."""
    precision, dtype = MODES[mode]
    half, full = _build(name, precision), _build(name, "fp32")
    names = list(quant.quantizers(half))
    # the fp32 model starts from the half model's quantizer state (centers warm-start K-Means)
    for key in names:
        quant.quantizers(full)[key].load_state_dict(quant.quantizers(half)[key].state_dict())
    if precision == "fp16" and name != "p4q":  # CoOp keeps its context in CLIP's dtype; P4Q's learner is fp32
        assert _latent(half, "prompt_learner.ctx").dtype == torch.float16
    for recluster in ("always", "cac"):
        _sgd_step(half, dtype)
        with torch.no_grad():
            for key in names:
                assert torch.isfinite(_latent(half, key)).all(), key
                _latent(full, key).copy_(_latent(half, key).float())
        info_half, info_full = _quantizer_step(half, recluster), _quantizer_step(full, recluster)
        assert info_half and all(item["checked"] for item in info_half.values()), info_half
        if recluster == "always":
            assert all(item["reclustered"] for item in info_half.values()), info_half
        assert _comparable(info_half) == _comparable(info_full)  # KL, error, decision: the same numbers
        for key in names:
            q_half, q_full = quant.quantizers(half)[key], quant.quantizers(full)[key]
            assert torch.equal(q_half.centers, q_full.centers), key
            idx_half, book_half = q_half.encode(_latent(half, key).detach())
            idx_full, book_full = q_full.encode(_latent(full, key).detach())
            assert torch.equal(idx_half, idx_full) and torch.equal(book_half, book_full), key
    blob = quant.export(half)
    assert blob == quant.export(full)
    # the .qpt restores the values the half model computes with, bit for bit, in a fresh fp32 model
    fresh = _build(name, "fp32")
    quant.load_into(fresh, blob)
    for key in names:
        assert torch.equal(_quantized_value(half, key).float(), _quantized_value(fresh, key)), key


@pytest.mark.parametrize("name", ["qcoop", "qmaple"])
def test_fp16_latent_moves_codebooks_by_a_rounding(name: str) -> None:
    """PREC fp16: the latent is the fp32 init rounded to fp16; K-Means on it moves the codebook by about one
    fp16 rounding and flips at most a few indices (those within that distance of a midpoint)."""
    half, full = _build(name, "fp16"), _build(name, "fp32")
    total = same = 0
    for key, q_half in quant.quantizers(half).items():
        q_full = quant.quantizers(full)[key]
        assert torch.allclose(q_half.centers, q_full.centers, rtol=0, atol=5e-3), key  # normalized units
        idx_half, _ = q_half.encode(_latent(half, key).detach())
        idx_full, _ = q_full.encode(_latent(full, key).detach())
        total += idx_half.numel()
        same += int((idx_half == idx_full).sum())
    assert same / total >= 0.99, f"{total - same} of {total} indices differ"
    # the storage claim (b bits per weight + 2^b fp16 centers) holds in every precision
    assert len(quant.export(half)) == len(quant.export(full))
    assert quant.size_report(half)["payload_bytes"] == quant.size_report(full)["payload_bytes"]


@pytest.mark.parametrize("mode", ["fp16", "amp-fp16", "amp-bf16"])
def test_straight_through_gradient_in_half(mode: str) -> None:
    """STE: the latent receives exactly the gradient of the quantized tensor, in the latent's dtype; under
    autocast the quantized value is the one computed without it."""
    precision, dtype = MODES[mode]
    model = _build("qcoop", precision)
    latent = _latent(model, "prompt_learner.ctx")
    plain = _quantized_value(model, "prompt_learner.ctx")
    with _autocast(dtype):
        value = model.prompt_learner.ctx
        assert torch.equal(value.detach(), plain) and value.dtype == latent.dtype
        weight = torch.linspace(-1, 1, value.numel()).reshape(value.shape)
        (value.float() * weight).sum().backward()
    assert latent.grad.dtype == latent.dtype
    assert torch.equal(latent.grad, weight.to(latent.dtype))


# ------------------------------------------------------------------------------------- trainers, train.py
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("precision") / "data"
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=8, seed=0)
    return root


#: one epoch of one step (2 classes x 2 shots, batch 4) at the config's learning rate (no warmup); the learned
#: tensors before and after it are saved as prompt snapshots
ONE_STEP = ("OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0", "TRAIN.SAVE_PROMPT_SNAPSHOTS", "True")
#: the step (after - before) of every learned tensor: cosine with the fp32 run's step >= 0.98 (measured worst:
#: 0.99); P4Q, whose activations are quantized (module doc), >= 0.5 (measured: 0.83). Under fp16, a step smaller
#: than ten fp16 roundings of the tensor is checked by distance instead (pure-fp16 SGD rounds most of it away).
STEP_COSINE = {"P4Q": 0.5}
STEP_COSINE_DEFAULT = 0.98


def _train(data: Path, trainer: str, out: Path, prec: str) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = trainrun.run(trainrun.argv(data, trainer, out, *ONE_STEP, *trainrun.prec_opts(trainer, prec)))
    promoted = [str(w.message) for w in caught if "promoted to fp32" in str(w.message)]
    assert not promoted, promoted  # QUANTPROMPT_CPU_HALF=1: fp16 stayed fp16
    return log


def _snapshot(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(str(out / "prompt_snapshots" / f"epoch-{epoch}.safetensors"))
    return {k: v.double() for k, v in tensors.items() if not k.endswith(".quantized")}


@pytest.mark.parametrize("trainer", list(trainrun.TRAINERS))
def test_trainer_in_fp16_and_amp_matches_fp32(data: Path, tmp_path: Path, trainer: str) -> None:
    """train.py with PREC fp16 and amp (bf16 autocast on the CPU) next to the fp32 run from the same seed."""
    if trainer == "ZeroshotCLIP":  # no PREC (CLIP in fp16), nothing learned; its logits: the model tests
        trainrun.accuracy(_train(data, trainer, tmp_path / "fp16", "fp16"))
        return
    logs = {prec: _train(data, trainer, tmp_path / prec, prec) for prec in ("fp32", "fp16", "amp")}
    for log in logs.values():
        trainrun.accuracy(log)  # trained and tested (through the evaluation cache where the model has one)
    ref_before, ref_after = _snapshot(tmp_path / "fp32", 0), _snapshot(tmp_path / "fp32", 1)
    want = STEP_COSINE.get(trainer, STEP_COSINE_DEFAULT)
    for prec in ("fp16", "amp"):
        before, after = _snapshot(tmp_path / prec, 0), _snapshot(tmp_path / prec, 1)
        assert after.keys() == ref_after.keys()
        for key, ref in ref_after.items():
            assert torch.isfinite(after[key]).all(), (prec, key)
            # the same init (fp16: rounded to half), then a step in the same direction
            assert trainrun.relative_difference(before[key], ref_before[key]) <= 1e-3, (prec, key)
            step, ref_step = after[key] - before[key], ref - ref_before[key]
            rounding = float(ref.norm()) * 2.0 ** -11  # fp16 keeps 11 significant bits
            if prec == "fp16" and float(ref_step.norm()) < 10 * rounding:
                # a step below fp16's resolution is mostly rounded away (pure-fp16 SGD, as in CoOp): the
                # result stays within the step plus a few roundings of the fp32 run's
                gap = float((after[key] - ref).norm())
                assert gap <= float(ref_step.norm()) + 4 * rounding, (prec, key, gap)
                continue
            cos = float(torch.nn.functional.cosine_similarity(step.flatten(), ref_step.flatten(), dim=0))
            assert cos >= want, f"{trainer} {prec} {key}: step cosine {cos:.4f} with fp32 < {want}"
        assert any(not torch.equal(after[k], ref_after[k]) for k in ref_after), \
            f"{trainer} {prec}: bit-identical to fp32, so {prec} did not take effect"
    ctx_key = trainrun.CTX_KEYS[trainer]
    assert trainrun.checkpoint(tmp_path / "fp16", trainer, 1)[ctx_key].dtype == torch.float16
    assert trainrun.checkpoint(tmp_path / "amp", trainer, 1)[ctx_key].dtype == torch.float32
    if trainer in trainrun.PACKED:
        folder = trainrun.MODEL_FOLDERS.get(trainer, "prompt_learner")
        assert all((tmp_path / prec / folder / "model.qpt-1").is_file() for prec in logs)
        payload = {prec: re.findall(r"packed \.qpt\): (\d+) bytes payload", log) for prec, log in logs.items()}
        assert payload["fp32"] and payload["fp16"] == payload["fp32"] == payload["amp"], payload  # same storage


def test_fp16_qcoop_evaluates_from_its_qpt(data: Path, tmp_path: Path) -> None:
    """A QCoOp trained in fp16 evaluates the same from its .qpt as from its checkpoint, in fp16."""
    out = tmp_path / "train"
    _train(data, "QCoOp", out, "fp16")
    common = ("--model-dir", str(out), "--load-epoch", "1", "--eval-only")
    opts = trainrun.prec_opts("QCoOp", "fp16")
    from_ckpt = trainrun.run(trainrun.argv(data, "QCoOp", tmp_path / "a", *opts, sub="new", extra=common))
    from_qpt = trainrun.run(trainrun.argv(data, "QCoOp", tmp_path / "b", *opts, "TEST.LOAD_QPT", "True",
                                          sub="new", extra=common))
    assert "model.qpt-1" in from_qpt and 'model.pth.tar-1"' in from_ckpt
    assert trainrun.accuracy(from_ckpt) == trainrun.accuracy(from_qpt)
