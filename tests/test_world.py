"""The demo world: deterministic images and datasets, the cached pretrained CLIP, and its zero-shot skill."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from quantprompt import world
from quantprompt.world.attributes import Scene

# A pretraining budget small enough for CI; the zero-shot test below states what it must still reach.
TEST_SETTINGS = world.PretrainSettings(steps=120, pool_size=2048, batch_size=96, warmup_steps=12)  # 4 + 4 layers
CHANCE_64 = 100.0 / 64


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_render_is_deterministic_and_seed_dependent() -> None:
    scene = Scene("star", "red", pattern="striped", background="black")
    a = world.render(scene, np.random.default_rng(7))
    b = world.render(scene, np.random.default_rng(7))
    c = world.render(scene, np.random.default_rng(8))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_render_draws_the_named_colour_and_shape() -> None:
    rng = np.random.default_rng(0)
    red = world.render(Scene("square", "red", background="white", style="photo"), rng).astype(float)
    centre = red[12:20, 12:20].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 150 and centre[1] < 80 and centre[2] < 80  # a red object in the middle
    corner = red[:3, :3].reshape(-1, 3).mean(axis=0)
    assert corner.min() > 180  # on a white background
    ring = world.render(Scene("ring", "blue", background="black"), np.random.default_rng(0)).astype(float)
    assert ring[15:17, 15:17].mean() < 60  # the ring's hole shows the black background


def test_scene_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="Scene.colour='mauve' is not one of"):
        Scene("circle", "mauve")


def test_captions_name_the_shape_and_only_true_attributes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = world.sample_scene(rng)
        text = world.caption(scene, rng)
        assert scene.shape in text
        words = set(text.replace(".", "").split())
        assert not (words & set(world.COLOURS)) - {scene.colour}
        assert not (words & set(world.SHAPES)) - {scene.shape}


def test_pretraining_tokens_each_caption_once_with_the_same_rows() -> None:
    import importlib

    import torch

    pretrain = importlib.import_module("quantprompt.world.pretrain")  # the package exports a function of that name
    texts = ["a red circle.", "a sketch of a blue square.", "a red circle.", "a photo of a green star."]
    cached = pretrain._CaptionTokens()
    assert torch.equal(cached(texts), pretrain._tokenize(texts))
    assert torch.equal(cached(texts[::-1]), pretrain._tokenize(texts[::-1]))  # now every row from the cache
    assert len(cached._rows) == 3


def test_pretrain_settings_reject_a_pool_smaller_than_a_batch() -> None:
    with pytest.raises(ValueError, match=r"pool_size \(64\) must be >= batch_size \(128\)"):
        world.PretrainSettings(pool_size=64)


def test_dataset_is_deterministic_in_coop_layout(tmp_path: Path) -> None:
    a = world.write_dataset(tmp_path / "a", "WorldPatterns", train_per_class=2, val_per_class=1,
                            test_per_class=1)
    b = world.write_dataset(tmp_path / "b", "world_patterns", train_per_class=2, val_per_class=1,
                            test_per_class=1)
    assert _digest(a.dataset_dir) == _digest(b.dataset_dir)
    split = json.loads((a.dataset_dir / "split_zhou_WorldPatterns.json").read_text())
    assert len(split["train"]) == 64 and len(split["val"]) == 32 and len(split["test"]) == 32
    rel, label, name = split["train"][0]
    assert (a.dataset_dir / "images" / rel).is_file()
    assert a.classnames == sorted(a.classnames) and a.classnames[label] == name == "checkered circle"
    again = world.write_dataset(tmp_path / "a", "WorldPatterns", train_per_class=2, val_per_class=1,
                                test_per_class=1)
    assert again.reused and _digest(again.dataset_dir) == _digest(b.dataset_dir)


def test_dataset_never_overwrites_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "world_shapes").mkdir()
    (tmp_path / "world_shapes" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="was not written by quantprompt.world"):
        world.write_dataset(tmp_path, "WorldShapes", train_per_class=1, val_per_class=1, test_per_class=1)
    assert (tmp_path / "world_shapes" / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="unknown world dataset 'WorldCars'"):
        world.write_dataset(tmp_path, "WorldCars")


def test_class_definitions_differ_between_datasets() -> None:
    shapes = world.classnames("WorldShapes")
    assert len(shapes) == 64 and "red circle" in shapes
    assert len(world.classnames("WorldPatterns")) == 32
    objects = world.classnames("WorldObjects")
    assert len(objects) == 48 and all(len(n.split()) == 3 for n in objects)
    assert world.classnames("WorldPaintings") == shapes == world.classnames("WorldSketches")


def test_zero_shot_templates_match_the_world_datasets() -> None:
    from quantprompt.prompting.zeroshot import CUSTOM_TEMPLATES

    for spec in world.WORLD_DATASETS.values():
        assert CUSTOM_TEMPLATES[spec.name] == spec.template


@pytest.fixture(scope="module")
def cached(ci_world_clip) -> world.CachedCLIP:
    """The CI world CLIP of tests/conftest.py (pretrained once per session with TEST_SETTINGS)."""
    _cache, settings, clip = ci_world_clip
    assert settings == TEST_SETTINGS
    return clip


def test_pretrained_clip_is_far_above_chance(cached: world.CachedCLIP) -> None:
    # the CI budget (120 steps) must reach 3x chance on the 64 colour + shape classes; the demo's budgets more
    assert cached.built
    assert cached.metadata["probe_zero_shot"] >= 3 * CHANCE_64


def test_cached_clip_reloads_bit_exactly(cached: world.CachedCLIP, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from quantprompt import clip as qclip

    notices: list[str] = []
    again = world.ensure_clip("quick", cached.path.parent, settings=TEST_SETTINGS, log=notices.append)
    assert not again.built and notices == []
    monkeypatch.setenv("QUANTPROMPT_CACHE", str(cached.path.parent))
    by_spec, _ = qclip.load("world-vit-quick", precision="fp32")
    by_path, _ = qclip.load(str(cached.path), precision="fp32")
    from safetensors.torch import load_file

    stored = load_file(str(cached.path))
    for model in (by_spec, by_path):
        state = model.state_dict()
        assert set(state) == set(stored)
        assert all(torch.equal(state[k], stored[k]) for k in stored)
    assert by_spec.transformer.resblocks[0].attn.num_heads == TEST_SETTINGS.text_heads


def test_missing_world_clip_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantprompt import clip as qclip

    monkeypatch.setenv("QUANTPROMPT_CACHE", str(tmp_path))
    with pytest.raises(qclip.CLIPFileNotFoundError, match="quantprompt demo"):
        qclip.load("world-vit")


@pytest.mark.parametrize("damage", ["truncated", "foreign", "stale"])
def test_bad_cache_is_rebuilt_with_a_notice(cached: world.CachedCLIP, tmp_path: Path, damage: str) -> None:
    from quantprompt import clip as qclip

    target = world.clip_path("quick", tmp_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if damage == "truncated":
        target.write_bytes(cached.path.read_bytes()[:5000])
    elif damage == "foreign":
        qclip.save_tiny(target, seed=0, text_layers=1, vision_layers=1)
    else:
        other = replace(TEST_SETTINGS, steps=TEST_SETTINGS.steps - 1)
        assert world.check_cached(cached.path, other) == "stale (pretrained with other settings)"
        target.write_bytes(cached.path.read_bytes())
    notices: list[str] = []
    tiny_budget = replace(TEST_SETTINGS, steps=3, warmup_steps=1, pool_size=64, batch_size=8)
    rebuilt = world.ensure_clip("quick", tmp_path, settings=tiny_budget, progress=False, log=notices.append)
    expected = {"truncated": "truncated or corrupt", "foreign": "not a world CLIP", "stale": "stale"}[damage]
    assert rebuilt.built and len(notices) >= 1 and expected in notices[0] and "pretraining it again" in notices[0]
    assert world.check_cached(target, tiny_budget) is None
    assert not list(target.parent.glob(".*part*"))  # no temporary file left behind


def test_demo_quick_end_to_end_with_every_method(cached: world.CachedCLIP, tmp_path: Path) -> None:
    """``quantprompt demo --quick``'s pipeline with every method (``--quick`` runs four), through the real
    scripts and ``quantprompt.grid``'s launcher, shortened for CI: 2 shots, 1 epoch, small datasets; the
    CI-budget CLIP from the fixture (the cache is reused, not pretrained again).

    On WorldShapes (photos), not the demo's WorldSketches: sketches are 3% of pretraining, and the 120-step CI
    CLIP is at chance on them (measured: 3.6% on the 32 new classes, chance 3.1%); the full demo's 1,000-step
    CLIP reaches 10.6x chance there (docs/demo.md)."""
    from quantprompt.world import demo

    p = demo.plan(quick=True, methods=[m.label for m in demo.METHODS], datasets=["world_shapes"],
                  output=str(tmp_path / "out"), cache_dir=str(cached.path.parent), shots=2,
                  per_class=(2, 1, 6), extra_opts=("OPTIM.MAX_EPOCH", "1"), profile="quick")
    lines: list[str] = []
    result = demo.run_demo(p, log=lines.append, pretrain_settings=TEST_SETTINGS)
    assert not result["clip"].built
    summary_table = result["report"].tables[0]
    assert [row[0] for row in summary_table.rows] == [m.label for m in demo.METHODS]
    assert all(isinstance(cell, float) for row in summary_table.rows for cell in row[2:])  # base, new, H
    sizes = {row[0]: row[1] for row in summary_table.rows}
    assert sizes["CLIP (zero-shot)"] == "0KB" and sizes["CoOp"] != "-"
    # P4Q's rows: the PTQ baselines learn nothing; P4Q stores its packed prompt and adapter
    assert sizes["PTQ W8A8 (zero-shot)"] == sizes["PTQ W4A8 (zero-shot)"] == "0KB"
    assert sizes["P4Q W8A8"].endswith("KB") and sizes["P4Q W8A8"] != "0KB" and sizes["P4Q W4A8"] != "-"
    text = "\n".join(lines)
    n_runs = 2 * len(p.jobs)  # a train and a test run per job
    assert f"{n_runs}/{n_runs} runs done" in text and "0 failed" in text and "Checks:" in text  # the grid's line
    assert "start  qcoop base2new_train world_shapes 1 [QCoOp 2-bit]" in text
    assert "zero-shot accuracy on new classes" in text and "CoOp on base classes" in text
    assert set(result["per_method_seconds"]) == {m.label for m in demo.METHODS}
    logs = sorted((tmp_path / "out" / "grid_logs").rglob("*.log"))  # one grid log per run, its output inside
    assert len(logs) == n_runs and all("=== exit status 0" in f.read_text() for f in logs)
    assert {f.name for f in result["figures"]} == {"demo_h.png", "demo_bits.png", "demo_noise.png", "demo_p4q.png"}
    assert all(f.stat().st_size > 1000 for f in result["figures"])
    # zero-shot on the quick world's new classes: above chance (1/32) by the margin stated here, 1.5x
    zs_new = result["summary"]["CLIP (zero-shot)"]["new"]
    assert zs_new >= 1.5 * 100 / 32, zs_new
    # a second call skips every finished run (the scripts' own rule, read by the grid's plan)
    again: list[str] = []
    assert demo.run_jobs(p, tmp_path / "out" / "data", cached.path, log=again.append) == {}
    assert f"grid: 0 runs to do, {n_runs} already finished" in "\n".join(again)


def test_demo_checks_have_margins_and_name_what_failed(tmp_path: Path) -> None:
    """The checks' rules on known summaries: one unstable method does not decide the seed-noise check (a
    median), and each threshold is the documented one."""
    from quantprompt.world import demo

    p = demo.plan(methods=["ZeroshotCLIP", "CoOp", "QCoOp", "QCoOp/demo_b4", "MaPLe"], output=str(tmp_path))
    row = {"base": 30.0, "new": 30.0, "H": 30.0, "h_std": float("nan")}
    s = {"CLIP (zero-shot)": dict(row),
         "CoOp": {**row, "base": 33.0, "h_std": 1.0},
         "QCoOp 1-bit": {**row, "h_std": 1.5},
         "QCoOp 4-bit": {**row, "h_std": 0.5},
         "MaPLe": {**row, "h_std": 9.0}}  # mean std 3.0 would sit at the threshold; the median is 1.25
    result = demo.check_summary(s, p)
    assert result.passed, result.lines
    assert result.figures["median_seed_std_h"] == 1.25 and result.figures["coop_base_gain"] == 3.0
    assert abs(result.figures["zero_shot_new_over_chance"] - 30.0 / (100 / 32)) < 1e-9
    bad = demo.check_summary({**s, "CoOp": {**s["CoOp"], "base": 32.9},
                              "CLIP (zero-shot)": {**row, "new": 9.3}}, p)  # 2.98x chance, +2.9 points
    assert not bad.passed
    assert [line.split("]")[0] for line in bad.lines] == ["[FAIL", "[FAIL", "[ok"]
    assert "needs >= 3x" in bad.lines[0] and "needs >= +3" in bad.lines[1] and "largest 9.00" in bad.lines[2]
    # --quick asks more of CoOp (+5: its CLIP leaves more room), on one seed
    quick = demo.plan(quick=True, output=str(tmp_path))
    assert quick.profile == "quick"
    one_seed = {k: v for k, v in s.items() if k in ("CLIP (zero-shot)", "CoOp")}
    short = demo.check_summary({**one_seed, "CoOp": {**row, "base": 34.9}}, quick)
    assert not short.passed and "+4.9 points; needs >= +5" in short.lines[1]
    assert demo.check_summary({**one_seed, "CoOp": {**row, "base": 35.0}}, quick).passed


def test_demo_rejects_bad_options_before_work(tmp_path: Path) -> None:
    from quantprompt.world import demo

    with pytest.raises(ValueError, match="unknown demo method 'CoOpX'"):
        demo.plan(methods=["CoOpX"], output=str(tmp_path))
    with pytest.raises(ValueError, match="unknown world dataset 'imagenet'"):
        demo.plan(datasets=["imagenet"], output=str(tmp_path))
    with pytest.raises(ValueError, match="--seeds must be non-negative"):
        demo.plan(seeds=[-1], output=str(tmp_path))
    assert not (tmp_path / "data").exists()
    p = demo.plan(methods=["QCoOp/demo_b2", "ZeroshotCLIP"], seeds=[1, 2], output=str(tmp_path))
    assert [(j.method.trainer, j.seed) for j in p.jobs] == [("QCoOp", 1), ("ZeroshotCLIP", 1), ("QCoOp", 2)]


def test_world_is_a_model_layer() -> None:
    """No Dassl, yacs or engine imports in quantprompt/world (the demo reaches the trainers through scripts)."""
    import re

    folder = Path(world.__file__).parent
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(dassl|yacs|quantprompt\.engine|trainers|datasets)\b", text,
                             re.M), path


def test_demo_passes_each_option_once(tmp_path: Path) -> None:
    """The test script picks the first OPTIM.MAX_EPOCH, train.py the last: a key must appear once. The grid
    calls of a job are its train and test scripts with the same options, tagged with the row's label."""
    from quantprompt.world import demo

    p = demo.plan(quick=True, methods=["CoOp"], output=str(tmp_path), extra_opts=("OPTIM.MAX_EPOCH", "1"))
    args = demo._script_args(p, p.jobs[0], tmp_path / "data", tmp_path / "clip.safetensors")
    assert args.count("OPTIM.MAX_EPOCH") == 1 and args[args.index("OPTIM.MAX_EPOCH") + 1] == "1"
    assert args[args.index("MODEL.BACKBONE.NAME") + 1] == str(tmp_path / "clip.safetensors")
    quick = demo.plan(quick=True, output=str(tmp_path))  # the full demo's recipe: the configs' epochs, 16 shots
    assert [m.label for m in quick.methods] == list(demo.QUICK_METHODS) and quick.shots == 16
    assert quick.profile == "quick"  # the 2 + 2 layer CLIP (docs/demo.md, "How --quick was chosen")
    assert world.PROFILES["quick"][0] == world.PretrainSettings(vision_layers=2, text_layers=2)
    assert [j.seed for j in quick.jobs] == [1] * len(demo.QUICK_METHODS)
    calls = demo.grid_calls(quick, tmp_path / "data", tmp_path / "clip.safetensors")
    assert [c.script for c in calls[:2]] == ["base2new_train.sh", "base2new_test.sh"]
    assert calls[2].opts == calls[3].opts and calls[2].tag == "CoOp" and calls[2].method == "coop"
    assert "OPTIM.MAX_EPOCH" not in calls[2].opts and calls[2].args == ("world_sketches", "1")
