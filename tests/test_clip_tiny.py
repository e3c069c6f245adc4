"""The tiny CLIP fixture: sizes of the contract, determinism per seed, and file round trips through load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from quantprompt import clip as qclip

PROMPTS = ["a photo of a dog.", "a photo of a cat.", "a diagram", "x", "two birds", "a car", "sky", "tree"]


def _outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    images = torch.randn(8, 3, 32, 32, generator=gen)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(qclip.tokenize(PROMPTS))


def test_tiny_vit_has_the_contract_sizes() -> None:
    model = qclip.tiny(seed=0)
    assert not model.training
    assert model.vocab_size == 49408 and model.context_length == 77
    assert model.visual.input_resolution == 32 and model.visual.conv1.kernel_size == (8, 8)
    assert model.visual.conv1.out_channels == 64 and model.transformer.width == 48
    assert model.text_projection.shape == (48, 32) and model.visual.proj.shape == (64, 32)
    assert len(model.transformer.resblocks) == 12 and len(model.visual.transformer.resblocks) == 12
    assert model.transformer.resblocks[0].attn.num_heads == 3
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))
    image_features, text_features = _outputs(model)
    assert image_features.shape == (8, 32) and text_features.shape == (8, 32)
    assert torch.isfinite(image_features).all() and torch.isfinite(text_features).all()
    # different prompts and images give different features (the model is not degenerate)
    assert torch.cdist(text_features, text_features).triu(1)[0, 1:].min() > 0
    assert torch.cdist(image_features, image_features).triu(1)[0, 1:].min() > 0


def test_tiny_is_deterministic_per_seed_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = qclip.tiny(seed=0), qclip.tiny(seed=0), qclip.tiny(seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["token_embedding.weight"], sc["token_embedding.weight"])
    assert all(torch.equal(x, y) for x, y in zip(_outputs(a), _outputs(b)))


def test_tiny_resnet_forward_and_sizes() -> None:
    model = qclip.tiny(seed=0, arch="resnet")
    assert model.visual.input_resolution == 32
    assert model.transformer.width == 48 and len(model.transformer.resblocks) == 12
    image_features, text_features = _outputs(model)
    assert image_features.shape == (8, 32) and text_features.shape == (8, 32)
    assert image_features.std() > 0


@pytest.mark.parametrize("arch", ["vit", "resnet"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_tiny_round_trips_through_load(tmp_path: Path, arch: str, suffix: str) -> None:
    path = qclip.save_tiny(tmp_path / f"tiny-{arch}{suffix}", seed=3, arch=arch)
    loaded, preprocess = qclip.load(path, precision="fp32")
    reference = qclip.tiny(seed=3, arch=arch)
    assert all(torch.equal(x, y) for x, y in zip(_outputs(loaded), _outputs(reference)))
    assert loaded.logit_scale.item() == reference.logit_scale.item()
    assert not loaded.training


def test_plain_torch_save_of_state_dict_round_trips(tmp_path: Path) -> None:
    reference = qclip.tiny(seed=0)
    torch.save(reference.state_dict(), tmp_path / "tiny.pt")
    loaded, _ = qclip.load(str(tmp_path / "tiny.pt"), precision="fp32")
    assert all(torch.equal(x, y) for x, y in zip(_outputs(loaded), _outputs(reference)))


def test_non_default_text_heads_survive_the_file(tmp_path: Path) -> None:
    for suffix in (".pt", ".safetensors"):
        path = qclip.save_tiny(tmp_path / f"h{suffix}", text_heads=4, text_layers=2, vision_layers=2)
        loaded, _ = qclip.load(path, precision="fp32")
        assert loaded.transformer.resblocks[0].attn.num_heads == 4
        ref = qclip.tiny(text_heads=4, text_layers=2, vision_layers=2)
        assert all(torch.equal(x, y) for x, y in zip(_outputs(loaded), _outputs(ref)))


def test_tiny_specs_and_preprocess() -> None:
    from PIL import Image

    model, preprocess = qclip.load("tiny-vit", precision="fp32")
    assert all(torch.equal(x, y) for x, y in zip(_outputs(model), _outputs(qclip.tiny(seed=0))))
    image = Image.new("RGB", (50, 40), color=(200, 10, 30))
    assert preprocess(image).shape == (3, 32, 32)
    resnet, _ = qclip.load("tiny-resnet", precision="fp32")
    assert hasattr(resnet.visual, "attnpool")


def test_tiny_rejects_bad_arguments() -> None:
    with pytest.raises(qclip.CLIPLoadError, match="'vit' or 'resnet'"):
        qclip.tiny(arch="convnext")
    with pytest.raises(qclip.CLIPLoadError, match="unknown size argument.*'depth'"):
        qclip.tiny(depth=3)
    with pytest.raises(qclip.CLIPLoadError, match="vision_width 48"):
        qclip.tiny(vision_width=48)
    with pytest.raises(qclip.CLIPLoadError, match="text_heads 5"):
        qclip.tiny(text_heads=5)
