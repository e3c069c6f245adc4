"""Quantized forms (through quant.quantize_ / add_noise_ only): forward sees quantized weights, backward is
straight-through, state and options."""

from __future__ import annotations

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting, quant

NAMES = ["dog", "sea_lion", "golden retriever"]
LABELS = torch.tensor([0, 2])


@pytest.fixture(scope="module")
def vit():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _plain_twin(name, q_model, vit, **kw):
    """The unquantized model with its learned tensors set to the quantized values q_model uses."""
    plain = prompting.build(name, vit, NAMES, precision="fp32", **kw)
    values = {}
    for pname in [n for n, _ in plain.prompt_learner.named_parameters()]:
        obj = q_model.prompt_learner
        for part in pname.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        values[pname] = obj.detach().clone()  # reading a parametrized tensor returns its quantized value
    plain.prompt_learner.load_state_dict(values)
    return plain


@pytest.mark.parametrize(
    "qname, name, kw, n_targets, bits",
    [
        ("qcoop", "coop", {"n_ctx": 4}, 1, 1),
        ("qcocoop", "cocoop", {"n_ctx": 4}, 5, 1),
        ("qmaple", "maple", {"n_ctx": 2, "prompt_depth": 3}, 1 + 2 + 2 + 4, 4),
    ],
)
def test_forward_quantized_backward_straight_through(vit, images, qname, name, kw, n_targets, bits):
    torch.manual_seed(0)
    model = prompting.build(qname, vit, NAMES, precision="fp32", **kw)
    qs = quant.quantizers(model)
    assert len(qs) == n_targets and model.quant_config.bits == bits
    assert set(qs) == set(prompting.default_targets(qname, model))
    for pname in qs:  # every quantized tensor takes at most 2^b values
        obj = model
        for part in pname.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        assert obj.unique().numel() <= 2**bits
    plain = _plain_twin(name, model, vit, **kw)
    model.train()
    plain.train()
    out_q, out_p = model(images), plain(images)
    assert torch.allclose(out_q, out_p, atol=1e-5, rtol=0)
    torch.nn.functional.cross_entropy(out_q, LABELS).backward()
    torch.nn.functional.cross_entropy(out_p, LABELS).backward()
    grads_q = {n.replace("parametrizations.", "").replace(".original", ""): p.grad
               for n, p in model.prompt_learner.named_parameters()}
    grads_p = dict(plain.prompt_learner.named_parameters())
    assert set(grads_q) == set(grads_p)
    for n, p in grads_p.items():  # STE: d loss / d W = d loss / d W_q
        assert grads_q[n] is not None
        assert torch.allclose(grads_q[n], p.grad, atol=1e-5, rtol=1e-4), n


def test_state_dict_learned_plus_quantizer_state_and_resume(vit, images):
    model = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32")
    sd = model.prompt_learner.state_dict()
    # CoOp's name holds the values the model uses; the latent weights and the quantizer's state sit beside it
    assert torch.equal(sd["ctx"], model.prompt_learner.ctx) and sd["ctx"].unique().numel() <= 2
    assert torch.equal(sd["ctx.qprompt_latent"], model.prompt_learner.parametrizations.ctx.original)
    assert "ctx.qprompt_quantizer.centers" in sd
    assert all(k == "ctx" or k.startswith("ctx.qprompt_") for k in sd)  # nothing fixed (token embeddings) saved
    other = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32")
    other.prompt_learner.load_state_dict(sd)
    assert torch.equal(other.prompt_learner.ctx, model.prompt_learner.ctx)
    # the older layout (torch's parametrize names) still loads
    legacy = {"parametrizations.ctx.original": sd["ctx.qprompt_latent"]}
    legacy.update({f"parametrizations.ctx.0.{k.rsplit('.', 1)[1]}": v for k, v in sd.items()
                   if k.startswith("ctx.qprompt_quantizer.")})
    third = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32")
    third.prompt_learner.load_state_dict(legacy)
    assert torch.equal(third.prompt_learner.ctx, model.prompt_learner.ctx)
    model.eval()
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(images), other(images))


def test_step_export_and_load_into(vit, images):
    model = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32", interval=1, kl_threshold=0.0,
                            require_error_increase=False)
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.train()(images), LABELS).backward()
        opt.step()
        info = quant.step(model)
    assert "prompt_learner.ctx" in info
    blob = quant.export(model)
    assert quant.size_report(model)["payload_bytes"] == 260 - 256 + 4 * 48 // 8
    fresh = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32")
    quant.load_into(fresh, blob)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(images), model.eval()(images))


def test_quant_options_pass_through_and_errors(vit):
    model = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32", bits=2, norm=False, mode="ptq")
    assert (model.quant_config.bits, model.quant_config.norm, model.quant_config.mode) == (2, False, "ptq")
    model = prompting.build("qmaple", vit, NAMES, precision="fp32", prompt_depth=2,
                            targets=["prompt_learner.ctx", "prompt_learner.proj.weight"])
    assert set(quant.quantizers(model)) == {"prompt_learner.ctx", "prompt_learner.proj.weight"}
    with pytest.raises(ValueError, match="bits"):
        prompting.build("qcoop", vit, NAMES, precision="fp32", bits=9)
    with pytest.raises(ValueError, match="unknown option"):
        prompting.build("coop", vit, NAMES, precision="fp32", bits=2)
    with pytest.raises(ValueError, match="unknown option"):
        prompting.build("qcoop", vit, NAMES, precision="fp32", noise_std=0.1)


def test_noisecoop_noise_in_training_only(vit, images):
    torch.manual_seed(0)
    noisy = prompting.build("noisecoop", vit, NAMES, n_ctx=4, noise_std=0.05, precision="fp32")
    assert noisy.noise_config.std == 0.05
    assert list(noisy.prompt_learner.state_dict()) == ["ctx"]  # noise is training-only: ctx is the latent
    plain = prompting.build("coop", vit, NAMES, n_ctx=4, precision="fp32")
    plain.prompt_learner.ctx.data.copy_(noisy.prompt_learner.parametrizations.ctx.original)
    noisy.train()
    a, b = noisy(images), noisy(images)
    assert not torch.allclose(a, b)
    with torch.no_grad():
        assert torch.equal(noisy.eval()(images), plain.eval()(images))
    noisy.train()
    noisy(images).sum().backward()
    assert noisy.prompt_learner.parametrizations.ctx.original.grad is not None
