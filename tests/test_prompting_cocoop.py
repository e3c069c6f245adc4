"""CoCoOp and zero-shot CLIP."""

from __future__ import annotations

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt import prompting

NAMES = ["dog", "sea_lion", "golden retriever", "tree frog"]


@pytest.fixture(scope="module")
def vit():
    return qclip.tiny(0, "vit")


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def test_meta_net_shape_and_state(vit):
    model = prompting.build("cocoop", vit, NAMES, ctx_init="a photo of a", precision="fp32")
    net = model.prompt_learner.meta_net
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear"]
    assert (net.linear1.in_features, net.linear1.out_features) == (32, 2)  # vis_dim -> vis_dim // 16
    assert (net.linear2.in_features, net.linear2.out_features) == (2, 48)  # -> ctx_dim
    assert set(model.prompt_learner.state_dict()) == {
        "ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight", "meta_net.linear2.bias"
    }


def test_logits_use_image_conditioned_context(vit, images):
    model = prompting.build("cocoop", vit, NAMES, n_ctx=4, precision="fp32")
    model.eval()
    with torch.no_grad():
        for p in model.prompt_learner.meta_net.parameters():
            p.normal_(0, 0.5)
        logits = model(images)
        # per image: CoOp's text side with ctx + meta_net(normalised image feature)
        feats = model.encode_image(images)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        coop = prompting.build("coop", vit, NAMES, n_ctx=4, precision="fp32")
        for i in range(len(images)):
            coop.prompt_learner.ctx.copy_(model.prompt_learner.ctx + model.prompt_learner.meta_net(feats[i]))
            text = coop._normalized_text_features()
            expected = model.logit_scale.exp() * feats[i] @ text.t()
            assert torch.allclose(logits[i], expected, atol=1e-4, rtol=0)
        # each row only depends on its own image
        assert torch.allclose(model(images[1:2])[0], logits[1], atol=1e-4, rtol=0)
        assert model.prompt_learner(feats).shape == (3, len(NAMES), 77, 48)


def test_gradients_reach_ctx_and_meta_net_only(vit, images):
    model = prompting.build("cocoop", vit, NAMES, n_ctx=2, precision="fp32")
    model.train()
    model(images).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {f"prompt_learner.{n}" for n in model.prompt_learner.state_dict()}


def test_resnet_backbone(images):
    model = prompting.build("cocoop", qclip.tiny(0, "resnet"), NAMES, n_ctx=4, precision="fp32")
    with torch.no_grad():
        assert model.eval()(images).shape == (3, len(NAMES))


def test_zsclip_dataset_template_and_ensemble(vit, images):
    zs = prompting.build("zsclip", vit, NAMES, dataset="OxfordPets", precision="fp32")
    assert zs.prompt_learner.templates == ["a photo of a {}, a type of pet."]
    assert list(zs.prompt_learner.state_dict()) == [] and zs.trainable_parameters() == []
    ens = prompting.build("zsclip", vit, NAMES, dataset="EuroSAT", ensemble="select", precision="fp32")
    templates = ens.prompt_learner.templates
    assert templates == prompting.IMAGENET_TEMPLATES_SELECT + ["a centered satellite photo of {}."]
    assert len(prompting.IMAGENET_TEMPLATES) == 80
    full = prompting.build("zsclip", vit, NAMES, dataset="ImageNet", ensemble="full", precision="fp32")
    assert full.prompt_learner.templates == prompting.IMAGENET_TEMPLATES
    with torch.no_grad():
        mean = 0
        for t in templates:
            f = vit.encode_text(qclip.tokenize([t.format(n.replace("_", " ")) for n in NAMES]))
            mean = mean + f / f.norm(dim=-1, keepdim=True)
        mean = mean / len(templates)
        mean = mean / mean.norm(dim=-1, keepdim=True)
        img = vit.encode_image(images)
        img = img / img.norm(dim=-1, keepdim=True)
        expected = vit.logit_scale.exp() * img @ mean.t()
        assert torch.allclose(ens.eval()(images), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="either template or ensemble"):
        prompting.build("zsclip", vit, NAMES, template="{}", ensemble="full", precision="fp32")
