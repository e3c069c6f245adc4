"""P4Q's model layer on the tiny CLIP: PTQ levels, calibration, shared weights, adapter quantizer, distillation."""

from __future__ import annotations

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting, quant
from quantprompt.p4q import ActQuant, distillation_loss, p4q_loss, quantized_clip, weight_codes, weight_scale
from quantprompt.p4q.layers import QuantLinear, QuantMultiheadAttention, QuantPatchConv, quantized_weights

CLASSES = ["cat", "dog", "car", "bus"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(**options):
    torch.manual_seed(0)
    opts = dict(n_ctx=4, ctx_init="a photo of a", precision="fp32", prompt_bits=4)
    opts.update(options)
    return prompting.build("p4q", qclip.tiny(seed=0), CLASSES, **opts)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [8, 4])
def test_weights_take_at_most_2_pow_b_levels_per_output_channel(bits: int) -> None:
    clip = qclip.tiny(seed=0)
    student, acts = quantized_clip(clip, weight_bits=bits)
    weights = quantized_weights(student)
    # every Linear, both attention projections and the patch conv of both encoders, plus the two projections
    n_blocks = len(clip.visual.transformer.resblocks) + len(clip.transformer.resblocks)
    assert len(weights) == 4 * n_blocks + 3
    assert {"visual.conv1.weight", "visual.proj", "text_projection",
            "transformer.resblocks.0.attn.in_proj.weight"} <= set(weights)
    for name, (w, scale, b) in weights.items():
        assert b == bits
        axis = 1 if name in ("visual.proj", "text_projection") else 0
        q = (torch.round(w.detach() / scale) * scale).clamp(-(2 ** (b - 1) - 1) * scale, (2 ** (b - 1) - 1) * scale)
        values = q.movedim(axis, 0).reshape(q.shape[axis], -1)
        assert max(int(row.unique().numel()) for row in values) <= 2 ** bits, name
    # the student's layers use those values: the in_proj weight it multiplies with has <= 2^b levels per row
    layer = student.transformer.resblocks[0].attn.in_proj
    assert isinstance(layer, QuantLinear)
    assert max(int(r.unique().numel()) for r in layer.qweight()) <= 2 ** bits
    assert isinstance(student.visual.conv1, QuantPatchConv)
    assert isinstance(student.transformer.resblocks[0].attn, QuantMultiheadAttention)
    assert len(acts) == 4 * n_blocks + 1  # inputs of in_proj, out_proj, c_fc, c_proj per block + patch conv


def test_codes_are_symmetric_and_exact() -> None:
    w = torch.tensor([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]])
    scale = weight_scale(w, 8)
    codes = weight_codes(w, scale, 8)
    assert codes.dtype == torch.int8
    assert codes[0].tolist() == [127, -64, 32, 0] and codes[1].abs().sum() == 0
    assert scale[1].item() == 1.0  # an all-zero channel keeps a finite scale


def test_student_shares_the_teachers_weights() -> None:
    model = build()
    clip = model.clip_model
    assert model.image_encoder.conv1.weight is clip.visual.conv1.weight
    in_proj = model.image_encoder.transformer.resblocks[3].attn.in_proj
    assert in_proj.weight is clip.visual.transformer.resblocks[3].attn.in_proj_weight
    assert model.text_encoder.transformer.resblocks[0].mlp.c_fc.weight is clip.transformer.resblocks[0].mlp.c_fc.weight
    clip_bytes = sum(p.numel() for p in clip.parameters())
    model_bytes = sum(p.numel() for p in model.parameters())
    learned = sum(p.numel() for p in model.prompt_learner.parameters())
    # the student adds only the learned tensors; it leaves out the token table (prompts come embedded) and
    # holds the tiny fake-quantized text projection as a buffer
    dropped = clip.token_embedding.weight.numel() + clip.text_projection.numel()
    assert model_bytes == clip_bytes - dropped + learned
    # the teacher is untouched full-precision CLIP
    assert isinstance(clip.visual.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)


