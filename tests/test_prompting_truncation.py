"""Text encoding over the first max(EOT)+1 positions equals the full 77-position pass, for every model.

CLIP reads each text feature at the EOT token and its causal mask keeps later positions from influencing
earlier ones, so cutting the sequence after the last EOT of a call may change float rounding only. Checked on
the tiny CLIP and on a random CLIP with ViT-B/16's text tower (512 wide, 8 heads, 12 layers), with class names
of very different token lengths and with a prompt whose EOT sits at the last position (76).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting
from quantprompt.clip._openai import openai_clip
from quantprompt.prompting.text import TextEncoder, tokenize

# every prompt below has 4 tokens before the class name: "X X X X", "a photo of a" (MaPLe, zero-shot template)
PREFIX_TOKENS = 4
SHORT_NAMES = ["cat", "hot air balloon drifting over snowy mountains at dawn", "sea_lion"]
# "a" is one BPE token: SOT + 4 prefix tokens + 70 name tokens + "." puts EOT at position 76
NAME_EOT_76 = " ".join(["a"] * (77 - 3 - PREFIX_TOKENS))
OPTIONS = {
    "zsclip": {"template": "a photo of a {}."},
    "coop": {"n_ctx": 4},
    "noisecoop": {"n_ctx": 4, "noise_std": 0.05},
    "qcoop": {"n_ctx": 4, "bits": 2},
    "cocoop": {"n_ctx": 4, "text_batch_size": 4},  # chunks mix images and split one image's classes
    "qcocoop": {"n_ctx": 4, "bits": 2, "text_batch_size": 4},
    "maple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": 9},
    "qmaple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": 9, "bits": 2},
    "p4q": {"n_ctx": 4, "weight_bits": 8},  # the quantized student's text tower, through the same encoder
}
# the text paths of training: plain, image-conditioned, deep prompts, and a quantizer in the graph (the other
# Q-models put theirs on the same paths; their logits are checked in eval below)
TRAINABLE = ["coop", "cocoop", "maple", "qcoop"]


def vitb16_text_clip():
    """Random CLIP with ViT-B/16's text tower; a small vision tower (32 px, width 64) keeps it fast."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = openai_clip().model.CLIP(512, 32, 12, 64, 8, 77, 49408, 512, 8, 12)
        model.logit_scale.data.fill_(math.log(100.0))
    return model.eval()


@pytest.fixture(scope="module")
def clip_model():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def vitb16():
    return vitb16_text_clip()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def assert_exact(cut, full):
    """fp32 agreement within 1e-5, absolute or relative: at logit scale 100 a cosine rounded differently in
    its last bits (2e-7) already moves a logit by 2e-5, while a wrong mask or position moves it by ~1."""
    assert cut.shape == full.shape
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def build(name, clip_model, classnames):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = prompting.build(name, clip_model, classnames, precision="fp32", **OPTIONS[name])
    torch.manual_seed(4)
    with torch.no_grad():  # move the learned tensors off their init so every one of them matters
        for p in model.prompt_learner.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def both_paths(model, fn):
    """fn() with truncation, then with the full 77-position path."""
    model.text_encoder.truncate = True
    cut = fn()
    model.text_encoder.truncate = False
    try:
        return cut, fn()
    finally:
        model.text_encoder.truncate = True


def eot_positions(model):
    return model.prompt_learner.tokenized_prompts.argmax(dim=-1)


def test_eot_76_name_reaches_the_last_position():
    assert int(tokenize([f"a photo of a {NAME_EOT_76}."]).argmax()) == 76


@pytest.mark.parametrize("name", prompting.MODEL_NAMES)
@pytest.mark.parametrize("names", ["short", "eot76"])
def test_eval_logits_equal_full_length(clip_model, images, name, names):
    classnames = SHORT_NAMES + ([NAME_EOT_76] if names == "eot76" else [])
    model = build(name, clip_model, classnames).eval()
    eot = eot_positions(model)
    tokens = model.prompt_learner.tokenized_prompts
    if names == "short":  # truncation really cuts, with EOTs far apart
        assert model.text_encoder.length(tokens) < 30 and int(eot.min()) <= 8
    else:
        assert int(eot.max()) == 76 and model.text_encoder.length(tokens) == 77
    with torch.no_grad():
        cut, full = both_paths(model, lambda: (model.invalidate_cache(), model(images))[1])
    assert cut.shape == (2, len(classnames))
    assert_exact(cut, full)


