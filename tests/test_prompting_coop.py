"""CoOp prompt learner and model: layout of prompts, initialisation, zero-shot identity, gradients, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting
from quantprompt.prompting.text import embed_tokens, name_lengths, tokenize

NAMES = ["dog", "sea_lion", "golden retriever", "tree frog"]


@pytest.fixture(scope="module")
def vit():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def build(name, clip_model, **kw):
    kw.setdefault("precision", "fp32")
    return prompting.build(name, clip_model, NAMES, **kw)


@pytest.mark.parametrize("csc", [False, True])
@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_prompt_layout_every_position(vit, csc, position):
    n_ctx = 5
    model = build("coop", vit, n_ctx=n_ctx, csc=csc, class_token_position=position)
    learner = model.prompt_learner
    assert learner.ctx.shape == ((len(NAMES), n_ctx, 48) if csc else (n_ctx, 48))
    # make every context vector recognisable, then find where each one lands
    with torch.no_grad():
        marks = torch.arange(1, learner.ctx.numel() // 48 + 1, dtype=torch.float32).view(*learner.ctx.shape[:-1], 1)
        learner.ctx.copy_(1000.0 + marks.expand_as(learner.ctx))
    prompts = learner()
    assert prompts.shape == (len(NAMES), 77, 48)
    names = [n.replace("_", " ") for n in NAMES]
    name_embeddings = embed_tokens(vit, tokenize(names))
    for i, name_len in enumerate(name_lengths(names)):
        ctx_i = learner.ctx[i] if csc else learner.ctx
        name_i = name_embeddings[i, 1 : 1 + name_len]
        half = n_ctx // 2
        if position == "end":
            expected = [ctx_i, name_i]
        elif position == "middle":
            expected = [ctx_i[:half], name_i, ctx_i[half:]]
        else:
            expected = [name_i, ctx_i]
        body = torch.cat(expected)
        assert torch.equal(prompts[i, 1 : 1 + len(body)], body)
        assert torch.equal(prompts[i, 0], learner.token_prefix[i, 0])  # SOS stays first
        # what follows the context and name: ".", EOT and padding, unchanged
        rest = learner.token_suffix[i, name_len:]
        assert torch.equal(prompts[i, 1 + len(body) :], rest)
    # the EOT position used for the text feature is right after the "." token
    eot = learner.tokenized_prompts.argmax(-1)
    assert torch.equal(eot, torch.tensor([1 + n_ctx + n + 1 for n in name_lengths(names)]))


def test_word_initialisation_equals_token_embeddings(vit):
    model = build("coop", vit, ctx_init="a_photo of a")
    expected = embed_tokens(vit, tokenize(["a photo of a"]))[0, 1:5]
    assert model.prompt_learner.n_ctx == 4
    assert torch.equal(model.prompt_learner.ctx.detach(), expected)
    assert model.prompt_learner.prompt_prefix == "a photo of a"


def test_random_init_std_and_seed(vit):
    torch.manual_seed(3)
    a = build("coop", vit, n_ctx=16).prompt_learner.ctx.detach()
    torch.manual_seed(3)
    b = build("coop", vit, n_ctx=16).prompt_learner.ctx.detach()
    assert torch.equal(a, b)
    assert 0.015 < a.std().item() < 0.025 and abs(a.mean().item()) < 0.005
    assert build("coop", vit, n_ctx=16).prompt_learner.prompt_prefix == " ".join(["X"] * 16)


def test_zero_shot_identity(vit, images):
    """CoOp with ctx = embeddings of "a photo of a" gives exactly zero-shot CLIP's "a photo of a {}." logits."""
    coop = build("coop", vit, n_ctx=4)  # random init, then set to the words' embeddings
    with torch.no_grad():
        coop.prompt_learner.ctx.copy_(embed_tokens(vit, tokenize(["a photo of a"]))[0, 1:5])
    zs = build("zsclip", vit, template="a photo of a {}.")
    coop.eval()
    zs.eval()
    with torch.no_grad():
        a, b = coop(images), zs(images)
    assert torch.equal(a, b)
    # and without the cache, in training mode, with a graph
    coop.train()
    assert torch.allclose(coop(images), b, atol=1e-6, rtol=0)