def test_calibration_is_deterministic() -> None:
    batches = [images(4, 1), images(4, 2)]
    a, b = build(), build()
    ra = a.calibrate(batches, "mse")
    assert b.calibrate(batches, "mse") == ra  # a second model built the same way
    state_a, state_b = a.prompt_learner.state_dict(), b.prompt_learner.state_dict()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    found = {method: a.calibrate(batches, method) for method in ("minmax", "percentile")}
    assert a.calibrate(batches, "percentile") == found["percentile"]  # again on the same model
    for name, (lo, hi) in found["minmax"].items():  # error-minimizing ranges sit inside the min-max range
        assert lo <= found["percentile"][name][0] <= found["percentile"][name][1] <= hi
        assert lo <= ra[name][0] and ra[name][1] <= hi


def test_calibrated_activations_take_2_pow_a_levels() -> None:
    q = ActQuant(8)
    q.set_range(-1.0, 3.0)
    x = torch.linspace(-2, 4, 10001)
    y = q.quantize(x)
    assert y.unique().numel() <= 256 and (y == 0).any()
    assert abs(float(y.min()) + 1.0) < q.scale.item() and abs(float(y.max()) - 3.0) < q.scale.item()
    q.mode = "quant"
    x.requires_grad_(True)
    q(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight-through
    reduced = ActQuant(8, reduce_range=True)  # the grid of int8 GEMMs without VNNI: one bit fewer
    reduced.set_range(-1.0, 3.0)
    assert reduced.levels == 127 and reduced.quantize(x.detach()).unique().numel() <= 128


def test_integer_arithmetic_is_the_fake_quantized_layer() -> None:
    """A calibrated layer computes in the int8 kernel's integer form; that is the fake-quantized layer
    (quantized input times dequantized weight) up to fp32 rounding, with the same gradient."""
    from torch.nn.functional import linear

    from quantprompt.p4q.fakequant import fake_quant_weight, integer_linear

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(48, 200, generator=gen) * 0.1
    bias = torch.randn(48, generator=gen)
    act = ActQuant(8)
    act.set_range(-2.0, 2.0)
    x = (torch.randn(16, 200, generator=gen) * 1.2).requires_grad_(True)
    scale = weight_scale(w, 8)
    got = integer_linear(x, act, weight_codes(w, scale, 8), scale, bias)
    qw = fake_quant_weight(w, scale, 8)
    act.mode = "quant"
    expected = linear(act(x), qw, bias)
    # stated tolerance: 1e-4 absolute on outputs of magnitude ~5 (two summation orders of the same products)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()
    (g_int,) = torch.autograd.grad(got.sum(), x)
    (g_fake,) = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(g_int, g_fake, atol=1e-5, rtol=1e-5)  # straight-through, through the weight


def test_distillation_is_zero_for_equal_logits_and_positive_otherwise() -> None:
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 5
    assert distillation_loss(logits, logits.clone(), 2.0).item() == 0.0
    assert distillation_loss(logits + 3.0, logits, 2.0).item() < 1e-6  # a shift changes no probability
    other = logits.flip(1)
    kd = distillation_loss(other, logits, 2.0)
    assert kd.item() > 0
    labels = torch.arange(6) % 5
    total, ce, kd2 = p4q_loss(other, logits, labels, 0.5, 2.0)
    assert torch.allclose(total, ce + 0.5 * kd2) and torch.allclose(kd2, kd)
    # T^2 scaling: KL at temperature T times T^2
    t = 3.0
    p_t = torch.softmax(logits / t, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(other / t, -1))).sum(-1).mean() * t * t
    assert torch.allclose(distillation_loss(other, logits, t), kl, atol=1e-5)


def test_model_distillation_zero_when_the_student_is_the_teacher() -> None:
    """With nothing quantized in the image path (image encoder full precision, adapter alpha 0) and the
    teacher's text features in place of the student's, the student's logits are the teacher's: KL 0."""
    model = build(fp_encoder="image", adapter_alpha=0.0)
    model.calibrate([images()], "minmax")
    model.eval()
    x = images()
    with torch.no_grad():
        feats = model.encode_image(x)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        student = model.logit_scale.exp() * feats @ model.teacher_text_features().t()
        teacher = model.teacher_logits(x)
        assert torch.allclose(student, teacher, atol=1e-5)
        assert distillation_loss(student, teacher, 2.0).item() < 1e-8
        full = build()
        full.calibrate([images()], "minmax")
        assert distillation_loss(full(x), full.teacher_logits(x), 2.0).item() > 0


