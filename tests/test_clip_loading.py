"""quantprompt.clip.load on local files: each OpenAI format, precision handling and every bad-input error."""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

import pytest
import torch

from quantprompt import clip as qclip
from quantprompt.clip import loading

# Tracing a model (to write a JIT archive like OpenAI's) warns about traced Python conditions; expected here.
pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")]

SMALL = {"text_layers": 2, "vision_layers": 2}  # fewer layers: faster JIT tracing, same code paths


def _features(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(qclip.tokenize(["a dog", "a cat", "a", "b"]))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_features(a), _features(b)))


# ------------------------------------------------------------------------------------------------ load paths
def test_openai_jit_archive(tmp_path: Path) -> None:
    reference = qclip.tiny(seed=0, **SMALL)
    example = (torch.zeros(1, 3, 32, 32), qclip.tokenize(["a photo"]))
    traced = torch.jit.trace(reference, example, check_trace=False)
    torch.jit.save(traced, str(tmp_path / "ViT-tiny.pt"))
    loaded, _ = qclip.load(tmp_path / "ViT-tiny.pt", precision="fp32")
    assert type(loaded).__name__ == "CLIP" and not isinstance(loaded, torch.jit.ScriptModule)
    assert _same(loaded, reference)


def test_openai_resnet_state_dict(tmp_path: Path) -> None:
    reference = qclip.tiny(seed=2, arch="resnet")
    state = {k: v for k, v in reference.state_dict().items()}
    state["input_resolution"] = torch.tensor(32)  # OpenAI's JIT state dicts carry these scalars; they are dropped
    torch.save(state, tmp_path / "RN-tiny.pt")
    loaded, preprocess = qclip.load(str(tmp_path / "RN-tiny.pt"), precision="fp32")
    assert _same(loaded, reference)
    assert len(loaded.visual.layer1) == 1


def test_openai_layout_safetensors_and_wrapped_state_dict(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    reference = qclip.tiny(seed=4, **SMALL)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert _same(qclip.load(tmp_path / "w.safetensors", precision="fp32")[0], reference)
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    assert _same(qclip.load(tmp_path / "ckpt.pth", precision="fp32")[0], reference)


def test_load_weights_keeps_openai_fp16_values(tmp_path: Path) -> None:
    from quantprompt.clip._openai import openai_clip

    model = qclip.tiny(seed=0, **SMALL)
    openai_clip().model.convert_weights(model)  # as OpenAI ships: fp16 linear/conv/attention tensors
    torch.save(model.state_dict(), tmp_path / "half.pt")
    loaded = qclip.load_weights(tmp_path / "half.pt")
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded.visual.conv1.weight, model.visual.conv1.weight.float())


# ------------------------------------------------------------------------------------------------- precision
def test_fp16_on_cpu_is_promoted_with_one_line_notice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="quantprompt.clip"):
        model, _ = qclip.load("tiny-vit")  # default precision fp16, device cpu
    assert model.dtype == torch.float32
    notices = [r.getMessage() for r in caplog.records if r.name == "quantprompt.clip"]
    assert len(notices) == 1 and "fp32" in notices[0] and "\n" not in notices[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="quantprompt.clip"):
        qclip.load("tiny-vit", precision="fp32")
        qclip.load("tiny-vit", precision="amp")
    assert not caplog.records


def test_fp16_off_cpu_uses_openai_mixed_half_precision() -> None:
    model, _ = qclip.load("tiny-vit", device="meta", precision="fp16")  # meta: a non-CPU device without a GPU
    assert model.dtype == torch.float16
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    assert model.text_projection.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32  # OpenAI keeps LayerNorms and embeddings in fp32
    assert model.token_embedding.weight.dtype == torch.float32
    assert model.visual.conv1.weight.device.type == "meta"


def test_bad_precision() -> None:
    with pytest.raises(qclip.CLIPLoadError, match="precision must be one of .*'bf16'"):
        qclip.load("tiny-vit", precision="bf16")


# ------------------------------------------------------------------------------------------------ bad inputs
def test_unknown_name_lists_available_models() -> None:
    with pytest.raises(qclip.CLIPLoadError, match=r"unknown CLIP model 'ViT-H/99'.*ViT-B/16.*tiny-vit") as err:
        qclip.load("ViT-H/99")
    assert not isinstance(err.value, FileNotFoundError)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ViT-B-16.pt"
    with pytest.raises(qclip.CLIPFileNotFoundError, match=str(missing)) as err:
        qclip.load(missing)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    with pytest.raises(FileNotFoundError, match="weights.pt"):
        qclip.load("weights.pt")


