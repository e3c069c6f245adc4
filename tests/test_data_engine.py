"""quantprompt.engine.data: Dassl's Datum/DatasetBase, registry lookup, transforms, samplers, DataManager."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import InterpolationMode

from quantprompt.engine.config import get_cfg_default
from quantprompt.engine.data import (
    DATASET_REGISTRY,
    DataManager,
    DatasetBase,
    DatasetWrapper,
    Datum,
    build_data_loader,
    build_dataset,
    build_sampler,
    build_transform,
    read_image,
)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _images(tmp_path: Path, n_classes: int, per_class: int, size: tuple[int, int] = (40, 30)) -> list[Datum]:
    items = []
    for label in range(n_classes):
        for k in range(per_class):
            path = tmp_path / f"c{label}_{k}.png"
            Image.new("RGB", size, (label * 40 % 256, k * 30 % 256, 90)).save(path)
            items.append(Datum(impath=str(path), label=label, classname=f"class{label}"))
    return items


def _cfg(**updates: object):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    for key, value in updates.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = getattr(node, p)
        setattr(node, leaf, value)
    return cfg


# ---- Datum / DatasetBase


def test_datum_requires_an_existing_image(tmp_path: Path) -> None:
    (item,) = _images(tmp_path, 1, 1)
    assert (item.label, item.domain, item.classname) == (0, 0, "class0")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        Datum(impath=str(tmp_path / "nope.jpg"), label=0)
    with pytest.raises(TypeError):
        Datum(impath=tmp_path / "c0_0.png")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        item.label = 3  # type: ignore[misc]


def test_dataset_base_properties(tmp_path: Path) -> None:
    items = _images(tmp_path, 3, 2)
    ds = DatasetBase(train_x=items[2:], val=items[:2], test=items)
    assert ds.num_classes == 3  # max label + 1, as Dassl
    assert ds.lab2cname == {1: "class1", 2: "class2"}
    assert ds.classnames == ["class1", "class2"]
    assert ds.train_u is None and ds.val == items[:2] and ds.test == items
    grouped = ds.split_dataset_by_label(items)
    assert list(grouped) == [0, 1, 2] and all(len(v) == 2 for v in grouped.values())
    with pytest.raises(ValueError, match="train_x is empty"):
        DatasetBase(train_x=[], test=items)


def test_generate_fewshot_follows_dassl(tmp_path: Path) -> None:
    items = _images(tmp_path, 3, 5)
    ds = DatasetBase(train_x=items)
    random.seed(5)
    got = ds.generate_fewshot_dataset(items, num_shots=2)
    # reference: Dassl's algorithm written out (per class in first-seen order, random.sample)
    random.seed(5)
    expected = []
    for label in (0, 1, 2):
        expected += random.sample([x for x in items if x.label == label], 2)
    assert got == expected
    assert ds.generate_fewshot_dataset(items, num_shots=-1) is items
    few = ds.generate_fewshot_dataset(items, num_shots=9)  # fewer than K: keep all, no repeats
    assert sorted(x.impath for x in few) == sorted(x.impath for x in items)
    rep = ds.generate_fewshot_dataset(items, num_shots=9, repeat=True)
    assert len(rep) == 27
    a, b = ds.generate_fewshot_dataset(items, items[:5], num_shots=1)
    assert len(a) == 3 and len(b) == 1


def test_check_input_domains(tmp_path: Path) -> None:
    class Domains(DatasetBase):
        domains = ["photo", "sketch"]

    ds = Domains(train_x=_images(tmp_path, 1, 1))
    ds.check_input_domains(["photo"], ["sketch"])
    with pytest.raises(ValueError, match="cartoon"):
        ds.check_input_domains(["photo"], ["cartoon"])
    with pytest.raises(ValueError, match="SOURCE_DOMAINS"):
        ds.check_input_domains([], ["sketch"])


def test_build_dataset_unknown_name_lists_registered() -> None:
    cfg = _cfg(**{"DATASET.NAME": "NoSuchDataset"})

    @DATASET_REGISTRY.register(force=True)
    class TinyProbeDataset(DatasetBase):
        pass

    with pytest.raises(ValueError, match="TinyProbeDataset"):
        build_dataset(cfg)


# ---- transforms


def test_train_transform_is_dassl_default(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cfg(**{"INPUT.RRCROP_SCALE": (0.5, 1.0)})
    tfm = build_transform(cfg, is_train=True)
    kinds = [type(t) for t in tfm.transforms]
    assert kinds == [RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize]
    rrc = tfm.transforms[0]
    assert rrc.size == (32, 32) and rrc.scale == (0.5, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC
    assert list(tfm.transforms[3].mean) == CLIP_MEAN
    out = capsys.readouterr().out
    assert "Building transform_train" in out and "+ random resized crop (size=(32, 32), scale=(0.5, 1.0))" in out
    img = Image.new("RGB", (50, 40), (200, 10, 10))
    torch.manual_seed(0)
    x = tfm(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # no crop choice: resize to INPUT.SIZE first
    plain = build_transform(cfg, is_train=True, choices=["normalize"])
    assert [type(t) for t in plain.transforms] == [Resize, ToTensor, Normalize]


def test_test_transform_resizes_and_center_crops() -> None:
    cfg = _cfg(**{"INPUT.SIZE": (24, 24), "INPUT.INTERPOLATION": "bilinear"})
    tfm = build_transform(cfg, is_train=False)
    assert [type(t) for t in tfm.transforms] == [Resize, CenterCrop, ToTensor, Normalize]
    assert tfm.transforms[0].size == 24 and tfm.transforms[1].size == (24, 24)
    img = Image.new("RGB", (60, 30), (0, 255, 0))
    x = tfm(img)
    assert x.shape == (3, 24, 24)
    expected_g = (1.0 - CLIP_MEAN[1]) / CLIP_STD[1]
    assert torch.allclose(x[1], torch.full((24, 24), expected_g), atol=1e-4)
    assert torch.equal(tfm(img), x), "test transform is deterministic"


def test_transform_errors_and_no_transform() -> None:
    with pytest.raises(ValueError, match="INPUT.INTERPOLATION.*bicubic"):
        build_transform(_cfg(**{"INPUT.INTERPOLATION": "lanczos"}), is_train=False)
    with pytest.raises(ValueError, match="unknown transform 'sharpen'"):
        build_transform(_cfg(), is_train=True, choices=["sharpen"])
    with pytest.raises(ValueError, match="randaugment"):
        build_transform(_cfg(), is_train=True, choices=["randaugment", "normalize"])
    assert build_transform(_cfg(**{"INPUT.NO_TRANSFORM": True}), is_train=True) is None


def test_other_dassl_train_transforms_give_tensors() -> None:
    cfg = _cfg(**{"INPUT.GB_K": 3})
    choices = ["random_crop", "random_translation", "random_flip", "colorjitter", "randomgrayscale",
               "gaussian_blur", "cutout", "normalize", "gaussian_noise", "instance_norm"]
    tfm = build_transform(cfg, is_train=True, choices=choices)
    x = tfm(Image.new("RGB", (32, 32), (10, 120, 200)))
    assert x.shape == (3, 32, 32) and torch.isfinite(x).all()


# ---- samplers, wrapper, loaders


def test_build_sampler(tmp_path: Path) -> None:
    items = _images(tmp_path, 2, 2)
    assert list(build_sampler("SequentialSampler", data_source=items)) == [0, 1, 2, 3]
    torch.manual_seed(0)
    order = list(build_sampler("RandomSampler", data_source=items))
    assert sorted(order) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="RandomDomainSampler.*not implemented"):
        build_sampler("RandomDomainSampler", data_source=items)
    with pytest.raises(ValueError, match="Unknown sampler type"):
        build_sampler("Shuffle", data_source=items)


def test_dataset_wrapper_batch_dict(tmp_path: Path) -> None:
    items = _images(tmp_path, 2, 2)
    cfg = _cfg(**{"DATALOADER.K_TRANSFORMS": 2, "DATALOADER.RETURN_IMG0": True})
    tfm = build_transform(cfg, is_train=True)
    sample = DatasetWrapper(cfg, items, transform=tfm, is_train=True)[3]
    assert sample["label"] == 1 and sample["domain"] == 0 and sample["index"] == 3
    assert sample["impath"] == items[3].impath
    assert isinstance(sample["img"], list) and len(sample["img"]) == 2  # K transforms
    assert sample["img0"].shape == (3, 32, 32)
    # K applies to training only; a list of transforms gives img, img2
    test_tfm = build_transform(cfg, is_train=False)
    multi = DatasetWrapper(cfg, items, transform=[test_tfm, test_tfm], is_train=False)[0]
    assert multi["img"].shape == (3, 32, 32) and torch.equal(multi["img"], multi["img2"])
    raw = DatasetWrapper(_cfg(), items, transform=None)[0]
    assert isinstance(raw["img"], Image.Image)
    with pytest.raises(ValueError, match="K_TRANSFORMS"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)


def test_build_data_loader_drop_last_rule(tmp_path: Path) -> None:
    items = _images(tmp_path, 2, 3)  # 6 items
    cfg = _cfg()
    tfm = build_transform(cfg, is_train=False)
    train = build_data_loader(cfg, "RandomSampler", items, batch_size=4, tfm=tfm, is_train=True)
    assert len(train) == 1  # drop_last when at least one full batch
    small = build_data_loader(cfg, "RandomSampler", items, batch_size=8, tfm=tfm, is_train=True)
    assert len(small) == 1 and next(iter(small))["img"].shape[0] == 6
    test = build_data_loader(cfg, "SequentialSampler", items, batch_size=4, tfm=tfm, is_train=False)
    assert [b["img"].shape[0] for b in test] == [4, 2]
    with pytest.raises(ValueError, match="empty data source"):
        build_data_loader(cfg, "SequentialSampler", [], batch_size=4, tfm=tfm)


def test_read_image_is_rgb(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(path)
    img = read_image(str(path))
    assert img.mode == "RGB" and img.size == (8, 8)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))


def test_data_manager(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = _images(tmp_path, 3, 4)

    @DATASET_REGISTRY.register(force=True)
    class InMemoryProbe(DatasetBase):
        def __init__(self, cfg):  # noqa: ANN001
            super().__init__(train_x=items[:9], val=items[9:], test=items)

    cfg = _cfg(**{"DATASET.NAME": "InMemoryProbe", "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
                  "DATALOADER.TEST.BATCH_SIZE": 5, "VERBOSE": True})
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    assert "Loading dataset: InMemoryProbe" in out and "# train_x" in out and "# classes" in out
    assert dm.num_classes == 3 and dm.num_source_domains == 0
    assert dm.lab2cname == {0: "class0", 1: "class1", 2: "class2"}
    assert dm.dataset.classnames == ["class0", "class1", "class2"]
    assert dm.train_loader_u is None
    torch.manual_seed(0)
    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (4, 3, 32, 32) and batch["label"].dtype == torch.int64
    assert len(dm.train_loader_x) == 2  # 9 items, batch 4, drop_last
    assert sum(b["img"].shape[0] for b in dm.test_loader) == 12
    assert sum(b["img"].shape[0] for b in dm.val_loader) == 3
    labels = [int(x) for b in dm.test_loader for x in b["label"]]
    assert labels == [x.label for x in items], "test loader is sequential"

    custom = DataManager(cfg, custom_tfm_train=ToTensor(), custom_tfm_test=ToTensor())
    assert "* Using custom transform for training" in capsys.readouterr().out
    assert next(iter(custom.test_loader))["img"].shape == (5, 3, 30, 40)