def test_adapter_uses_the_shared_quantizer() -> None:
    model = build(adapter_bits=2, adapter_ratio=2)
    qs = quant.quantizers(model)
    assert set(qs) == {"prompt_learner.adapter.fc1.weight", "prompt_learner.adapter.fc2.weight",
                       "prompt_learner.ctx"}
    assert all(isinstance(q, quant.KMeansQuantizer) for q in qs.values())
    assert qs["prompt_learner.adapter.fc1.weight"].bits == 2 and qs["prompt_learner.ctx"].bits == 4
    adapter = model.prompt_learner.adapter
    assert adapter.fc1.weight.unique().numel() <= 4 and adapter.fc2.weight.unique().numel() <= 4
    assert adapter.fc1.weight.shape == (16, 32)  # d -> d / r with d = 32 (tiny CLIP), r = 2
    blob = quant.export(model)
    assert set(quant.size_report(blob)["tensors"]) == set(qs)
    info = quant.step(model)  # CAC runs on the adapter like on QPrompt's prompts
    assert "prompt_learner.adapter.fc2.weight" in info


def test_prompts_learn_through_the_quantized_text_encoder() -> None:
    model = build()
    model.calibrate([images()], "mse")
    model.train()
    x = images()
    loss, _, _ = p4q_loss(model(x), model.teacher_logits(x), torch.tensor([0, 1, 2, 3]), 1.0, 2.0)
    loss.backward()
    ctx = model.prompt_learner.parametrizations.ctx.original
    fc1 = model.prompt_learner.adapter.fc1.parametrizations.weight.original
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert fc1.grad is not None and fc1.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.clip_model.parameters())


def test_fp_encoder_switch_leaves_that_encoder_full_precision() -> None:
    model = build(fp_encoder="image")
    assert not any(isinstance(m, (QuantLinear, QuantPatchConv)) for m in model.image_encoder.modules())
    assert any(isinstance(m, QuantLinear) for m in model.text_encoder.modules())
    model.calibrate([], "minmax")  # the image encoder needs no calibration then
    x = images()
    with torch.no_grad():
        assert torch.equal(model.image_encoder(x), model.clip_model.visual(x))
    text_fp = build(fp_encoder="text")
    assert not any(isinstance(m, QuantLinear) for m in text_fp.text_encoder.modules())


@pytest.mark.parametrize("option,value,match", [
    ("weight_bits", 0, "weight_bits=0"), ("weight_bits", 9, "weight_bits=9"), ("act_bits", 1, "act_bits=1"),
    ("fp_encoder", "both", "fp_encoder='both'"), ("adapter_ratio", 0, "ratio r=0"),
    ("adapter_alpha", 1.5, "alpha=1.5"),
])
def test_bad_model_options_are_refused(option: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(**{option: value})


def test_unknown_calibrator_is_refused() -> None:
    with pytest.raises(ValueError, match="calibrator 'kl'"):
        build().calibrate([images()], "kl")


def test_zero_shot_ptq_is_the_quantized_clip_with_hand_written_prompts() -> None:
    """``zero_shot``: the PTQ baseline -- nothing learnable, no adapter, the teacher's template through the
    quantized text tower; with activations unquantized its text features are the teacher's up to 8-bit weights."""
    model = build(zero_shot=True, dataset="Caltech101")
    model.calibrate([images(8, 2)], "mse")
    model.eval()
    assert model.trainable_parameters() == [] and model.build_options["zero_shot"] is True
    x = images(4, 3)
    with torch.no_grad():
        before = model(x)
        model.prompt_learner.adapter.fc2.parametrizations.weight.original.add_(1.0)  # the adapter is not used
        model.invalidate_cache()
        assert torch.equal(model(x), before)
        model.prompt_learner.parametrizations.ctx.original.mul_(0)  # neither is the context
        model.invalidate_cache()
        assert torch.equal(model(x), before)
        model.set_activation_mode("off")
        student = model.text_features().float()
        teacher = model.teacher_text_features()
    assert torch.nn.functional.cosine_similarity(student, teacher).min() > 0.99
    learned = build(dataset="Caltech101")
    learned.calibrate([images(8, 2)], "mse")
    assert learned.trainable_parameters()  # the default P4Q model does learn
