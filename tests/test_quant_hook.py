"""The quantizer hook: STE, normalization, codebook size, modes, targets, dtypes, state, noise, removal."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from quantprompt import quant
from quantprompt.quant import NoiseConfig, QuantConfig


class Prompt(nn.Module):
    def __init__(self, shape=(4, 512), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter(torch.randn(*shape, generator=g) * 0.02)


class Net(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.prompt_learner = Prompt(seed=seed)
        self.head = nn.Linear(512, 3)
        self.extra = nn.ParameterList([nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(2, 3, 4))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.prompt_learner.ctx.t()  # (n, 4)
        return self.head(h @ self.prompt_learner.ctx) + self.extra[0].sum() + self.extra[1].mean()


def test_ste_gradient_is_identity() -> None:
    m = Prompt()
    quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"]))
    g = torch.randn(4, 512)
    (m.ctx * g).sum().backward()
    assert torch.equal(m.parametrizations.ctx.original.grad, g)


def test_forward_formula_and_normalization_invariance() -> None:
    w = torch.randn(3, 100)
    a, b = Prompt((3, 100)), Prompt((3, 100))
    with torch.no_grad():
        a.ctx.copy_(w)
        b.ctx.copy_(w * 7.5 - 3.0)
    qa = quant.quantize_(a, QuantConfig(bits=3, targets=["ctx"]))["ctx"]
    qb = quant.quantize_(b, QuantConfig(bits=3, targets=["ctx"]))["ctx"]
    ia, _ = qa.encode(a.parametrizations.ctx.original)
    ib, _ = qb.encode(b.parametrizations.ctx.original)
    assert torch.equal(ia, ib)
    # W_q = fp16(sigma * c + mu)[nearest index of (W - mu) / sigma]
    mu, sd = w.mean(), w.std(correction=0)
    c = qa.centers[0]
    idx = ((w - mu) / sd).reshape(-1, 1).sub(c).abs().argmin(1)
    expect = (c * sd + mu).half().float()[idx].reshape(3, 100)
    assert torch.equal(a.ctx, expect)


@pytest.mark.parametrize("bits", range(1, 9))
def test_exactly_two_pow_b_values(bits: int) -> None:
    m = Prompt((8, 512), seed=bits)
    quant.quantize_(m, QuantConfig(bits=bits, targets=["ctx"]))
    assert m.ctx.unique().numel() == 2 ** bits


def test_per_row_codebooks() -> None:
    m = Prompt((4, 64))
    with torch.no_grad():
        m.ctx.mul_(torch.tensor([[1.0], [10.0], [100.0], [1000.0]]))
    q = quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"], per_row=True))["ctx"]
    assert q.centers.shape == (4, 4)
    for r in range(4):
        assert m.ctx[r].unique().numel() == 4
    assert len(set(m.ctx.unique().tolist())) == 16


def test_constant_tensor_and_no_norm() -> None:
    m = Prompt((2, 8))
    with torch.no_grad():
        m.ctx.fill_(0.5)
    quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"]))
    assert torch.equal(m.ctx, torch.full((2, 8), 0.5))
    quant.step(m)
    assert bool(torch.isfinite(m.ctx).all())
    n = Prompt((2, 8))
    q = quant.quantize_(n, QuantConfig(bits=1, targets=["ctx"], norm=False))["ctx"]
    w = n.parametrizations.ctx.original
    assert torch.equal(n.ctx, q.centers[0].half().float()[(w.reshape(-1, 1) - q.centers[0]).abs().argmin(1)]
                       .reshape(2, 8))


def test_modes_ptq_off_and_finalize() -> None:
    m = Prompt()
    w0 = m.ctx.detach().clone()
    quant.quantize_(m, QuantConfig(bits=1, targets=["ctx"], mode="ptq"))
    assert torch.equal(m.ctx, w0)  # identity while training
    assert quant.step(m)["ctx"]["reclustered"] is False
    with pytest.raises(ValueError, match="finalize_"):
        quant.export(m)
    info = quant.finalize_(m)
    assert info["ctx"]["active"] and m.ctx.unique().numel() == 2
    assert quant.finalize_(m) == {}  # idempotent
    o = Prompt()
    quant.quantize_(o, QuantConfig(targets=["ctx"], mode="off"))
    assert torch.equal(o.ctx, w0) and quant.finalize_(o) == {}
    q = Prompt()
    quant.quantize_(q, QuantConfig(targets=["ctx"], mode="qat"))
    before = q.ctx.detach().clone()
    assert quant.finalize_(q) == {} and torch.equal(q.ctx, before)


def test_targets_regex_errors_and_layers() -> None:
    net = Net()
    qs = quant.quantize_(net, QuantConfig(bits=2, targets=["prompt_learner.ctx", r"head\.(weight|bias)",
                                                          r"extra\.\d+"]))
    assert sorted(qs) == ["extra.0", "extra.1", "head.bias", "head.weight", "prompt_learner.ctx"]
    assert sorted(quant.quantizers(net)) == sorted(qs)
    assert net.head.weight.unique().numel() == 4 and net.extra[1].shape == (2, 3, 4)
    assert net.extra[1].unique().numel() == 4
    with pytest.raises(ValueError, match=r"'nope'.*prompt_learner\.ctx.*head\.weight"):
        quant.quantize_(net, QuantConfig(targets=["nope"]))
    with pytest.raises(ValueError, match="already quantized"):
        quant.quantize_(net, QuantConfig(targets=["head.bias"]))
    with pytest.raises(ValueError, match="bits"):
        QuantConfig(bits=9)
    with pytest.raises(ValueError, match="mode"):
        QuantConfig(mode="dynamic")
    with pytest.raises(ValueError, match="kl_threshold"):
        QuantConfig(kl_threshold=-1.0)
    x = torch.randn(5, 512)
    net(x).sum().backward()
    assert net.extra.parametrizations["1"].original.grad.shape == (2, 3, 4)


def test_optimizer_built_before_quantize_still_updates_the_parameter() -> None:
    m = Prompt()
    p = m.ctx
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    quant.quantize_(m, QuantConfig(targets=["ctx"]))
    assert m.parametrizations.ctx.original is p
    before = p.detach().clone()
    (m.ctx * torch.randn(4, 512)).sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), before)
    quant.remove_(m, bake=False)
    assert m.ctx is p and torch.equal(m.ctx.detach(), p.detach())


def test_remove_bake_and_drop() -> None:
    a, b = Prompt(), Prompt()
    quant.quantize_(a, QuantConfig(bits=1, targets=["ctx"]))
    quant.quantize_(b, QuantConfig(bits=1, targets=["ctx"]))
    qa = a.ctx.detach().clone()
    latent = b.parametrizations.ctx.original.detach().clone()
    assert quant.remove_(a, bake=True) == ["ctx"] and quant.remove_(b, bake=False) == ["ctx"]
    assert isinstance(a.ctx, nn.Parameter) and torch.equal(a.ctx.detach(), qa)
    assert torch.equal(b.ctx.detach(), latent)
    assert quant.quantizers(a) == {} and list(a.state_dict()) == ["ctx"]


def test_state_dict_roundtrip_and_deepcopy() -> None:
    net = Net()
    quant.quantize_(net, QuantConfig(bits=2, targets=["prompt_learner.ctx", "head.weight"]))
    quant.step(net)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    other = Net(seed=1)
    quant.quantize_(other, QuantConfig(bits=2, targets=["prompt_learner.ctx", "head.weight"]))
    other.load_state_dict(sd)
    x = torch.randn(3, 512)
    assert torch.equal(net(x), other(x))
    assert quant.stats(other)["prompt_learner.ctx"]["steps"] == 1
    twin = copy.deepcopy(net)
    assert torch.equal(twin(x), net(x))
    assert twin.prompt_learner.parametrizations.ctx.original is not net.prompt_learner.parametrizations.ctx.original


def test_fp16_parameter_and_autocast() -> None:
    m = Prompt()
    m.half()
    quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"]))
    assert m.ctx.dtype == torch.float16 and m.ctx.unique().numel() == 4
    (m.ctx.float() * 2).sum().backward()
    assert m.parametrizations.ctx.original.grad.dtype == torch.float16
    lin = nn.Linear(16, 4)
    quant.quantize_(lin, QuantConfig(bits=1, targets=["weight"]))
    ref = lin(torch.ones(2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lin(torch.ones(2, 16))
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), ref, atol=0.1)
    y.float().sum().backward()
    assert lin.parametrizations.weight.original.grad is not None


@pytest.mark.cuda
def test_cuda_path_matches_cpu() -> None:
    cpu = Prompt()
    gpu = copy.deepcopy(cpu).cuda()
    quant.quantize_(cpu, QuantConfig(bits=2, targets=["ctx"]))
    quant.quantize_(gpu, QuantConfig(bits=2, targets=["ctx"]))
    assert gpu.ctx.is_cuda and torch.equal(gpu.ctx.cpu(), cpu.ctx)
    with torch.autocast("cuda", dtype=torch.float16):
        (gpu.ctx @ gpu.ctx.t()).float().sum().backward()
    assert gpu.parametrizations.ctx.original.grad.is_cuda
    blob = quant.export(gpu)
    assert blob == quant.export(cpu)


def test_gaussian_noise_train_only() -> None:
    m = Prompt()
    w = m.ctx.detach().clone()
    quant.add_noise_(m, NoiseConfig(std=0.01, targets=["ctx"]))
    torch.manual_seed(0)
    noisy = m.ctx.detach().clone()
    assert not torch.equal(noisy, w)
    assert 0.008 < float((noisy - w).std()) < 0.012
    m.eval()
    assert torch.equal(m.ctx, w)
    m.train()
    g = torch.randn(4, 512)
    (m.ctx * g).sum().backward()
    assert torch.equal(m.parametrizations.ctx.original.grad, g)
    assert list(quant.noise_modules(m)) == ["ctx"]
    quant.remove_(m)
    assert torch.equal(m.ctx.detach(), w)
    with pytest.raises(ValueError, match="std"):
        NoiseConfig(std=-1)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, quantprompt.quant; bad = [m for m in ('sklearn', 'clip', 'yacs', 'dassl', "
            "'quantprompt.prompting', 'quantprompt.clip') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
