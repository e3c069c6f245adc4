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
    with pytest.raises(ExportFormatError, match=r"flipped\.safetensors: damaged P4Q export \(sha256 mismatch"):
        load_p4q(flipped)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ExportFormatError, match=r"truncated\.safetensors: damaged P4Q export \(truncated"):
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
    assert "bad.safetensors: damaged P4Q export (sha256 mismatch" in capsys.readouterr().err


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


def test_int8_kernels_compute_the_simulated_model_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated model computes every quantized layer in the int8 kernel's own arithmetic on the grid the
    kernel computes exactly (127 levels: exact with and without VNNI): one FBGEMM layer returns its values bit
    for bit (stated tolerance: none), inputs beyond the calibrated range included."""
    from quantprompt.p4q import fakequant
    from quantprompt.p4q.backend import int8_linear
    from quantprompt.p4q.fakequant import ActQuant, integer_linear, weight_codes, weight_scale

    gen = torch.Generator().manual_seed(0)
    for n_in, n_out in ((256, 64), (3072, 96)):  # 3072: the width of ViT-B's MLP output layer
        w = torch.randn(n_out, n_in, generator=gen) * 0.05
        b = torch.randn(n_out, generator=gen) * 0.1
        act = ActQuant(8, reduce_range=True)
        act.set_range(-3.0, 2.5)
        x = torch.randn(32, n_in, generator=gen) * 1.5  # some inputs beyond the range: clamped like the kernel
        scale = weight_scale(w, 8)
        expected = integer_linear(x, act, weight_codes(w, scale, 8), scale, b)
        assert torch.equal(int8_linear(w, scale, b, act)(x), expected)
    # sums beyond fp32's exact integers (2^24: large codes of one sign) take the fp64 path; an fp32 sum would
    # round them differently from the kernel's int32 on about half of the outputs
    w = 0.04 + 0.01 * torch.rand(64, 4096, generator=gen)
    act = ActQuant(8, reduce_range=True)
    act.set_range(-3.0, 2.5)
    x = 2.0 + 0.5 * torch.rand(32, 4096, generator=gen)
    scale = weight_scale(w, 8)
    codes = weight_codes(w, scale, 8)
    kernel = int8_linear(w, scale, None, act)(x)
    assert torch.equal(kernel, integer_linear(x, act, codes, scale, None))
    monkeypatch.setattr(fakequant, "EXACT_FP32_SUM", float("inf"))  # force the fp32 sum
    assert not torch.equal(kernel, integer_linear(x, act, codes, scale, None))
    monkeypatch.undo()


@pytest.mark.parametrize("act_range", ["reduced", "full"])
def test_the_int8_image_encoder_is_the_simulated_model_bit_for_bit_on_each_grid(act_range: str) -> None:
    """The whole int8 image encoder returns the simulated model's values bit for bit (stated tolerance: none) on
    each activation grid this CPU's kernel computes exactly: the 127-level grid everywhere, the 255-level grid
    with VNNI. Without VNNI the 255-level model is refused instead (the kernel would saturate)."""
    from quantprompt.p4q.backend import Int8ResidualBlock, int8_image_encoder, kernel_levels

    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4,
                            act_range=act_range)
    model.calibrate([images(8, 2)], "mse")
    model.eval()
    if act_range == "full" and kernel_levels() < 255:
        with pytest.raises(ValueError, match="activations on 255 levels"):
            int8_image_encoder(model)
        return
    x = images(6, 9)
    encoder = int8_image_encoder(model)
    blocks = encoder.visual.transformer.resblocks
    assert len(blocks) > 0 and all(isinstance(b, Int8ResidualBlock) for b in blocks)  # the in-place form runs
    with torch.no_grad():
        expected = model.encode_image(x)
        given = x.clone()
        got = encoder(x)
    assert torch.equal(x, given)  # in place on its own temporaries only, never on the caller's images
    assert torch.equal(got, expected), (got - expected).abs().max()
    # the clamp-in-place entry point computes forward's values; forward leaves its input alone. consume clamps
    # its input in place on the 127-level grid (inputs beyond the calibrated range); on the 255-level grid the
    # kernel's own quantization saturates and there is nothing to clamp, so the input is left as it was
    layer = blocks[0].c_fc
    h = torch.randn(2, 5, layer.in_features, generator=torch.Generator().manual_seed(1)) * 4
    kept = h.clone()
    out = layer(h)
    assert torch.equal(h, kept) and torch.equal(layer.consume(h), out)
    assert torch.equal(h, kept) == (layer.levels == 255)


def test_the_int8_backend_refuses_a_model_whose_encoder_stays_in_full_precision() -> None:
    from quantprompt.p4q.backend import int8_image_encoder

    with pytest.raises(ValueError, match="keeps it in full precision"):
        int8_image_encoder(prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32",
                                           prompt_bits=4, fp_encoder="image"))


def test_int8_backend_refuses_a_grid_its_kernel_cannot_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an x86 CPU without VNNI FBGEMM computes 127 activation levels exactly: "auto" picks that grid, and a
    full 255-level model is refused instead of being rounded onto another grid."""
    from quantprompt.p4q import backend

    monkeypatch.setattr(backend, "kernel_levels", lambda: 127)
    assert backend.deployment_act_range(8) == "reduced" and backend.deployment_act_range(7) == "full"
    auto = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4)
    assert auto.act_range == "reduced" and {q.levels for q in auto.act_quants.values()} == {127}
    full = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4,
                           act_range="full")
    full.calibrate([images(4, 2)], "minmax")
    with pytest.raises(ValueError, match="activations on 255 levels.*act_range='reduced'"):
        backend.int8_image_encoder(full)
    monkeypatch.setattr(backend, "kernel_levels", lambda: 255)
    assert backend.deployment_act_range(8) == "full"
    with pytest.raises(ValueError, match="act_range='half' is not one of auto, full, reduced"):
        prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, act_range="half")


@pytest.mark.parametrize("act_range", ["full", "reduced"])
def test_the_activation_grid_round_trips_through_export(tmp_path: Path, act_range: str) -> None:
    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4,
                            act_range=act_range)
    model.calibrate([images(4, 2)], "minmax")
    model.eval()
    path = tmp_path / "m.p4q.safetensors"
    export_p4q(model, path)
    assert read_config(path)["options"]["act_range"] == act_range
    loaded = load_p4q(path)
    assert loaded.act_range == act_range
    assert {q.levels for q in loaded.act_quants.values()} == {255 if act_range == "full" else 127}
    x = images(4, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_an_export_without_a_recorded_grid_loads_on_the_full_grid(tmp_path: Path) -> None:
    """Files written before the activation grid was recorded were calibrated on the full grid."""
    from safetensors.torch import load_file, save_file

    from quantprompt.p4q.export import FORMAT, VERSION, _digest

    torch.manual_seed(0)
    model = prompting.build("p4q", qclip.tiny(seed=0), CLASSES, n_ctx=4, precision="fp32", prompt_bits=4,
                            act_range="full")
    model.calibrate([images(4, 2)], "minmax")
    path = tmp_path / "new.p4q.safetensors"
    export_p4q(model, path)
    config = read_config(path)
    del config["options"]["act_range"]
    text = json.dumps(config, sort_keys=True)
    tensors = load_file(str(path))
    old = tmp_path / "old.p4q.safetensors"
    save_file(tensors, str(old), metadata={"format": FORMAT, "version": VERSION, "config": text,
                                           "sha256": _digest(text, tensors)})
    loaded = load_p4q(old)
    assert loaded.act_range == "full" and {q.levels for q in loaded.act_quants.values()} == {255}
