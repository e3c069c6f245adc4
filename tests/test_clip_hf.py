"""Hugging Face checkpoints: exact conversion to OpenAI CLIP, and the name lookup order (cache, Hub, URL).

No network: huggingface_hub.hf_hub_download and the URL download are replaced by functions that serve files
written in tmp_path (or fail like an offline machine does).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers  # test-only reference implementation (requirements.txt)

from quantprompt import clip as qclip
from quantprompt.clip import loading

FAKE_NAME = "ViT-T/8"
FAKE_REPO = "openai/clip-vit-tiny-patch8-test"


def _hf_config(**vision: Any) -> Any:
    text = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=64, intermediate_size=256,
                num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu",
                bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
    vis = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
               image_size=32, patch_size=8, hidden_act="quick_gelu", **vision)
    return transformers.CLIPConfig(text_config=text, vision_config=vis, projection_dim=32)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny transformers.CLIPModel saved with save_pretrained (every tensor perturbed, LayerNorms too)."""
    torch.manual_seed(0)
    model = transformers.CLIPModel(_hf_config()).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
        model.logit_scale.fill_(4.0)
    directory = tmp_path_factory.mktemp("hf") / "clip-tiny"
    model.save_pretrained(directory)
    return directory


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # transformers 5 returns outputs


def _max_diff(openai_model: torch.nn.Module, hf_dir: Path) -> tuple[float, float]:
    hf = transformers.CLIPModel.from_pretrained(hf_dir).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = qclip.tokenize(["a photo of a dog.", "a very long caption " * 5, "x"])
    with torch.no_grad():
        image_diff = (openai_model.encode_image(pixels) - _features(hf.get_image_features(pixel_values=pixels)))
        text_diff = (openai_model.encode_text(ids) - _features(hf.get_text_features(input_ids=ids)))
    assert openai_model.logit_scale.item() == pytest.approx(hf.logit_scale.item())
    return image_diff.abs().max().item(), text_diff.abs().max().item()


def test_hf_directory_converts_exactly(hf_dir: Path) -> None:
    model, preprocess = qclip.load(hf_dir, precision="fp32")
    assert model.visual.input_resolution == 32 and model.transformer.resblocks[0].attn.num_heads == 4
    image_diff, text_diff = _max_diff(model, hf_dir)
    assert image_diff <= 1e-5 and text_diff <= 1e-5


def test_hf_model_safetensors_file_with_config_beside(hf_dir: Path) -> None:
    model, _ = qclip.load(hf_dir / "model.safetensors", precision="fp32")
    image_diff, text_diff = _max_diff(model, hf_dir)
    assert image_diff <= 1e-5 and text_diff <= 1e-5