def test_gradient_reaches_only_learnable_parameters(vit, images):
    model = build("coop", vit, n_ctx=4, csc=True, class_token_position="middle")
    model.train()
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2]))
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_learner.ctx"}
    assert model.prompt_learner.ctx.grad is not None and model.prompt_learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n != "prompt_learner.ctx")
    assert [id(p) for p in model.trainable_parameters()] == [id(model.prompt_learner.ctx)]


def test_state_dict_holds_only_learned_tensors(vit):
    model = build("coop", vit, n_ctx=4, class_token_position="front")
    sd = model.prompt_learner.state_dict()
    assert list(sd) == ["ctx"]
    other = build("coop", vit, n_ctx=4, class_token_position="front")
    other.prompt_learner.load_state_dict(sd)
    assert torch.equal(other.prompt_learner.ctx, model.prompt_learner.ctx)


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("coop", {"n_ctx": 0}, "n_ctx"),
        ("coop", {"n_ctx": 2.5}, "n_ctx"),
        ("cocoop", {"n_ctx": -1}, "n_ctx"),
        ("coop", {"class_token_position": "start"}, "class_token_position"),
        ("coop", {"precision": "bf16"}, "precision"),
        ("coop", {"depth": 3}, "unknown option"),
        ("cooop", {}, "valid names: zsclip, coop, cocoop, maple"),
        ("zsclip", {"dataset": "Cifar"}, "Caltech101"),
        ("zsclip", {"template": "a photo"}, "template"),
        ("noisecoop", {"noise_std": -1.0}, "noise_std"),
    ],
)
def test_bad_options_raise_at_construction(vit, name, options, match):
    with pytest.raises(ValueError, match=match):
        prompting.build(name, vit, NAMES, **{"precision": "fp32", **options})


def test_empty_classnames_and_too_long_prompt(vit):
    with pytest.raises(ValueError, match="classnames"):
        prompting.build("coop", vit, [], precision="fp32")
    with pytest.raises(ValueError, match="too long"):
        prompting.build("coop", vit, ["x " * 80], n_ctx=4, precision="fp32")


def test_fp16_on_cpu_is_promoted_with_notice():
    clip_model = qclip.tiny(1, "vit")
    with pytest.warns(UserWarning, match="promoted to fp32"):
        model = prompting.build("coop", clip_model, NAMES, n_ctx=2)
    assert model.precision == "fp32" and model.dtype == torch.float32
    assert model.prompt_learner.ctx.dtype == torch.float32


def test_ctx_init_overrides_n_ctx_like_coop(vit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build("coop", vit, n_ctx=16, ctx_init="a photo of a")
    assert model.prompt_learner.n_ctx == 4
    assert any("n_ctx=16 ignored" in str(w.message) for w in caught)


def test_resnet_backbone(images):
    rn = qclip.tiny(0, "resnet")
    model = prompting.build("coop", rn, NAMES, n_ctx=4, precision="fp32")
    model.eval()
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (3, len(NAMES)) and torch.isfinite(logits).all()


def test_train_mode_keeps_frozen_clip_in_eval(images):
    """Like CoOp's trainers (which switch only the prompt learner): BatchNorm statistics never change."""
    rn = qclip.tiny(0, "resnet")
    model = prompting.build("coop", rn, NAMES, n_ctx=4, precision="fp32")
    stats = {k: v.clone() for k, v in rn.visual.state_dict().items() if "running" in k}
    model.train()
    assert model.training and model.prompt_learner.training
    assert not any(m.training for m in rn.modules())
    eval_logits = model.eval()(images).detach()
    model.train()
    train_logits = model(images)
    assert torch.allclose(train_logits, eval_logits, atol=1e-5, rtol=0)
    assert all(torch.equal(v, rn.visual.state_dict()[k]) for k, v in stats.items())
