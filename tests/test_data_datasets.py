"""datasets/: every CoOp dataset class reads a make_dataset tree; few-shot cache; base/new; errors."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # datasets/ is imported from the repo root, as in CoOp
    sys.path.insert(0, str(REPO))

import datasets  # noqa: E402
from datasets import common  # noqa: E402
from quantprompt.engine.compat import DATASET_REGISTRY, DataManager, build_dataset, get_cfg_default  # noqa: E402
from quantprompt.testing import DATASET_NAMES, make_dataset  # noqa: E402

# CoOp's folder names (datasets/*.py of KaiyangZhou/CoOp)
COOP_DIRS = {
    "ImageNet": "imagenet", "Caltech101": "caltech-101", "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Food101": "food-101",
    "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397", "DescribableTextures": "dtd", "EuroSAT": "eurosat",
    "UCF101": "ucf101", "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet-sketch",
    "ImageNetA": "imagenet-adversarial", "ImageNetR": "imagenet-rendition",
}
TEST_ONLY = {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"}
CONFIGS = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
    # the demo world's datasets (quantprompt.world)
    "world_shapes": "WorldShapes", "world_patterns": "WorldPatterns", "world_objects": "WorldObjects",
    "world_sketches": "WorldSketches", "world_paintings": "WorldPaintings",
}


def make_cfg(root: Path, name: str, shots: int = -1, subsample: str = "all", seed: int = 1):
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # added by train.py's extend_cfg, as in CoOp
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 8
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    return cfg


def impaths(items) -> list[str]:  # noqa: ANN001
    return [x.impath for x in items]


def test_all_fifteen_registered_with_coop_folders() -> None:
    names = set(DATASET_REGISTRY.registered_names())
    assert set(DATASET_NAMES) <= names
    for name, folder in COOP_DIRS.items():
        assert DATASET_REGISTRY.get(name).dataset_dir == folder
        assert getattr(datasets, name) is DATASET_REGISTRY.get(name)


def test_dataset_configs_name_the_classes() -> None:
    from yacs.config import CfgNode

    files = sorted((REPO / "configs" / "datasets").glob("*.yaml"))
    assert {f.stem for f in files} == set(CONFIGS)
    for f in files:
        with open(f) as fh:
            node = CfgNode.load_cfg(fh)
        assert node.DATASET.NAME == CONFIGS[f.stem]
        cfg = get_cfg_default()
        cfg.merge_from_file(str(f))
        assert cfg.DATASET.NAME in DATASET_REGISTRY.registered_names()


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_each_dataset_reads_a_make_dataset_tree(tmp_path: Path, name: str) -> None:
    info = make_dataset(tmp_path, name, n_classes=5, images_per_class=6, seed=0)
    ds = build_dataset(make_cfg(tmp_path, name))
    assert type(ds).__name__ == name
    assert ds.num_classes == 5
    assert ds.classnames == info.classnames
    assert ds.lab2cname == dict(enumerate(info.classnames))
    if name in TEST_ONLY:
        assert ds.train_x is ds.test or impaths(ds.train_x) == impaths(ds.test)
        assert len(ds.test) == 30 and not ds.val
    elif name == "ImageNet":
        assert len(ds.train_x) == info.num_train and ds.val is ds.test and len(ds.test) == info.num_test
    else:
        assert (len(ds.train_x), len(ds.val), len(ds.test)) == (info.num_train, info.num_val, info.num_test)
    for item in ds.test:
        assert Path(item.impath).is_file() and Path(item.impath).is_absolute()
        assert ds.lab2cname[item.label] == item.classname


@pytest.mark.parametrize("name", ["Caltech101", "ImageNet", "FGVCAircraft"])
def test_fewshot_deterministic_cached_as_json_and_reused(tmp_path: Path, name: str) -> None:
    info = make_dataset(tmp_path, name, n_classes=4, images_per_class=12, seed=0)
    full = build_dataset(make_cfg(tmp_path, name))
    state = random.getstate()
    a = build_dataset(make_cfg(tmp_path, name, shots=2, seed=3))
    assert random.getstate() == state, "sampling does not disturb the global RNG"
    assert len(a.train_x) == 8 and sorted({x.label for x in a.train_x}) == [0, 1, 2, 3]
    # same picks as Dassl/CoOp: generate_fewshot_dataset right after random.seed(SEED)
    random.seed(3)
    expected = full.generate_fewshot_dataset(full.train_x, num_shots=2)
    assert impaths(a.train_x) == impaths(expected)
    if name != "ImageNet":
        assert len(a.val) == 4 * 2  # min(K, 4) per class from val (val has 2 per class here)

    cache = info.dataset_dir / "split_fewshot" / "shot_2-seed_3.json"
    assert cache.is_file()
    assert not list(info.dataset_dir.rglob("*.pkl")), "never pickle"
    data = json.loads(cache.read_text())
    assert data["num_shots"] == 2 and data["seed"] == 3
    assert all(isinstance(r, list) and len(r) == 3 and not r[0].startswith("/") for r in data["train"])

    # reused: edit the cache (same source split), the next run must read it rather than sample
    data["train"] = data["train"][:1]
    cache.write_text(json.dumps(data))
    b = build_dataset(make_cfg(tmp_path, name, shots=2, seed=3))
    assert impaths(b.train_x) == impaths(a.train_x)[:1]

    other_seed = build_dataset(make_cfg(tmp_path, name, shots=2, seed=4))
    assert impaths(other_seed.train_x) != impaths(a.train_x)
    assert (info.dataset_dir / "split_fewshot" / "shot_2-seed_4.json").is_file()


def test_fewshot_cache_from_another_split_is_redrawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dataset(tmp_path, "DTD", n_classes=3, images_per_class=10, seed=0)
    first = build_dataset(make_cfg(tmp_path, "DescribableTextures", shots=2, seed=1))
    split_path = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    split = json.loads(split_path.read_text())
    picked = {x.impath for x in first.train_x}
    keep = [r for r in split["train"] if str(tmp_path / "dtd" / "images" / r[0]) not in picked]
    split["train"] = keep  # a different split without the images drawn before
    split_path.write_text(json.dumps(split))
    capsys.readouterr()
    second = build_dataset(make_cfg(tmp_path, "DescribableTextures", shots=2, seed=1))
    assert "drawing it again" in capsys.readouterr().out
    assert len(second.train_x) == len(first.train_x) == 6
    assert not picked & {x.impath for x in second.train_x}


def test_negative_seed_is_not_cached(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "EuroSAT", n_classes=3, images_per_class=10, seed=0)
    ds = build_dataset(make_cfg(tmp_path, "EuroSAT", shots=2, seed=-1))
    assert len(ds.train_x) == 6
    assert not (info.dataset_dir / "split_fewshot").exists()


@pytest.mark.parametrize("n_classes", [5, 6])
def test_base_new_subsampling(tmp_path: Path, n_classes: int) -> None:
    info = make_dataset(tmp_path, "OxfordPets", n_classes=n_classes, images_per_class=5, seed=0)
    m = math.ceil(n_classes / 2)
    base = build_dataset(make_cfg(tmp_path, "OxfordPets", subsample="base"))
    new = build_dataset(make_cfg(tmp_path, "OxfordPets", subsample="new"))
    assert base.classnames == info.classnames[:m]
    assert new.classnames == info.classnames[m:]
    assert base.num_classes == m and new.num_classes == n_classes - m
    for ds, offset in ((base, 0), (new, m)):
        for split in (ds.train_x, ds.val, ds.test):
            assert {x.label for x in split} == set(range(ds.num_classes))  # relabelled from 0
            for x in split:
                assert x.classname == info.classnames[x.label + offset]
    # the CoOp static helpers work on plain lists too
    full = build_dataset(make_cfg(tmp_path, "OxfordPets"))
    (only_new,) = datasets.OxfordPets.subsample_classes(full.test, subsample="new")
    assert impaths(only_new) == impaths(new.test)
    assert datasets.OxfordPets.subsample_classes(full.test, subsample="all") == (full.test,)


def test_fewshot_then_base_new(tmp_path: Path) -> None:
    make_dataset(tmp_path, "Food101", n_classes=4, images_per_class=10, seed=0)
    ds = build_dataset(make_cfg(tmp_path, "Food101", shots=3, subsample="new", seed=2))
    assert ds.num_classes == 2 and len(ds.train_x) == 6
    assert len(ds.test) == 2 * 3  # test is never few-shot


def test_data_manager_on_a_dataset(tmp_path: Path) -> None:
    make_dataset(tmp_path, "Caltech101", n_classes=4, images_per_class=10, seed=0)
    cfg = make_cfg(tmp_path, "Caltech101", shots=4, subsample="base")
    dm = DataManager(cfg)
    assert dm.num_classes == 2 and dm.dataset.classnames == [dm.lab2cname[i] for i in range(2)]
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].shape == (4, 3, 32, 32)
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert set(batch["label"].tolist()) <= {0, 1}
    assert sum(len(b["label"]) for b in dm.test_loader) == len(dm.dataset.test)


def test_read_split_and_save_split_roundtrip(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "SUN397", n_classes=3, images_per_class=5, seed=0)
    image_dir = str(info.dataset_dir / "SUN397")
    split_path = str(info.dataset_dir / "split_zhou_SUN397.json")
    train, val, test = datasets.OxfordPets.read_split(split_path, image_dir)
    out = str(tmp_path / "copy.json")
    datasets.OxfordPets.save_split(train, val, test, out, image_dir)
    assert json.loads(Path(out).read_text()) == json.loads(Path(split_path).read_text())


# ---- errors


def test_missing_root_names_path_and_section(tmp_path: Path) -> None:
    with pytest.raises(common.DatasetNotFoundError) as err:
        build_dataset(make_cfg(tmp_path / "nowhere", "Caltech101"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "caltech-101") in msg and "DATASETS.md#caltech101" in msg
    assert not (tmp_path / "nowhere").exists(), "nothing is created for a missing dataset"


def test_missing_split_file(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "OxfordFlowers", n_classes=2, images_per_class=3, seed=0)
    (info.dataset_dir / "split_zhou_OxfordFlowers.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"split_zhou_OxfordFlowers\.json.*DATASETS\.md#flowers102"):
        build_dataset(make_cfg(tmp_path, "OxfordFlowers"))


def test_missing_image(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "UCF101", n_classes=2, images_per_class=3, seed=0)
    split = json.loads((info.dataset_dir / "split_zhou_UCF101.json").read_text())
    victim = info.dataset_dir / "UCF-101-midframes" / split["test"][0][0]
    victim.unlink()
    with pytest.raises(common.DatasetNotFoundError) as err:
        build_dataset(make_cfg(tmp_path, "UCF101"))
    msg = str(err.value)
    assert str(victim) in msg and "split_zhou_UCF101.json" in msg and "DATASETS.md#ucf101" in msg


def test_missing_files_of_folder_datasets(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "ImageNetR", n_classes=2, images_per_class=2, seed=0)
    (info.dataset_dir / "classnames.txt").unlink()
    with pytest.raises(common.DatasetNotFoundError, match=r"classnames\.txt.*DATASETS\.md#imagenet-r"):
        build_dataset(make_cfg(tmp_path, "ImageNetR"))
    air = make_dataset(tmp_path, "FGVCAircraft", n_classes=2, images_per_class=3, seed=0)
    (air.dataset_dir / "images_variant_val.txt").unlink()
    with pytest.raises(common.DatasetNotFoundError, match=r"images_variant_val\.txt.*#fgvcaircraft"):
        build_dataset(make_cfg(tmp_path, "FGVCAircraft"))
    sketch = make_dataset(tmp_path, "ImageNetSketch", n_classes=2, images_per_class=2, seed=0)
    lines = (sketch.dataset_dir / "classnames.txt").read_text().splitlines()
    (sketch.dataset_dir / "classnames.txt").write_text(lines[0] + "\n")
    with pytest.raises(common.DatasetNotFoundError, match="imagenet-sketch"):
        build_dataset(make_cfg(tmp_path, "ImageNetSketch"))


def test_bad_dataset_name_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        build_dataset(make_cfg(tmp_path, "Caltech102"))
    msg = str(err.value)
    assert "Caltech102" in msg and all(name in msg for name in DATASET_NAMES)
    assert "do you mean [Caltech101]" in msg


def test_bad_subsample_value(tmp_path: Path) -> None:
    make_dataset(tmp_path, "DTD", n_classes=2, images_per_class=3, seed=0)
    with pytest.raises(ValueError, match="DATASET.SUBSAMPLE_CLASSES='half'"):
        build_dataset(make_cfg(tmp_path, "DescribableTextures", subsample="half"))


def test_docs_sections_exist() -> None:
    text = (REPO / "DATASETS.md").read_text()
    headings = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    for name in DATASET_NAMES:
        assert common.DOCS_SECTIONS[name] in headings, name
        anchor = common.docs_ref(name).split("#", 1)[1]
        assert f"(#{anchor})" in text, anchor


def test_reimport_does_not_fail() -> None:
    import importlib

    importlib.reload(datasets.caltech101)
    assert DATASET_REGISTRY.get("Caltech101").__module__ == "datasets.caltech101"


_BATCHES_SCRIPT = r"""
import json, random, sys
sys.path.insert(0, {repo!r})
import numpy as np, torch
import datasets
from quantprompt.engine.compat import BACKEND, DataManager, get_cfg_default
cfg = get_cfg_default()
cfg.DATASET.SUBSAMPLE_CLASSES = "base"
cfg.DATASET.ROOT = {root!r}; cfg.DATASET.NAME = "Caltech101"; cfg.DATASET.NUM_SHOTS = 3; cfg.SEED = 5
cfg.INPUT.SIZE = (32, 32); cfg.INPUT.INTERPOLATION = "bicubic"
cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
cfg.DATALOADER.NUM_WORKERS = 0; cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4; cfg.VERBOSE = False; cfg.USE_CUDA = False
random.seed(5); np.random.seed(5); torch.manual_seed(5)
dm = DataManager(cfg)
rows = []
for loader in (dm.train_loader_x, dm.test_loader):
    for b in loader:
        rows.append([list(b["impath"]), b["label"].tolist(), b["img"].double().sum().item()])
print(json.dumps({{"backend": BACKEND, "classnames": dm.dataset.classnames, "rows": rows}}))
"""


def test_engine_and_dassl_give_identical_batches(tmp_path: Path) -> None:
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("dassl") is None:
        pytest.skip("Dassl.pytorch is not importable here; the built-in engine path is tested above")
    results = {}
    for backend in ("engine", "dassl"):
        root = tmp_path / backend
        make_dataset(root, "Caltech101", n_classes=6, images_per_class=12, seed=0)
        env = {**os.environ, "QUANTPROMPT_BACKEND": backend}
        code = _BATCHES_SCRIPT.format(repo=str(REPO), root=str(root))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        assert results[backend]["backend"] == backend
    engine, dassl = results["engine"], results["dassl"]
    assert engine["classnames"] == dassl["classnames"]
    for a, b in zip(engine["rows"], dassl["rows"]):
        assert [p.replace("/engine/", "/x/") for p in a[0]] == [p.replace("/dassl/", "/x/") for p in b[0]]
        assert a[1] == b[1] and a[2] == pytest.approx(b[2], abs=1e-6)
