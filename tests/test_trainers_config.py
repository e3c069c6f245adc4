"""Trainer config handling: keys, validation naming the key, registration, and every shipped config file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("QUANTPROMPT_BACKEND", "engine")

import train  # noqa: E402
import trainers  # noqa: E402
from quantprompt.dassl_plugin import config as tcfg  # noqa: E402
from quantprompt.dassl_plugin.base import validate_cfg  # noqa: E402
from quantprompt.engine.compat import TRAINER_REGISTRY, get_cfg_default  # noqa: E402

ALL = ["CoOp", "CoCoOp", "MaPLe", "ZeroshotCLIP", "NoiseCoOp", "QCoOp", "QCoCoOp", "QMaPLe"]
NODE = {"CoOp": "COOP", "QCoOp": "COOP", "NoiseCoOp": "COOP", "CoCoOp": "COCOOP", "QCoCoOp": "COCOOP",
        "MaPLe": "MAPLE", "QMaPLe": "MAPLE", "ZeroshotCLIP": None, "P4Q": "COOP"}


def _cfg(*opts: str):
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.MODEL.BACKBONE.NAME = "tiny-vit"
    cfg.merge_from_list(list(opts))
    return cfg


def test_all_trainers_registered() -> None:
    for name in ALL:
        cls = TRAINER_REGISTRY.get(name)
        assert cls is getattr(trainers, name)
    assert trainers.skipped_baselines() == []


def test_extend_cfg_adds_missing_keys_only() -> None:
    cfg = get_cfg_default()
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 7  # a pipeline that extended first keeps its value
    tcfg.extend_cfg(cfg)
    assert cfg.TRAINER.COOP.N_CTX == 7
    assert cfg.TRAINER.COOP.CLASS_TOKEN_POSITION == "end"
    assert cfg.TRAINER.QPROMPT.BITS == 1
    assert cfg.TRAINER.QPROMPT.CAC.RECLUSTER == "cac"
    assert cfg.TEST.PER_EPOCH is False and cfg.TRAIN.SAVE_PROMPT_SNAPSHOTS is False


def test_get_falls_back_to_defaults_without_our_keys() -> None:
    cfg = get_cfg_default()  # a CoOp checkout's cfg never heard of TRAINER.QPROMPT
    assert tcfg.get(cfg, "TRAINER.QPROMPT.BITS") == 1
    assert tcfg.get(cfg, "TRAINER.MAPLE.PROMPT_DEPTH") == 9
    validate_cfg(_cfg(), "COOP", quantized=True)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("TRAINER.QPROMPT.BITS", 9, "TRAINER.QPROMPT.BITS=9 is out of range 1..8"),
        ("TRAINER.QPROMPT.BITS", 0, "TRAINER.QPROMPT.BITS=0 is out of range 1..8"),
        ("TRAINER.QPROMPT.MODE", "fake", "TRAINER.QPROMPT.MODE='fake' is not one of qat, ptq, off"),
        ("TRAINER.QPROMPT.KMEANS_BACKEND", "numpy", "TRAINER.QPROMPT.KMEANS_BACKEND='numpy'"),
        ("TRAINER.QPROMPT.CAC.INTERVAL", -1, "TRAINER.QPROMPT.CAC.INTERVAL=-1 is out of range"),
        ("TRAINER.QPROMPT.CAC.KL_THRESHOLD", -0.5, "TRAINER.QPROMPT.CAC.KL_THRESHOLD=-0.5"),
        ("TRAINER.QPROMPT.CAC.RECLUSTER", "sometimes", "TRAINER.QPROMPT.CAC.RECLUSTER='sometimes'"),
        ("TRAINER.QPROMPT.TARGETS", [""], "TRAINER.QPROMPT.TARGETS"),
        ("TRAINER.COOP.PREC", "bf16", "TRAINER.COOP.PREC='bf16' is not one of fp16, fp32, amp"),
        ("TRAINER.COOP.N_CTX", 0, "TRAINER.COOP.N_CTX=0 is out of range"),
        ("TRAINER.COOP.CLASS_TOKEN_POSITION", "left", "TRAINER.COOP.CLASS_TOKEN_POSITION='left'"),
        ("DATASET.SUBSAMPLE_CLASSES", "half", "DATASET.SUBSAMPLE_CLASSES='half'"),
    ],
)
def test_bad_values_name_the_key(key: str, value: object, message: str) -> None:
    cfg = _cfg()
    node, _, leaf = key.rpartition(".")
    target = cfg
    for part in node.split("."):
        target = target[part]
    target[leaf] = value
    with pytest.raises(ValueError) as err:
        validate_cfg(cfg, "COOP", quantized=True)
    assert message in str(err.value)


def test_maple_and_cocoop_keys_are_checked() -> None:
    with pytest.raises(ValueError, match=r"TRAINER\.MAPLE\.PROMPT_DEPTH=13 is out of range 1\.\.12"):
        validate_cfg(_cfg("TRAINER.MAPLE.PROMPT_DEPTH", "13"), "MAPLE", quantized=False)
    with pytest.raises(ValueError, match=r"TRAINER\.COCOOP\.PREC='int8'"):
        validate_cfg(_cfg("TRAINER.COCOOP.PREC", "int8"), "COCOOP", quantized=False)
    with pytest.raises(ValueError, match=r"TRAINER\.QPROMPT\.NOISE_STD=-0\.1"):
        validate_cfg(_cfg("TRAINER.QPROMPT.NOISE_STD", "-0.1"), "COOP", quantized=False, noise=True)
    with pytest.raises(ValueError, match="MODEL.BACKBONE.NAME"):
        validate_cfg(_cfg("MODEL.BACKBONE.NAME", ""), "COOP", quantized=False)
    for bad in (0, -5, 2.5, True, "8"):
        cfg = _cfg()
        cfg.TRAINER.COCOOP.TEXT_BATCH_SIZE = bad
        with pytest.raises(ValueError, match=r"TRAINER\.COCOOP\.TEXT_BATCH_SIZE=.*(integer|out of range)"):
            validate_cfg(cfg, "COCOOP", quantized=True)


def test_cocoop_text_batch_size_reaches_the_model_options() -> None:
    from quantprompt.prompting.cocoop import DEFAULT_TEXT_BATCH_SIZE

    assert tcfg.DEFAULTS["TRAINER.COCOOP.TEXT_BATCH_SIZE"] == DEFAULT_TEXT_BATCH_SIZE
    for cls, value in ((trainers.CoCoOp, None), (trainers.QCoCoOp, "64")):
        trainer = cls.__new__(cls)
        trainer.cfg = _cfg() if value is None else _cfg("TRAINER.COCOOP.TEXT_BATCH_SIZE", value)
        validate_cfg(trainer.cfg, "COCOOP", cls.QUANTIZED)
        assert trainer.model_options()["text_batch_size"] == (DEFAULT_TEXT_BATCH_SIZE if value is None else 64)
    coop = trainers.CoOp.__new__(trainers.CoOp)
    coop.cfg = _cfg()
    assert "text_batch_size" not in coop.model_options()


def test_options_translate_config(tmp_path: Path) -> None:
    """cfg -> prompting options, without building anything (check_cfg + model_options only)."""
    cfg = _cfg("TRAINER.QPROMPT.BITS", "4", "TRAINER.COOP.CTX_INIT", "a photo of a", "SEED", "3",
               "TRAINER.QPROMPT.TARGETS", "['prompt_learner.ctx']")
    trainer = trainers.QCoOp.__new__(trainers.QCoOp)
    trainer.cfg = cfg
    opts = trainer.model_options()
    assert opts["bits"] == 4 and opts["ctx_init"] == "a photo of a" and opts["seed"] == 3
    assert opts["targets"] == ["prompt_learner.ctx"] and opts["mode"] == "qat"
    assert opts["precision"] == "fp16" and opts["class_token_position"] == "end"
    maple = trainers.QMaPLe.__new__(trainers.QMaPLe)
    maple.cfg = _cfg()
    mopts = maple.model_options()
    assert mopts["prompt_depth"] == 9 and "targets" not in mopts and "csc" not in mopts


CONFIGS = sorted((REPO / "configs" / "trainers").glob("*/*.yaml"))


def test_config_files_exist_for_every_trainer_and_setting() -> None:
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for trainer in ALL:
        assert (trainer, "tiny") in names, trainer
    for need in [("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"), ("CoOp", "vit_b16_ctxv1"), ("CoOp", "rn50"),
                 ("CoOp", "rn50_ep50"), ("CoOp", "rn50_ep100"), ("CoOp", "vit_b16_ep50_ctxv1"),
                 ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx"), ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),
                 ("QCoOp", "vit_b16_ctxv1"), ("QCoOp", "vit_b16_ctxv1_b2"), ("QCoOp", "vit_b16_ctxv1_b4"),
                 ("QCoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"), ("QMaPLe", "vit_b16_c2_ep5_batch4_2ctx")]:
        assert need in names, need


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_file_merges_and_validates(path: Path) -> None:
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_file(str(path))
    trainer = path.parent.name
    cls = TRAINER_REGISTRY.get(trainer)
    validate_cfg(cfg, NODE[trainer], cls.QUANTIZED, cls.NOISE)
    if trainer == "P4Q":
        from quantprompt.dassl_plugin.p4q import validate_p4q_cfg

        validate_p4q_cfg(cfg)
    if path.stem.startswith("demo"):  # the demo world's CLIP (docs/demo.md)
        assert tuple(cfg.INPUT.SIZE) == (32, 32)
        assert cfg.MODEL.BACKBONE.NAME.startswith("world-vit")
    elif path.stem != "tiny":
        assert tuple(cfg.INPUT.SIZE) == (224, 224)
        assert cfg.MODEL.BACKBONE.NAME in ("ViT-B/16", "RN50", "RN101", "ViT-B/32")


def test_reference_hyperparameters() -> None:
    def load(rel: str):
        cfg = get_cfg_default()
        train.extend_cfg(cfg)
        cfg.merge_from_file(str(REPO / "configs" / "trainers" / rel))
        return cfg

    p = load("P4Q/vit_b32_ep50.yaml")  # the P4Q paper's headline: ImageNet 16 shots, ViT-B/32, 8 bits
    assert (p.MODEL.BACKBONE.NAME, p.TRAINER.P4Q.WEIGHT_BITS, p.TRAINER.P4Q.ACT_BITS) == ("ViT-B/32", 8, 8)
    assert load("P4Q/vit_b32_ep50_w4.yaml").TRAINER.P4Q.WEIGHT_BITS == 4
    c = load("QCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml")
    assert (c.OPTIM.MAX_EPOCH, c.DATALOADER.TRAIN_X.BATCH_SIZE, c.OPTIM.LR) == (10, 1, 0.002)
    assert (c.TRAINER.COCOOP.N_CTX, c.TRAINER.COCOOP.CTX_INIT) == (4, "a photo of a")
    m = load("QMaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml")
    assert (m.OPTIM.MAX_EPOCH, m.DATALOADER.TRAIN_X.BATCH_SIZE, m.OPTIM.LR) == (5, 4, 0.0035)
    assert (m.TRAINER.MAPLE.PROMPT_DEPTH, m.TRAINER.MAPLE.N_CTX, m.TRAINER.QPROMPT.BITS) == (9, 2, 4)
    for bits in (1, 2, 4):
        q = load(f"QCoOp/vit_b16_ctxv1{'' if bits == 1 else f'_b{bits}'}.yaml")
        assert q.TRAINER.QPROMPT.BITS == bits and q.OPTIM.MAX_EPOCH == 200
    assert load("QCoOp/vit_b16_ctxv1_ptq.yaml").TRAINER.QPROMPT.MODE == "ptq"


def test_baselines_give_way_to_an_existing_registration() -> None:
    """In a pipeline that already registered CoOp (a CoOp checkout), ours stays out and one warning says so."""
    code = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1]);\n"
        "from quantprompt.engine.compat import TRAINER_REGISTRY, TrainerX\n"
        "class CoOp(TrainerX): pass\n"
        "class MaPLe(TrainerX): pass\n"
        "TRAINER_REGISTRY.register(CoOp); TRAINER_REGISTRY.register(MaPLe)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import trainers\n"
        "msgs = [str(x.message) for x in w if 'already registered' in str(x.message)]\n"
        "print(len(msgs)); print(msgs[0] if msgs else '')\n"
        "print(TRAINER_REGISTRY.get('CoOp') is CoOp, TRAINER_REGISTRY.get('QCoOp').__module__)\n"
        "print(trainers.skipped_baselines())\n"
    )
    env = dict(os.environ, QUANTPROMPT_BACKEND="engine")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, env=env,
                         check=True, cwd=str(REPO)).stdout.splitlines()
    assert out[0] == "1"
    assert "CoOp" in out[1] and "MaPLe" in out[1]
    assert out[2] == "True quantprompt.dassl_plugin.qcoop"
    assert out[3] == "['CoOp', 'MaPLe']"


def test_plugin_import_registers_only_our_methods_in_any_order() -> None:
    """``import quantprompt.dassl_plugin`` (a foreign train.py's line) leaves the baseline names to the host, so
    the host may register its own CoOp after it; the baselines come only with register_all(include_baselines)."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from quantprompt.engine.compat import TRAINER_REGISTRY, TrainerX\n"
        "import quantprompt.dassl_plugin as qp\n"
        "print(sorted(n for n in TRAINER_REGISTRY.registered_names()))\n"
        "@TRAINER_REGISTRY.register()\n"
        "class CoOp(TrainerX): pass\n"
        "print(TRAINER_REGISTRY.get('CoOp') is CoOp, qp.register_all())\n"
        "warnings.simplefilter('ignore')\n"
        "print(qp.register_all(include_baselines=True), qp.skipped_baselines())\n"
    )
    env = dict(os.environ, QUANTPROMPT_BACKEND="engine")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=str(REPO)).stdout.splitlines()
    assert out[0] == "['NoiseCoOp', 'P4Q', 'QCoCoOp', 'QCoOp', 'QMaPLe']"
    assert out[1] == "True ['NoiseCoOp', 'QCoOp', 'QCoCoOp', 'QMaPLe', 'P4Q']"
    assert out[2] == "['CoCoOp', 'MaPLe', 'ZeroshotCLIP', 'NoiseCoOp', 'QCoOp', 'QCoCoOp', 'QMaPLe', 'P4Q'] ['CoOp']"