def test_sha256_mismatch_of_cached_openai_file(tmp_path: Path) -> None:
    (tmp_path / "ViT-B-16.pt").write_bytes(b"not the real weights")
    with pytest.raises(qclip.CLIPLoadError, match=r"ViT-B-16\.pt does not match OpenAI's SHA-256") as err:
        qclip.load("ViT-B/16", download_root=tmp_path)
    assert "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" in str(err.value)
    assert hashlib.sha256(b"not the real weights").hexdigest() in str(err.value)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = qclip.save_tiny(tmp_path / f"full{suffix}", **SMALL)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(qclip.CLIPLoadError, match=rf"cut\{suffix} is truncated or corrupt"):
        qclip.load(cut, precision="fp32")


def test_truncated_jit_archive(tmp_path: Path) -> None:
    traced = torch.jit.trace(qclip.tiny(seed=0, text_layers=1, vision_layers=1),
                             (torch.zeros(1, 3, 32, 32), qclip.tokenize(["a"])), check_trace=False)
    torch.jit.save(traced, str(tmp_path / "jit.pt"))
    data = (tmp_path / "jit.pt").read_bytes()
    (tmp_path / "jit.pt").write_bytes(data[: len(data) - 2000])
    with pytest.raises(qclip.CLIPLoadError, match="jit.pt is truncated or corrupt"):
        qclip.load(tmp_path / "jit.pt", precision="fp32")


def test_empty_and_garbage_files(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(qclip.CLIPLoadError, match="empty.pt is empty"):
        qclip.load(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is no checkpoint at all" * 10)
    with pytest.raises(qclip.CLIPLoadError, match="junk.pt"):
        qclip.load(tmp_path / "junk.pt")


def test_non_clip_state_dict(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(qclip.CLIPLoadError, match=r"linear.pt is not a CLIP state dict in OpenAI layout.*missing"):
        qclip.load(tmp_path / "linear.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(qclip.CLIPLoadError, match="holds a list, not a state dict"):
        qclip.load(tmp_path / "list.pt")
    state = qclip.tiny(seed=0, **SMALL).state_dict()
    state["visual.proj"] = torch.zeros(5, 5)  # right names, wrong shapes
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(qclip.CLIPLoadError, match="shapes.pt does not fit the CLIP model"):
        qclip.load(tmp_path / "shapes.pt")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # needs full unpickling: refused
    with pytest.raises(qclip.CLIPLoadError, match="weights_only=True"):
        qclip.load(tmp_path / "module.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": object()}, f, protocol=2)
    with pytest.raises(qclip.CLIPLoadError, match="plain.pkl"):
        qclip.load(tmp_path / "plain.pkl")


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(qclip.CLIPFileNotFoundError, match="without config.json"):
        qclip.load(tmp_path)


# --------------------------------------------------------------------------------------- names, cache, download
def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(qclip.ENV_ROOT, raising=False)
    assert qclip.cache_dir() == Path("~/.cache/clip").expanduser()
    monkeypatch.setenv(qclip.ENV_ROOT, str(tmp_path / "env"))
    assert qclip.cache_dir() == tmp_path / "env"
    assert qclip.cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_available_models_and_tokenize() -> None:
    names = qclip.available_models()
    assert {"RN50", "ViT-B/32", "ViT-B/16", "ViT-L/14@336px", "tiny-vit", "tiny-resnet"} <= set(names)
    tokens = qclip.tokenize(["a photo of a dog."])
    assert tokens.shape == (1, 77) and tokens[0, 0].item() == 49406 and tokens.max().item() == 49407


def test_url_download_checks_sha256(tmp_path: Path) -> None:
    source = tmp_path / "src" / "model.bin"
    source.parent.mkdir()
    source.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "model.bin"
    loading._download_url(source.as_uri(), target, good)
    assert target.read_bytes() == source.read_bytes()
    other = tmp_path / "cache" / "other.bin"
    with pytest.raises(qclip.CLIPLoadError, match="SHA-256"):
        loading._download_url(source.as_uri(), other, "0" * 64)
    assert sorted(p.name for p in other.parent.iterdir()) == ["model.bin"]  # nothing half-written left behind
