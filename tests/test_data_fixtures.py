"""make_dataset: CoOp's on-disk layouts, read back by an independent reader that follows CoOp's formats."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantprompt.testing import DATASET_NAMES, make_dataset, resolve_name

REPO = Path(__file__).resolve().parents[1]

# CoOp's folder names, image folders and split files (from CoOp's dataset classes and DATASETS.md).
SPLIT_LAYOUT = {
    "Caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "OxfordPets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "StanfordCars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "OxfordFlowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "Food101": ("food-101", "images", "split_zhou_Food101.json"),
    "SUN397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "DescribableTextures": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "EuroSAT": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "UCF101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}
VARIANT_LAYOUT = {
    "ImageNetSketch": ("imagenet-sketch", "images"),
    "ImageNetA": ("imagenet-adversarial", "imagenet-a"),
    "ImageNetR": ("imagenet-rendition", "imagenet-r"),
}


# ---- an independent reader of CoOp's formats (written from CoOp's documented layout, not from our code)


def read_coop_split(dataset_dir: Path, image_sub: str, split_file: str) -> dict[str, list[tuple[Path, int, str]]]:
    with open(dataset_dir / split_file) as f:
        split = json.load(f)
    assert set(split) == {"train", "val", "test"}
    image_dir = dataset_dir / image_sub if image_sub else dataset_dir
    out = {}
    for key, records in split.items():
        rows = []
        for impath, label, classname in records:
            assert not os.path.isabs(impath) and not impath.startswith("/")
            rows.append((image_dir / impath, int(label), classname))
        out[key] = rows
    return out


def read_classnames_txt(path: Path) -> dict[str, str]:
    mapping = {}
    for line in path.read_text().splitlines():
        wnid, *words = line.strip().split(" ")
        mapping[wnid] = " ".join(words)
    return mapping


def read_folder_tree(image_dir: Path, classnames: dict[str, str]) -> list[tuple[Path, int, str]]:
    rows = []
    folders = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
    for label, folder in enumerate(folders):
        for img in sorted((image_dir / folder).iterdir()):
            rows.append((img, label, classnames[folder]))
    return rows


def check_rows(rows: list[tuple[Path, int, str]], n_classes: int) -> None:
    assert rows
    names_by_label: dict[int, set[str]] = {}
    for path, label, classname in rows:
        assert path.is_file(), path
        names_by_label.setdefault(label, set()).add(classname)
    assert sorted(names_by_label) == list(range(n_classes))
    assert all(len(v) == 1 for v in names_by_label.values()), "one class name per label"
    assert len({next(iter(v)) for v in names_by_label.values()}) == n_classes, "class names are unique"


def image_ok(path: Path) -> None:
    with Image.open(path) as img:
        assert img.format == "JPEG"
        assert img.size == (32, 32)
        assert img.mode == "RGB"


# ---- tests


@pytest.mark.parametrize("name", sorted(SPLIT_LAYOUT))
def test_split_file_datasets_follow_coop_format(tmp_path: Path, name: str) -> None:
    info = make_dataset(tmp_path, name, n_classes=5, images_per_class=10, seed=0)
    folder, image_sub, split_file = SPLIT_LAYOUT[name]
    assert info.dataset_dir == tmp_path.resolve() / folder
    split = read_coop_split(info.dataset_dir, image_sub, split_file)
    for key in ("train", "val", "test"):
        check_rows(split[key], 5)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (25, 10, 15)
    assert (info.num_train, info.num_val, info.num_test) == (25, 10, 15)
    all_paths = [p for rows in split.values() for p, _, _ in rows]
    assert len(set(all_paths)) == len(all_paths), "no image is in two splits"
    image_ok(all_paths[0])
    label_names = {label: cname for _, label, cname in split["train"]}
    assert [label_names[i] for i in range(5)] == info.classnames


def test_split_specific_conventions(tmp_path: Path) -> None:
    pets = make_dataset(tmp_path, "OxfordPets", 4, 5, seed=0)
    split = read_coop_split(pets.dataset_dir, "images", "split_zhou_OxfordPets.json")
    for path, _, cname in split["train"]:  # CoOp derives the breed from the file name
        assert "_".join(path.stem.split("_")[:-1]).lower() == cname
    assert (pets.dataset_dir / "annotations" / "trainval.txt").is_file()

    cars = make_dataset(tmp_path, "StanfordCars", 3, 5, seed=0)
    split = read_coop_split(cars.dataset_dir, "", "split_zhou_StanfordCars.json")
    assert {p.parent.name for p, _, _ in split["train"] + split["val"]} == {"cars_train"}
    assert {p.parent.name for p, _, _ in split["test"]} == {"cars_test"}

    flowers = make_dataset(tmp_path, "Flowers102", 3, 5, seed=0)
    cat = json.loads((flowers.dataset_dir / "cat_to_name.json").read_text())
    assert cat == {str(i + 1): c for i, c in enumerate(flowers.classnames)}


def test_imagenet_layout(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "ImageNet", n_classes=6, images_per_class=10, seed=0)
    d = info.dataset_dir
    assert d.name == "imagenet"
    classnames = read_classnames_txt(d / "classnames.txt")
    assert len(classnames) == 6 and all(w.startswith("n") and len(w) == 9 for w in classnames)
    assert list(classnames) == sorted(classnames)
    train = read_folder_tree(d / "images" / "train", classnames)
    val = read_folder_tree(d / "images" / "val", classnames)
    check_rows(train, 6)
    check_rows(val, 6)
    assert len(train) == 6 * 7 and len(val) == 6 * 3
    assert train[0][0].suffix == ".JPEG"
    image_ok(train[0][0])
    assert [classnames[w] for w in sorted(classnames)] == info.classnames


@pytest.mark.parametrize("name", sorted(VARIANT_LAYOUT))
def test_imagenet_variants_layout(tmp_path: Path, name: str) -> None:
    base = make_dataset(tmp_path, "ImageNet", n_classes=4, images_per_class=5, seed=3)
    info = make_dataset(tmp_path, name, n_classes=4, images_per_class=5, seed=3)
    folder, sub = VARIANT_LAYOUT[name]
    assert info.dataset_dir.name == folder
    classnames = read_classnames_txt(info.dataset_dir / "classnames.txt")
    assert classnames == read_classnames_txt(base.dataset_dir / "classnames.txt"), "variants share ImageNet's"
    rows = read_folder_tree(info.dataset_dir / sub, classnames)
    check_rows(rows, 4)
    assert len(rows) == 20
    assert info.classnames == base.classnames
    image_ok(rows[0][0])


def test_imagenetv2_layout(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "imagenetv2", n_classes=4, images_per_class=3, seed=0)
    d = info.dataset_dir
    classnames = list(read_classnames_txt(d / "classnames.txt").values())
    image_dir = d / "imagenetv2-matched-frequency-format-val"
    assert sorted(p.name for p in image_dir.iterdir()) == ["0", "1", "2", "3"]
    for label in range(4):
        files = list((image_dir / str(label)).iterdir())
        assert len(files) == 3 and all(f.suffix == ".jpeg" for f in files)
    assert classnames == info.classnames


def test_fgvc_aircraft_layout(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "FGVCAircraft", n_classes=4, images_per_class=5, seed=0)
    d = info.dataset_dir
    variants = (d / "variants.txt").read_text().splitlines()
    assert variants == info.classnames
    for split, count in (("train", 8), ("val", 4), ("test", 8)):
        lines = (d / f"images_variant_{split}.txt").read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            image_id, *words = line.split(" ")
            assert " ".join(words) in variants
            assert (d / "images" / f"{image_id}.jpg").is_file()


def test_deterministic_per_seed(tmp_path: Path) -> None:
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    a = make_dataset(tmp_path / "a", "DTD", 4, 5, seed=7)
    b = make_dataset(tmp_path / "b", "DTD", 4, 5, seed=7)
    c = make_dataset(tmp_path / "c", "DTD", 4, 5, seed=8)
    assert digest(a.dataset_dir) == digest(b.dataset_dir)
    assert digest(a.dataset_dir) != digest(c.dataset_dir)


def test_images_carry_a_learnable_class_signal(tmp_path: Path) -> None:
    info = make_dataset(tmp_path, "EuroSAT", n_classes=10, images_per_class=10, seed=0)
    split = read_coop_split(info.dataset_dir, "2750", "split_zhou_EuroSAT.json")

    def features(rows: list[tuple[Path, int, str]]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([np.asarray(Image.open(p), dtype=np.float32).mean(axis=(0, 1)) for p, _, _ in rows])
        return x, np.array([label for _, label, _ in rows])

    x_tr, y_tr = features(split["train"])
    x_te, y_te = features(split["test"])
    centroids = np.stack([x_tr[y_tr == c].mean(0) for c in range(10)])
    pred = ((x_te[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y_te).mean() >= 0.9  # chance is 0.1


def test_all_names_and_aliases(tmp_path: Path) -> None:
    assert len(DATASET_NAMES) == 15
    for alias, expected in [("caltech101", "Caltech101"), ("caltech-101", "Caltech101"), ("DTD", "DescribableTextures"),
                            ("Flowers102", "OxfordFlowers"), ("imagenet_a", "ImageNetA"),
                            ("ImageNet-Sketch", "ImageNetSketch"), ("imagenet-rendition", "ImageNetR")]:
        assert resolve_name(alias) == expected
    info = make_dataset(tmp_path, "food101", 2, 3, seed=0)
    assert info.name == "Food101" and info.config_file == "configs/datasets/food101.yaml"
    assert (REPO / info.config_file).is_file()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Caltech101"):  # lists the valid names
        make_dataset(tmp_path, "Caltech102", 2, 3, 0)
    with pytest.raises(ValueError, match="n_classes"):
        make_dataset(tmp_path, "DTD", 0, 3, 0)
    with pytest.raises(ValueError, match="images_per_class"):
        make_dataset(tmp_path, "DTD", 2, 2, 0)
    with pytest.raises(ValueError, match="seed"):
        make_dataset(tmp_path, "DTD", 2, 3, -1)
    make_dataset(tmp_path, "ImageNetA", 2, 1, 0)  # test-only variants need one image per class


def test_rewrites_own_folders_but_never_real_data(tmp_path: Path) -> None:
    first = make_dataset(tmp_path, "UCF101", 3, 5, seed=0)
    (first.dataset_dir / "split_fewshot").mkdir()
    (first.dataset_dir / "split_fewshot" / "stale.json").write_text("{}")
    second = make_dataset(tmp_path, "UCF101", 4, 5, seed=1)
    assert len(second.classnames) == 4
    assert not (second.dataset_dir / "split_fewshot").exists(), "old caches are removed with the old data"

    real = tmp_path / "caltech-101"
    real.mkdir()
    (real / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="caltech-101"):
        make_dataset(tmp_path, "Caltech101", 2, 3, 0)
    assert (real / "keep.txt").read_text() == "user data"


def test_import_does_not_pull_in_torch() -> None:
    code = "import sys, quantprompt.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
