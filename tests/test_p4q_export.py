"""P4Q export -> load round trip, corrupted files, ``quantprompt classify`` on an export, the int8 backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting
from quantprompt.p4q.export import ExportFormatError, export_p4q, load_p4q, read_config

CLASSES = ["cat", "dog", "car"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def trained(bits: int) -> torch.nn.Module:
    """A calibrated P4Q model whose learned tensors moved away from their initial values."""
    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, ctx_init="a photo of a",
                            precision="fp32", weight_bits=bits, prompt_bits=4)
    model.calibrate([images(8, 2)], "mse")
    opt = torch.optim.SGD(model.prompt_learner.parameters(), lr=0.5)
    model.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(images()), torch.tensor([0, 1, 2, 0, 1, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    folder = tmp_path_factory.mktemp("p4q_export")
    for bits in (8, 4):
        model = trained(bits)
        path = folder / f"w{bits}.p4q.safetensors"
        out[bits] = (model, path, export_p4q(model, path))
    torch.set_num_threads(old)
    return out


@pytest.mark.parametrize("bits", [8, 4])
def test_export_load_gives_the_simulated_logits(exports: dict, bits: int) -> None:
    model, path, info = exports[bits]
    loaded = load_p4q(path)
    x = images(6, 7)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    # stated tolerance: 1e-5 absolute on logits of magnitude ~10 (the loader restores the stored grids and
    # scales exactly, so in practice they are equal)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()
    assert info["file_bytes"] == path.stat().st_size


def test_the_file_holds_real_low_bit_weights(exports: dict) -> None:
    from safetensors.torch import load_file

    w8 = load_file(str(exports[8][1]))
    w4 = load_file(str(exports[4][1]))
    name = "visual.transformer.resblocks.0.attn.in_proj_weight"
    assert w8[name].dtype == torch.int8 and w8[name + ".scale"].dtype == torch.float32
    assert w4[name + ".packed"].dtype == torch.uint8 and name not in w4
    assert w4[name + ".packed"].numel() * 2 == w8[name].numel()  # two 4-bit codes per byte
    assert w8["token_embedding.weight"].dtype == torch.int8  # the large token table is quantized too
    assert w8["ln_final.weight"].dtype == torch.float32
    assert any(k.startswith("act.") for k in w8) and w8["learned.qpt"].dtype == torch.uint8
    assert w8[name].abs().max() <= 127 and int(w4[name + ".packed"].max()) <= 255
    fp32 = exports[8][2]["fp32_clip_bytes"]
    assert exports[4][2]["file_bytes"] < exports[8][2]["file_bytes"] < 0.3 * fp32
    config = read_config(exports[8][1])
    assert config["classnames"] == CLASSES and config["options"]["weight_bits"] == 8


def test_corrupted_exports_are_refused(exports: dict, tmp_path: Path) -> None:
    path = exports[8][1]
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    data[len(data) // 2] ^= 0x40
    flipped.write_bytes(bytes(data))
    with pytest.raises(ExportFormatError, match=r"flipped\.safetensors: sha256 mismatch"):
        load_p4q(flipped)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ExportFormatError, match=r"truncated\.safetensors is not a readable P4Q export"):
        load_p4q(truncated)
    other = tmp_path / "clip.safetensors"
    qclip.save_tiny(other)
    with pytest.raises(ExportFormatError, match=r"clip\.safetensors is not a P4Q export"):
        load_p4q(other)
    assert issubclass(ExportFormatError, ValueError)


def test_export_refuses_an_uncalibrated_model_and_leaves_no_file(tmp_path: Path) -> None:
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4)
    with pytest.raises(ValueError, match="not calibrated"):
        export_p4q(model, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_classify_accepts_an_export(exports: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from quantprompt import deploy
    from quantprompt.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    gen = torch.Generator().manual_seed(3)
    for i in range(3):
        pixels = (torch.rand(40, 40, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    model, path, _ = exports[8]
    assert main(["classify", "--prompt", str(path), "--json", "--topk", "2", str(folder)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(r["topk"][0]["class"] in CLASSES for r in rows)
    clf = deploy.Classifier(path)
    batch = torch.stack([clf.preprocess(Image.open(folder / f"{i}.png").convert("RGB")) for i in range(3)])
    with torch.no_grad():
        assert torch.allclose(clf.logits(batch), model(batch), atol=1e-5, rtol=0)
    # the same export on int8 kernels: same weights, activations quantized on the fly
    fast = deploy.Classifier(path, int8=True)
    with torch.no_grad():
        a = torch.nn.functional.normalize(fast.image_encoder(batch), dim=-1)
        b = torch.nn.functional.normalize(model.encode_image(batch), dim=-1)
    assert float((a * b).sum(-1).min()) > 0.99
    with pytest.raises(deploy.DeployError, match="8-bit weights; this model has 4-bit"):
        deploy.Classifier(exports[4][1], int8=True)
    with pytest.raises(deploy.DeployError, match="leave --clip out"):
        deploy.Classifier(path, clip="tiny-vit")
    assert main(["inspect", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file_bytes"] == path.stat().st_size and info["tensor_bytes"]["int8_codes"] > 0
    assert info["n_classes"] == 3 and info["options"]["weight_bits"] == 8
    bad = tmp_path / "bad.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    bad.write_bytes(bytes(data))
    assert main(["classify", "--prompt", str(bad), str(folder)]) == 2
    assert "bad.safetensors: sha256 mismatch" in capsys.readouterr().err


def test_int8_backend_uses_the_exported_codes(exports: dict) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from quantprompt.p4q.backend import int8_image_encoder
    from quantprompt.p4q.fakequant import weight_codes

    model = exports[8][0]
    enc = int8_image_encoder(model)
    layer = enc.visual.transformer.resblocks[0].attn.in_proj
    source = model.image_encoder.transformer.resblocks[0].attn.in_proj
    assert torch.equal(layer.qweight.int_repr(), weight_codes(source.weight, source.w_scale, 8))
    unpacked, bias = layer.packed.unpack()  # what FBGEMM holds after prepacking
    assert torch.equal(unpacked.int_repr(), layer.qweight.int_repr()) and torch.equal(bias, source.bias)
    dynamic = int8_image_encoder(model, dynamic=True).visual.transformer.resblocks[0].attn.in_proj
    assert isinstance(dynamic.inner, DynamicLinear)
    assert torch.equal(dynamic.inner._weight_bias()[0].int_repr(), layer.qweight.int_repr())


def test_int8_kernels_compute_the_simulated_model_exactly_on_their_grid() -> None:
    """With 7-bit activations (a grid every x86 int8 GEMM computes without saturation) an int8 layer equals the
    simulated layer up to float rounding, inputs outside the calibrated range included; a whole 24-layer
    encoder stays within rounding except where a value sits on a rounding boundary."""
    from quantprompt.p4q.backend import int8_image_encoder, int8_linear
    from quantprompt.p4q.fakequant import ActQuant, fake_quant_weight, weight_scale

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=gen) * 0.05
    act = ActQuant(7)
    act.set_range(-3.0, 2.5)
    x = torch.randn(32, 256, generator=gen) * 1.5  # some inputs beyond the range: clamped like the simulation
    expected = torch.nn.functional.linear(act.quantize(x), fake_quant_weight(w, weight_scale(w, 8), 8))
    assert torch.allclose(int8_linear(w, weight_scale(w, 8), None, act, 127)(x), expected, atol=1e-5, rtol=0)

    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4,
                            act_bits=7)
    model.calibrate([images(8, 2)], "minmax")
    model.eval()
    x = images(6, 9)
    with torch.no_grad():
        expected = model.encode_image(x)
        got = int8_image_encoder(model)(x)
    close = ((got - expected).abs() < 1e-4).float().mean()
    assert close > 0.75 and torch.nn.functional.cosine_similarity(got, expected).min() > 0.999, close
    with pytest.raises(ValueError, match="keeps it in full precision"):
        int8_image_encoder(prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32",
                                           prompt_bits=4, fp_encoder="image"))
