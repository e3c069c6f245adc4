"""MaPLe: depth handling, the text side against CoOp, where the vision prompts go, errors."""

from __future__ import annotations

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting

NAMES = ["dog", "sea_lion", "golden retriever"]


@pytest.fixture(scope="module")
def vit():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def maple(clip_model, **kw):
    kw.setdefault("precision", "fp32")
    return prompting.build("maple", clip_model, NAMES, **kw)


def test_parameters_and_shapes(vit):
    model = maple(vit, n_ctx=2, prompt_depth=9)
    learner = model.prompt_learner
    assert learner.ctx.shape == (2, 48)
    assert learner.proj.in_features == 48 and learner.proj.out_features == 64  # text width -> vision width
    assert len(learner.compound_prompts_text) == 8
    assert all(p.shape == (2, 48) for p in learner.compound_prompts_text)
    assert len(learner.compound_prompt_projections) == 8
    # the reference clones one initialised Linear: all projections start equal
    w0 = learner.compound_prompt_projections[0].weight
    assert all(torch.equal(layer.weight, w0) for layer in learner.compound_prompt_projections)
    assert set(learner.state_dict()) == {n for n, _ in learner.named_parameters()}


def test_word_init_keeps_whole_prompt_text(vit):
    """MaPLe initialises n_ctx (<= 4) vectors from the words but keeps the whole ctx_init in the prompt."""
    from quantprompt.prompting.text import embed_tokens, tokenize

    model = maple(vit, n_ctx=2, ctx_init="a photo of a")
    learner = model.prompt_learner
    words = embed_tokens(vit, tokenize(["a photo of a dog."]))
    assert torch.equal(learner.ctx.detach(), words[0, 1:3])
    assert torch.equal(learner.text_prompts()[0], words[0])  # "a photo" learned + "of a dog." fixed


def test_depth_one_text_side_equals_coop(vit):
    m = maple(vit, n_ctx=3, ctx_init=None, prompt_depth=1)
    c = prompting.build("coop", vit, NAMES, n_ctx=3, precision="fp32")
    with torch.no_grad():
        c.prompt_learner.ctx.copy_(m.prompt_learner.ctx)
    assert len(m.prompt_learner.compound_prompts_text) == 0
    assert torch.equal(m._text_features(), c._text_features())


def test_deep_prompts_replace_tokens_in_their_layer_only(vit, images):
    model = maple(vit, n_ctx=2, prompt_depth=9)
    model.eval()
    learner = model.prompt_learner
    with torch.no_grad():
        base_text = model._text_features().clone()
        base_img = model.encode_image(images).clone()
        # each deep text prompt matters, for the text side and (through its projection) the vision side
        for j in (0, 7):
            saved = learner.compound_prompts_text[j].clone()
            learner.compound_prompts_text[j].add_(torch.randn_like(saved))  # not a constant: LayerNorm ignores shifts
            assert not torch.allclose(model._text_features(), base_text)
            assert not torch.allclose(model.encode_image(images), base_img)
            learner.compound_prompts_text[j].copy_(saved)
        assert torch.equal(model._text_features(), base_text)


def test_depth_nine_equals_manual_layer_loop(vit, images):
    """Text side: tokens 1..n_ctx replaced before blocks 1..8; vision: last n_ctx tokens replaced."""
    model = maple(vit, n_ctx=2, prompt_depth=9)
    learner = model.prompt_learner
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        x = learner.text_prompts() + vit.positional_embedding
        x = x.permute(1, 0, 2)
        for i, block in enumerate(vit.transformer.resblocks):
            if 1 <= i <= 8:
                x[1:3] = learner.compound_prompts_text[i - 1].unsqueeze(1)
            x = block(x)
        x = vit.ln_final(x.permute(1, 0, 2))
        text = x[torch.arange(3), learner.tokenized_prompts.argmax(-1)] @ vit.text_projection
        model.text_encoder.truncate = False  # the full 77-position pass is this very loop
        assert torch.allclose(model._text_features(), text, atol=1e-6, rtol=0)
        model.text_encoder.truncate = True  # the first max(EOT)+1 positions: the same up to float rounding
        assert torch.allclose(model._text_features(), text, atol=1e-5, rtol=0)

        v = vit.visual
        y = v.conv1(images).flatten(2).permute(0, 2, 1)
        y = torch.cat([v.class_embedding.expand(2, 1, -1), y], 1) + v.positional_embedding
        n_tokens = y.shape[1]
        y = torch.cat([y, learner.proj(learner.ctx).expand(2, -1, -1)], 1)  # after class+patch tokens
        y = v.ln_pre(y).permute(1, 0, 2)
        for i, block in enumerate(v.transformer.resblocks):
            if 1 <= i <= 8:
                y[n_tokens:] = learner.compound_prompt_projections[i - 1](learner.compound_prompts_text[i - 1]).unsqueeze(1)
            y = block(y)
        img = v.ln_post(y[0]) @ v.proj
        assert torch.allclose(model.encode_image(images), img, atol=1e-6, rtol=0)


def test_depth_twelve_and_gradients(vit, images):
    model = maple(vit, n_ctx=2, prompt_depth=12)
    model.train()
    logits = model(images)
    logits.logsumexp(-1).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    learned = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == learned
    assert all(n.startswith("prompt_learner.") for n in learned)
    assert len(learned) == 1 + 2 + 11 + 22


@pytest.mark.parametrize("depth", [0, 13, 2.0])
def test_bad_depth(vit, depth):
    with pytest.raises(ValueError, match="prompt_depth"):
        maple(vit, prompt_depth=depth)


def test_resnet_rejected():
    with pytest.raises(ValueError, match="ViT"):
        prompting.build("maple", qclip.tiny(0, "resnet"), NAMES, precision="fp32")
    with pytest.raises(ValueError, match="ViT"):
        prompting.build("qmaple", qclip.tiny(0, "resnet"), NAMES, precision="fp32")