@pytest.mark.parametrize("name", prompting.MODEL_NAMES)
def test_eval_logits_equal_full_length_vitb16_text(vitb16, images, name):
    """ViT-B/16's text widths (512 wide, 12 layers): more rounding per position, same agreement. CoCoOp's
    chunks of 3 prompts mix short prompts (cut) with the EOT-76 one (full length)."""
    long = name.endswith("cocoop")
    model = build(name, vitb16, SHORT_NAMES + ([NAME_EOT_76] if long else []))
    if long:
        model.text_batch_size = 3
    model.eval()
    assert model.text_encoder.length(model.prompt_learner.tokenized_prompts) == (77 if long else 16)
    with torch.no_grad():
        cut, full = both_paths(model, lambda: (model.invalidate_cache(), model(images[:1]))[1])
    assert_exact(cut, full)


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_gradients_equal_full_length(clip_model, images, name):
    model = build(name, clip_model, SHORT_NAMES).train()
    labels = torch.tensor([0, 2])

    def grads():
        model.zero_grad(set_to_none=True)
        logits = model(images)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (cut_logits, cut), (full_logits, full) = both_paths(model, grads)
    assert_exact(cut_logits, full_logits)
    assert set(cut) == set(full) and len(cut) > 0
    for key in full:
        scale = float(full[key].abs().max())
        assert scale > 0, key
        assert (cut[key] - full[key]).abs().max() <= 1e-5 * max(1.0, scale), key


@pytest.mark.parametrize("position", ["middle", "front"])
def test_coop_class_token_positions_and_csc(clip_model, images, position):
    classnames = SHORT_NAMES + [NAME_EOT_76[: 2 * 30]]
    model = prompting.build("coop", clip_model, classnames, n_ctx=4, csc=True, class_token_position=position,
                            precision="fp32").eval()
    with torch.no_grad():
        cut, full = both_paths(model, lambda: (model.invalidate_cache(), model(images))[1])
    assert_exact(cut, full)


def test_zero_shot_ensemble_matches_clip_encode_text(clip_model):
    """Zero-shot CLIP's truncated pass equals CLIP's own ``encode_text`` of the full 77 tokens."""
    model = prompting.build("zsclip", clip_model, SHORT_NAMES, ensemble="select", precision="fp32").eval()
    tokens = model.prompt_learner.tokenized_prompts
    with torch.no_grad():
        features = model._text_features()
        expected = 0
        for t in tokens:
            f = clip_model.encode_text(t)
            expected = expected + f / f.norm(dim=-1, keepdim=True)
    assert_exact(features, expected / tokens.shape[0])


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_cocoop_text_batches_equal_one_image_at_a_time(clip_model, images, batch):
    """Any bound on prompts per call gives the logits of the reference's loop (one image, all classes)."""
    model = build("cocoop", clip_model, SHORT_NAMES + ["dog"]).eval()
    model.text_batch_size = batch
    learner = model.prompt_learner
    with torch.no_grad():
        logits = model(images)
        feats = model.encode_image(images)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        model.text_encoder.truncate = False
        for i, ctx_i in enumerate(learner.shifted_context(feats)):
            text = model.text_encoder(learner.construct(ctx_i), learner.tokenized_prompts)
            text = text / text.norm(dim=-1, keepdim=True)
            assert_exact(logits[i], model.logit_scale.exp() * feats[i] @ text.t())


def test_cocoop_text_batch_size_is_validated(clip_model):
    vit = clip_model
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match=r"text_batch_size=.*integer >= 1"):
            prompting.build("cocoop", vit, SHORT_NAMES, n_ctx=4, precision="fp32", text_batch_size=bad)
    model = prompting.build("qcocoop", vit, SHORT_NAMES, n_ctx=4, precision="fp32", text_batch_size=7)
    assert model.text_batch_size == 7


def test_clip_modules_are_not_modified(clip_model, images):
    """The blocks keep their 77x77 mask; CLIP's own forward still works after truncated passes."""
    masks = [b.attn_mask.clone() for b in clip_model.transformer.resblocks]
    tokens = tokenize(SHORT_NAMES)
    with torch.no_grad():
        before = clip_model.encode_text(tokens)
        model = build("coop", clip_model, SHORT_NAMES).eval()
        model(images)
        after = clip_model.encode_text(tokens)
    assert torch.equal(before, after)
    for block, mask in zip(clip_model.transformer.resblocks, masks):
        assert block.attn_mask.shape == (77, 77) and torch.equal(block.attn_mask, mask)


def test_half_and_autocast_match_full_length():
    """fp16 weights and autocast (here CPU bfloat16) take the same truncated path."""
    vit = qclip.tiny(0, "vit")
    encoder = TextEncoder(vit)
    tokens = tokenize(SHORT_NAMES)
    emb = vit.token_embedding(tokens).detach()

    def run():
        return encoder(emb.type(encoder.dtype), tokens).float()

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cut, full = both_paths(type("M", (), {"text_encoder": encoder})(), run)
    assert (cut - full).abs().max() <= 0.05 * float(full.abs().max())
    openai_clip().model.convert_weights(vit)
    assert encoder.dtype == torch.float16
    with torch.no_grad():
        cut, full = both_paths(type("M", (), {"text_encoder": encoder})(), run)
    assert (cut - full).abs().max() <= 0.01 * float(full.abs().max())


def test_prompts_shorter_than_their_eot_are_refused():
    vit = qclip.tiny(0, "vit")
    encoder = TextEncoder(vit)
    tokens = tokenize(SHORT_NAMES)
    emb = vit.token_embedding(tokens).detach()
    with pytest.raises(ValueError, match="EOT tokens need"):
        encoder(emb[:, :5], tokens)
    assert encoder(emb[:, : encoder.length(tokens)], tokens).shape == (3, 32)
