"""Constrained adaptive clustering: fires exactly when its enabled conditions hold; resume is exact."""

from __future__ import annotations

import io

import torch
from torch import nn

from quantprompt import quant
from quantprompt.quant import QuantConfig


class Prompt(nn.Module):
    def __init__(self, n: int = 1000, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter(torch.randn(1, n, generator=g))


def _set(m: Prompt, w: torch.Tensor) -> None:
    with torch.no_grad():
        m.parametrizations.ctx.original.copy_(w)


def _latent(m: Prompt) -> torch.Tensor:
    return m.parametrizations.ctx.original.detach().clone()


def test_interval_only() -> None:
    m = Prompt()
    quant.quantize_(m, QuantConfig(bits=1, targets=["ctx"], interval=3, kl_threshold=None,
                                   require_error_increase=False))
    fired = [quant.step(m)["ctx"]["reclustered"] for _ in range(9)]
    assert fired == [False, False, True] * 3


def test_kl_only() -> None:
    m = Prompt()
    quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"], interval=0, kl_threshold=0.01,
                                   require_error_increase=False))
    info = quant.step(m)["ctx"]
    assert not info["reclustered"] and info["kl"] < 1e-9  # same weights: same histogram
    w = _latent(m)
    _set(m, w.abs() ** 3)  # a very different shape: the index histogram moves
    info = quant.step(m)["ctx"]
    assert info["kl"] > 0.01 and info["reclustered"] and info["reclusters"] == 1
    info = quant.step(m)["ctx"]  # codebook now fitted to these weights
    assert info["kl"] < 1e-9 and not info["reclustered"]
    _set(m, _latent(m) * 1.001 + 0.0001)  # tiny change: normalization absorbs it
    info = quant.step(m)["ctx"]
    assert info["kl"] <= 0.01 and not info["reclustered"]


def test_error_increase_only() -> None:
    m = Prompt()
    q = quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"], interval=0, kl_threshold=None,
                                       require_error_increase=True))["ctx"]
    info = quant.step(m)["ctx"]
    assert info["error_before"] == info["ref_error"] and not info["reclustered"]  # equal is not an increase
    # move every weight onto its quantized value: error drops, no re-cluster
    _set(m, m.ctx.detach().clone())
    ref = float(q.ref_error)
    info = quant.step(m)["ctx"]
    assert info["error_before"] < ref / 10 and not info["reclustered"]
    # push weights away from the centers: error rises above the reference, re-cluster
    g = torch.Generator().manual_seed(1)
    _set(m, torch.randn(1, 1000, generator=g) ** 3)  # heavy tails: most values fall between the centers
    info = quant.step(m)["ctx"]
    assert info["error_before"] > ref and info["reclustered"]


def test_always_never_and_error_never_rises() -> None:
    m = Prompt()
    quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"], recluster="always"))
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        _set(m, _latent(m) + 0.3 * torch.randn(1, 1000, generator=g) ** 3)
        info = quant.step(m)["ctx"]
        assert info["reclustered"] and info["error"] <= info["error_before"]
    n = Prompt()
    quant.quantize_(n, QuantConfig(bits=2, targets=["ctx"], recluster="never"))
    for _ in range(3):
        _set(n, torch.rand(1, 1000, generator=g))
        assert not quant.step(n)["ctx"]["reclustered"]
    assert quant.stats(n)["ctx"]["reclusters"] == 0


def test_fires_exactly_when_all_enabled_conditions_hold() -> None:
    thr = 0.002
    m = Prompt(n=600, seed=3)
    q = quant.quantize_(m, QuantConfig(bits=2, targets=["ctx"], interval=2, kl_threshold=thr,
                                       require_error_increase=True, per_row=False))["ctx"]
    g = torch.Generator().manual_seed(5)
    seen = set()
    for i in range(60):
        kind = i % 4
        w = _latent(m)
        if kind == 0:
            w = w + 0.05 * torch.randn(w.shape, generator=g)
        elif kind == 1:
            w = w.sign() * w.abs() ** (1.0 + 0.3 * float(torch.rand(1, generator=g)))
        elif kind == 2:
            w = m.ctx.detach().clone() + 0.01 * torch.randn(w.shape, generator=g)
        else:
            w = torch.randn(w.shape, generator=g) * torch.rand(w.shape, generator=g)
        _set(m, w)
        steps_since = int(q.steps_since) + 1
        ref = float(q.ref_error)
        info = quant.step(m)["ctx"]
        gate = steps_since >= 2
        assert info["checked"] == gate
        if not gate:
            assert not info["reclustered"]
            seen.add(("gate",))
            continue
        expect = info["kl"] > thr and info["error_before"] > ref
        assert info["reclustered"] == expect
        seen.add((info["kl"] > thr, info["error_before"] > ref))
        if info["reclustered"]:
            assert info["error"] <= info["error_before"]
    # every branch was exercised
    assert seen == {("gate",), (True, True), (True, False), (False, True), (False, False)}, seen


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.ctx = nn.Parameter(torch.randn(4, 16) * 0.02)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x @ self.ctx.t()) @ self.ctx)


def _train(model: Tiny, opt: torch.optim.Optimizer, steps: range) -> list[int]:
    fired = []
    for t in steps:
        g = torch.Generator().manual_seed(100 + t)
        x = torch.randn(8, 16, generator=g)
        y = torch.randint(3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        fired.append(int(quant.step(model)["ctx"]["reclustered"]))
    return fired


def _fresh() -> tuple[Tiny, torch.optim.Optimizer]:
    model = Tiny()
    quant.quantize_(model, QuantConfig(bits=1, targets=["ctx"], interval=2, kl_threshold=1e-5,
                                       require_error_increase=False))
    return model, torch.optim.Adam(model.parameters(), lr=0.05)


def test_resume_equals_uninterrupted_bit_exact() -> None:
    a, opt_a = _fresh()
    fired = _train(a, opt_a, range(16))
    assert sum(fired) >= 2  # re-clusters happen in the window
    b, opt_b = _fresh()
    _train(b, opt_b, range(8))
    buf = io.BytesIO()
    torch.save({"model": b.state_dict(), "optim": opt_b.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    c, opt_c = _fresh()
    c.load_state_dict(ck["model"])
    opt_c.load_state_dict(ck["optim"])
    _train(c, opt_c, range(8, 16))
    sa, sc = a.state_dict(), c.state_dict()
    assert list(sa) == list(sc)
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