def test_hf_safetensors_without_config(hf_dir: Path, tmp_path: Path) -> None:
    shutil.copy(hf_dir / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(qclip.CLIPFileNotFoundError, match=r"config.json is missing"):
        qclip.load(tmp_path / "model.safetensors")


def test_hf_config_that_is_not_clip(hf_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "siglip"
    shutil.copytree(hf_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "siglip"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(qclip.CLIPLoadError, match=r"config.json: model_type is 'siglip', not 'clip'"):
        qclip.load(target)
    config["model_type"] = "clip"
    config["vision_config"]["hidden_act"] = "gelu"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(qclip.CLIPLoadError, match=r"vision_config.hidden_act is 'gelu'.*quick_gelu"):
        qclip.load(target)


def test_hf_directory_without_weights(hf_dir: Path, tmp_path: Path) -> None:
    shutil.copy(hf_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(qclip.CLIPFileNotFoundError, match="no weights: put model.safetensors"):
        qclip.load(tmp_path)


# -------------------------------------------------------------------------------- name lookup: cache -> Hub -> URL
@pytest.fixture
def fake_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Register a tiny model under an OpenAI-style name whose URL carries the SHA-256 of a tiny file."""
    from quantprompt.clip._openai import openai_clip

    source = qclip.save_tiny(tmp_path / "src" / "ViT-T-8.pt", seed=5, text_layers=2, vision_layers=2)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    url = f"https://openaipublic.example/clip/models/{sha}/ViT-T-8.pt"
    monkeypatch.setitem(openai_clip().clip._MODELS, FAKE_NAME, url)
    monkeypatch.setitem(loading.HF_REPOS, FAKE_NAME, FAKE_REPO)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_offline", lambda: False)
    return {"source": source, "sha": sha, "url": url, "root": tmp_path / "cache"}


def _hub_serving(hf_dir: Path, calls: list[str]) -> Any:
    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(f"{repo_id}/{filename}")
        if repo_id != FAKE_REPO or not (hf_dir / filename).is_file():
            raise FileNotFoundError(f"{repo_id}/{filename} not found")
        return str(hf_dir / filename)

    return fake_download


def _hub_offline(calls: list[str]) -> Any:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(f"{repo_id}/{filename}")
        raise LocalEntryNotFoundError("offline and not in the local cache")

    return fake_download


def _no_url(url: str, target: Path, sha: str) -> None:
    raise AssertionError(f"the OpenAI URL must not be used here: {url}")


def test_cached_openai_file_is_used_first(fake_name: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    root = fake_name["root"]
    root.mkdir()
    shutil.copy(fake_name["source"], root / "ViT-T-8.pt")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline(calls := []))
    monkeypatch.setattr(loading, "_download_url", _no_url)
    model, _ = qclip.load(FAKE_NAME, precision="fp32", download_root=root)
    assert calls == []
    reference = qclip.tiny(seed=5, text_layers=2, vision_layers=2)
    assert torch.equal(model.token_embedding.weight, reference.token_embedding.weight)


def test_env_var_sets_the_cache_dir(fake_name: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_name["root"]
    root.mkdir()
    shutil.copy(fake_name["source"], root / "ViT-T-8.pt")
    monkeypatch.setenv(qclip.ENV_ROOT, str(root))
    monkeypatch.setattr(loading, "_download_url", _no_url)
    model, _ = qclip.load(FAKE_NAME, precision="fp32")
    assert model.transformer.width == 48


def test_hub_checkpoint_is_converted_and_cached(fake_name: dict, hf_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    root = fake_name["root"]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_serving(hf_dir, calls := []))
    monkeypatch.setattr(loading, "_download_url", _no_url)
    model, _ = qclip.load(FAKE_NAME, precision="fp32", download_root=root)
    assert calls == [f"{FAKE_REPO}/config.json", f"{FAKE_REPO}/model.safetensors"]
    assert sorted(p.name for p in root.iterdir()) == ["ViT-T-8.safetensors"]
    image_diff, text_diff = _max_diff(model, hf_dir)
    assert image_diff <= 1e-5 and text_diff <= 1e-5

    # second load: from the converted cache, with the Hub unreachable
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline(offline_calls := []))
    again, _ = qclip.load(FAKE_NAME, precision="fp32", download_root=root)
    assert offline_calls == []
    assert again.transformer.resblocks[0].attn.num_heads == 4  # head count kept in the safetensors metadata
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_openai_url_is_the_last_resort(fake_name: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    root = fake_name["root"]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline(calls := []))
    used = []

    def fake_url(url: str, target: Path, sha: str) -> None:
        used.append((url, target, sha))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fake_name["source"], target)

    monkeypatch.setattr(loading, "_download_url", fake_url)
    model, _ = qclip.load(FAKE_NAME, precision="fp32", download_root=root)
    assert calls == [f"{FAKE_REPO}/config.json"]
    assert used == [(fake_name["url"], root / "ViT-T-8.pt", fake_name["sha"])]
    assert model.transformer.width == 48


def test_offline_with_nothing_cached_names_the_file_to_put_where(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline([]))
    monkeypatch.setattr(loading, "_download_url", _no_url)
    root = tmp_path / "clip-cache"
    with pytest.raises(qclip.CLIPFileNotFoundError) as err:
        qclip.load("ViT-B/16", download_root=root)
    message = str(err.value)
    assert f"Put OpenAI's file ViT-B-16.pt (SHA-256 5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f) into {root}/" in message
    assert "openai/clip-vit-base-patch16 (config.json + model.safetensors)" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message
    with pytest.raises(qclip.CLIPFileNotFoundError, match=r"Put OpenAI's file RN50\.pt") as err:
        qclip.load("RN50", download_root=root)
    assert "Hugging Face checkpoint" not in str(err.value)  # ResNet CLIPs exist only as OpenAI files


def test_online_failures_are_reported_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline([]))

    def not_found(url: str, target: Path, sha: str) -> None:
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(loading, "_download_url", not_found)
    with pytest.raises(qclip.CLIPFileNotFoundError, match=r"ViT-B-32\.pt.*Hugging Face Hub .*OpenAI URL .*404"):
        qclip.load("ViT-B/32", download_root=tmp_path)


def test_hf_hub_spec(hf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_serving(hf_dir, calls := []))
    model, _ = qclip.load(f"hf-hub:{FAKE_REPO}", precision="fp32")
    assert calls == [f"{FAKE_REPO}/config.json", f"{FAKE_REPO}/model.safetensors"]
    assert max(_max_diff(model, hf_dir)) <= 1e-5
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_offline([]))
    with pytest.raises(qclip.CLIPFileNotFoundError, match=rf"'{FAKE_REPO}' is not in the Hugging Face cache"):
        qclip.load(f"hf-hub:{FAKE_REPO}")
