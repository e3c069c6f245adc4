"""Deployment from a packed prompt: predictions of the trained model, text cache, errors, inspect, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from quantprompt import clip as qclip
from quantprompt import prompting, quant
from quantprompt.cli import main as cli_main
from quantprompt.deploy import Classifier, DeployError, classify, classnames_sha256, inspect_qpt, inspect_text

NAMES = ["cat", "dog", "sports car", "oak tree", "sail boat"]


def write_images(folder: Path, n: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def trained_model(method: str, seed: int = 0) -> tuple[torch.nn.Module, dict, object]:
    """A q-model on the tiny CLIP with its learned tensors moved away from their init (as after training)."""
    clip_model, preprocess = qclip.load("tiny-vit", precision="fp32")
    options = {"n_ctx": 4, "ctx_init": "a photo of a", "precision": "fp32", "bits": 2}
    if method == "qcoop":
        options["class_token_position"] = "middle"
    if method == "qmaple":
        options = {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": 3, "precision": "fp32", "bits": 2}
    torch.manual_seed(seed)
    model = prompting.build(method, clip_model, NAMES, **options)
    with torch.no_grad():
        for p in model.prompt_learner.parameters():
            p.add_(torch.randn_like(p) * 0.5 * (p.std() if p.numel() > 1 else 1.0))
    quant.step(model)
    model.eval()
    return model, options, preprocess


def export(model: torch.nn.Module, options: dict, method: str, path: Path, with_names: bool = True) -> Path:
    meta = {
        "method": method,
        "trainer": method.upper(),
        "bits": options["bits"],
        "n_ctx": options["n_ctx"],
        "class_token_position": options.get("class_token_position", "end"),
        "classnames_sha256": classnames_sha256(NAMES),
        "clip": "tiny-vit",
        "options": options,
    }
    if with_names:
        meta["classnames"] = NAMES
    path.write_bytes(quant.export(model, metadata=meta))
    return path


@pytest.fixture(scope="module")
def qcoop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("qcoop")
    model, options, preprocess = trained_model("qcoop")
    images = write_images(tmp / "images")
    x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        logits = model(x)
    return {
        "tmp": tmp,
        "qpt": export(model, options, "qcoop", tmp / "task.qpt"),
        "images": images,
        "logits": logits,
        "options": options,
        "model": model,
        "x": x,
    }


def test_same_predictions_as_the_trained_model(qcoop: dict) -> None:
    clf = Classifier(qcoop["qpt"], clip="tiny-vit")
    torch.testing.assert_close(clf.logits(qcoop["x"]), qcoop["logits"], rtol=0, atol=1e-5)
    preds = clf.classify([qcoop["tmp"] / "images"], topk=3)
    ref = qcoop["logits"].softmax(-1)
    assert [p.image for p in preds] == [str(p) for p in qcoop["images"]]
    for pred, probs in zip(preds, ref):
        top = probs.topk(3)
        assert [c for c, _ in pred.topk] == [NAMES[i] for i in top.indices.tolist()]
        assert [v for _, v in pred.topk] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert clf.text_passes == 1  # a whole folder: one text pass


@pytest.mark.parametrize("method", ["qcocoop", "qmaple"])
def test_other_quantized_methods(tmp_path: Path, method: str) -> None:
    model, options, preprocess = trained_model(method, seed=1)
    images = write_images(tmp_path / "images", n=3)
    x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        ref = model(x)
    qpt = export(model, options, method, tmp_path / f"{method}.qpt")
    preds = classify(images, qpt, clip="tiny-vit", topk=len(NAMES))
    for pred, row in zip(preds, ref.softmax(-1)):
        assert [c for c, _ in pred.topk] == [NAMES[i] for i in row.argsort(descending=True).tolist()]
        assert [v for _, v in pred.topk] == pytest.approx(sorted(row.tolist(), reverse=True), abs=1e-5)


def test_text_cache_file_is_reused(qcoop: dict) -> None:
    cache = qcoop["tmp"] / "cache" / "task.text.safetensors"
    first = Classifier(qcoop["qpt"], clip="tiny-vit", text_cache=cache)
    a = first.classify(qcoop["images"][:2], topk=2)
    assert cache.is_file() and first.text_passes == 1
    second = Classifier(qcoop["qpt"], clip="tiny-vit", text_cache=cache)
    b = second.classify(qcoop["images"][:2], topk=2)
    assert second.text_passes == 0 and [p.topk for p in a] == [p.topk for p in b]
    # a cache written for other class names is not used: recomputed and replaced
    other = Classifier(qcoop["qpt"], clip="tiny-vit", text_cache=cache)
    other.classnames = list(reversed(NAMES))
    assert other.cache_key() != second.cache_key()
    other.text_features()
    assert other.text_passes == 1
    cache.write_bytes(b"not a safetensors file")
    again = Classifier(qcoop["qpt"], clip="tiny-vit", text_cache=cache)
    again.text_features()
    assert again.text_passes == 1


def test_mismatched_clip_is_refused(qcoop: dict) -> None:
    with pytest.raises(DeployError, match="trained on CLIP 'tiny-vit', but --clip is 'tiny-resnet'"):
        Classifier(qcoop["qpt"], clip="tiny-resnet")
    with pytest.raises(DeployError, match="trained on CLIP 'tiny-vit', but --clip is 'ViT-B/16'"):
        Classifier(qcoop["qpt"], clip="ViT-B/16")


def test_prompt_that_does_not_fit_the_clip(qcoop: dict) -> None:
    # the right name but other weights (another text width): caught when the packed tensors are loaded
    wide = qclip.tiny(seed=0, arch="vit", text_width=64, text_heads=4)
    with pytest.raises(DeployError, match="does not fit CLIP 'tiny-vit'.*shape"):
        Classifier(qcoop["qpt"], clip="tiny-vit", clip_model=wide)


def test_corrupt_qpt(qcoop: dict, tmp_path: Path) -> None:
    blob = qcoop["qpt"].read_bytes()
    truncated = tmp_path / "truncated.qpt"
    truncated.write_bytes(blob[:-7])
    with pytest.raises(DeployError, match="not a valid packed prompt.*truncated"):
        Classifier(truncated, clip="tiny-vit")
    flipped = tmp_path / "flipped.qpt"
    bad = bytearray(blob)
    bad[-3] ^= 0xFF
    flipped.write_bytes(bytes(bad))
    with pytest.raises(DeployError, match="CRC32 mismatch"):
        Classifier(flipped, clip="tiny-vit")
    other = tmp_path / "model.pth.tar"
    other.write_bytes(b"PK\x03\x04 a zip, not a qpt")
    with pytest.raises(DeployError, match="bad magic"):
        inspect_qpt(other)
    with pytest.raises(DeployError, match="not found"):
        Classifier(tmp_path / "missing.qpt")


def test_classnames_file_and_hash_only_prompt(qcoop: dict, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    assert Classifier(qcoop["qpt"], clip="tiny-vit", classnames=names).classnames == NAMES
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("\n".join(reversed(NAMES)))
    with pytest.raises(DeployError, match="first difference at line 1"):
        Classifier(qcoop["qpt"], clip="tiny-vit", classnames=wrong)
    hashed = export(qcoop["model"], qcoop["options"], "qcoop", tmp_path / "hashed.qpt", with_names=False)
    with pytest.raises(DeployError, match="stores only the hash"):
        Classifier(hashed, clip="tiny-vit")
    with pytest.raises(DeployError, match="sha256 of the names"):
        Classifier(hashed, clip="tiny-vit", classnames=wrong)
    clf = Classifier(
        hashed, clip="tiny-vit", classnames=names
    )  # default --clip: the one in the file works too
    torch.testing.assert_close(clf.logits(qcoop["x"]), qcoop["logits"], rtol=0, atol=1e-5)


def test_inspect(qcoop: dict) -> None:
    info = inspect_qpt(qcoop["qpt"])
    assert info["metadata"]["method"] == "qcoop" and info["sizes"]["payload_bytes"] == 4 * 48 * 2 // 8 + 8
    text = inspect_text(info)
    for needle in (
        "method:               qcoop",
        "bits:                 2",
        "n_ctx:                4",
        "class_token_position: middle",
        "clip:                 tiny-vit",
        "classnames:           5 (cat, dog, sports car, oak tree, sail boat)",
        "prompt_learner.ctx",
        "payload (indices + fp16 codebooks): 56 B (0.06KB)",
        f"total file: {qcoop['qpt'].stat().st_size} B",
        "same tensors in fp16: 384 B",
    ):
        assert needle in text, needle


def test_cli_classify_and_inspect(qcoop: dict, capsys: pytest.CaptureFixture) -> None:
    assert (
        cli_main(
            [
                "classify",
                "--clip",
                "tiny-vit",
                "--prompt",
                str(qcoop["qpt"]),
                "--topk",
                "2",
                str(qcoop["images"][0]),
                str(qcoop["images"][1]),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    ref = qcoop["logits"].softmax(-1)
    assert len(lines) == 2
    best = NAMES[int(ref[0].argmax())]
    assert lines[0].startswith(f"{qcoop['images'][0]}: {best} (")
    assert cli_main(["classify", "--prompt", str(qcoop["qpt"]), "--json", str(qcoop["images"][0])]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["topk"][0]["class"] == best and len(rec["topk"]) == 5
    assert (
        cli_main(
            ["classify", "--clip", "tiny-resnet", "--prompt", str(qcoop["qpt"]), str(qcoop["images"][0])]
        )
        == 2
    )
    assert "trained on CLIP 'tiny-vit'" in capsys.readouterr().err
    assert cli_main(["inspect", str(qcoop["qpt"])]) == 0
    assert "Size breakdown:" in capsys.readouterr().out
    assert cli_main(["inspect", "--json", str(qcoop["qpt"])]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["clip"] == "tiny-vit"
    assert cli_main(["classify", "--prompt", str(qcoop["qpt"]), str(qcoop["tmp"] / "nope.png")]) == 2
    assert "image" in capsys.readouterr().err
