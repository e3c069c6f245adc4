"""Eval-mode text-feature cache: computed once per evaluation, invalidated by any change it depends on."""

from __future__ import annotations

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting, quant

NAMES = ["dog", "sea_lion", "golden retriever"]


@pytest.fixture(scope="module")
def vit():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def counting(model):
    calls = []
    original = model._text_features

    def wrapped():
        calls.append(1)
        return original()

    model._text_features = wrapped
    return calls


@pytest.mark.parametrize("name", ["zsclip", "coop", "qcoop", "maple", "qmaple", "noisecoop"])
def test_text_features_computed_once_per_evaluation(vit, images, name):
    kw = {"prompt_depth": 3} if "maple" in name else {}
    model = prompting.build(name, vit, NAMES, precision="fp32", **kw)
    calls = counting(model)
    model.eval()
    with torch.no_grad():
        first = model(images)
        for _ in range(3):
            assert torch.equal(model(images), first)
    assert len(calls) == 1
    model.train()  # training mode never uses the cache
    model(images)
    model(images)
    assert len(calls) == 3
    model.eval()
    with torch.no_grad():
        model(images)
    assert len(calls) == 4


def test_invalidated_by_parameter_changes(vit, images):
    model = prompting.build("coop", vit, NAMES, n_ctx=4, precision="fp32")
    calls = counting(model)
    model.eval()
    with torch.no_grad():
        before = model(images)
        model.prompt_learner.ctx.add_(torch.randn_like(model.prompt_learner.ctx))  # in-place, like an optimizer step
        after = model(images)
    assert len(calls) == 2 and not torch.allclose(before, after)
    # load_state_dict
    state = {"ctx": torch.zeros_like(model.prompt_learner.ctx)}
    model.prompt_learner.load_state_dict(state)
    with torch.no_grad():
        zeroed = model(images)
    assert len(calls) == 3
    # replacing the tensor object
    model.prompt_learner.ctx.data = torch.randn_like(model.prompt_learner.ctx)
    with torch.no_grad():
        ones = model(images)
    assert len(calls) == 4 and not torch.allclose(zeroed, ones)
    # CLIP's text tower itself
    with torch.no_grad():
        vit.ln_final.weight.mul_(1.0)
        model(images)
    assert len(calls) == 5
    # explicit invalidation
    model.invalidate_cache()
    with torch.no_grad():
        model(images)
    assert len(calls) == 6


def test_invalidated_by_optimizer_and_quantizer_steps(vit, images):
    model = prompting.build("qcoop", vit, NAMES, n_ctx=4, precision="fp32", bits=2, interval=1,
                            kl_threshold=0.0, require_error_increase=False)
    opt = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    model.eval()
    with torch.no_grad():
        before = model(images)
    model.train()
    opt.zero_grad()
    model(images).logsumexp(-1).sum().backward()
    opt.step()
    quant.step(model)
    model.eval()
    with torch.no_grad():
        after = model(images)
        model.train()
        model.eval()
        fresh = model._normalized_text_features()
        assert torch.equal(model.text_features(), fresh)
    assert not torch.equal(before, after)


def test_no_cache_when_a_graph_is_needed(vit, images):
    model = prompting.build("coop", vit, NAMES, n_ctx=4, precision="fp32")
    calls = counting(model)
    model.prompt_learner.eval()
    model(images).sum().backward()  # grad enabled + learnable prompt: must build a graph each time
    model(images).sum().backward()
    assert len(calls) == 2
    assert model.prompt_learner.ctx.grad is not None


def test_cocoop_is_not_cached(vit, images):
    model = prompting.build("cocoop", vit, NAMES, n_ctx=4, precision="fp32")
    assert not model.cacheable
    assert "cocoop" not in prompting.CACHED_MODELS
    model.eval()
    with torch.no_grad():
        a = model(images)
        b = model(images.flip(0))
    assert torch.allclose(a.flip(0), b, atol=1e-4, rtol=0)


def test_autocast_state_is_part_of_the_key(vit, images):
    model = prompting.build("coop", vit, NAMES, n_ctx=4, precision="amp")
    assert model.precision == "amp" and model.dtype == torch.float32
    calls = counting(model)
    model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.text_features().dtype == torch.bfloat16
        assert model.text_features().dtype == torch.float32
        assert model.text_features().dtype == torch.float32
    assert len(calls) == 2


def test_maple_vision_prompts_cached_in_eval(vit, images):
    model = prompting.build("qmaple", vit, NAMES, precision="fp32", prompt_depth=3)
    learner = model.prompt_learner
    calls = []
    original = learner.vision_prompts

    def wrapped():
        calls.append(1)
        return original()

    learner.vision_prompts = wrapped
    model.eval()
    with torch.no_grad():
        first = model(images)
        assert torch.equal(model(images), first)
        assert len(calls) == 1
        params = dict(learner.named_parameters())  # quantized: the learned tensor is the parametrization's original
        deep = params["compound_prompts_text.parametrizations.1.original"]
        deep.add_(torch.randn_like(deep))
        assert not torch.equal(model(images), first)
        assert len(calls) == 2
    model.train()
    model(images)
    model(images)
    assert len(calls) == 4
