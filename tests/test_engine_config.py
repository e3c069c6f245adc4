"""Config defaults equal Dassl.pytorch's for every key CoOp/CoCoOp/MaPLe read; train.py builds configs as CoOp."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from quantprompt.engine.config import clean_cfg, get_cfg_default

REPO = Path(__file__).resolve().parents[1]


def _load_train_module():
    if "train" in sys.modules and getattr(sys.modules["train"], "__file__", "") == str(REPO / "train.py"):
        return sys.modules["train"]
    spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module


# Dassl.pytorch (dassl/config/defaults.py) values, written out by hand.
DASSL_DEFAULTS = {
    "VERSION": 1,
    "OUTPUT_DIR": "./output",
    "RESUME": "",
    "SEED": -1,
    "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT.SIZE": (224, 224),
    "INPUT.INTERPOLATION": "bilinear",
    "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False,
    "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225],
    "INPUT.CROP_PADDING": 4,
    "INPUT.RRCROP_SCALE": (0.08, 1.0),
    "INPUT.CUTOUT_N": 1,
    "INPUT.CUTOUT_LEN": 16,
    "INPUT.GN_MEAN": 0.0,
    "INPUT.GN_STD": 0.15,
    "INPUT.RANDAUGMENT_N": 2,
    "INPUT.RANDAUGMENT_M": 10,
    "INPUT.COLORJITTER_B": 0.4,
    "INPUT.COLORJITTER_H": 0.1,
    "INPUT.RGS_P": 0.2,
    "INPUT.GB_P": 0.5,
    "INPUT.GB_K": 21,
    "DATASET.ROOT": "",
    "DATASET.NAME": "",
    "DATASET.SOURCE_DOMAINS": (),
    "DATASET.TARGET_DOMAINS": (),
    "DATASET.NUM_LABELED": -1,
    "DATASET.NUM_SHOTS": -1,
    "DATASET.VAL_PERCENT": 0.1,
    "DATASET.ALL_AS_UNLABELED": False,
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.K_TRANSFORMS": 1,
    "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0,
    "DATALOADER.TRAIN_X.N_INS": 16,
    "DATALOADER.TRAIN_U.SAME_AS_X": True,
    "DATALOADER.TRAIN_U.BATCH_SIZE": 32,
    "DATALOADER.TEST.SAMPLER": "SequentialSampler",
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "",
    "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.HEAD.NAME": "",
    "MODEL.HEAD.HIDDEN_LAYERS": (),
    "MODEL.HEAD.ACTIVATION": "relu",
    "MODEL.HEAD.BN": True,
    "MODEL.HEAD.DROPOUT": 0.0,
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.0003,
    "OPTIM.WEIGHT_DECAY": 5e-4,
    "OPTIM.MOMENTUM": 0.9,
    "OPTIM.SGD_DAMPNING": 0,
    "OPTIM.SGD_NESTEROV": False,
    "OPTIM.RMSPROP_ALPHA": 0.99,
    "OPTIM.ADAM_BETA1": 0.9,
    "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.STAGED_LR": False,
    "OPTIM.NEW_LAYERS": (),
    "OPTIM.BASE_LR_MULT": 0.1,
    "OPTIM.LR_SCHEDULER": "single_step",
    "OPTIM.STEPSIZE": (-1,),
    "OPTIM.GAMMA": 0.1,
    "OPTIM.MAX_EPOCH": 10,
    "OPTIM.WARMUP_EPOCH": -1,
    "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5,
    "OPTIM.WARMUP_MIN_LR": 1e-5,
    "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0,
    "TRAIN.PRINT_FREQ": 10,
    "TRAIN.COUNT_ITER": "train_x",
    "TEST.EVALUATOR": "Classification",
    "TEST.PER_CLASS_RESULT": False,
    "TEST.COMPUTE_CMAT": False,
    "TEST.NO_TEST": False,
    "TEST.SPLIT": "test",
    "TEST.FINAL_MODEL": "last_step",
    "TRAINER.NAME": "",
    "TRAINER.FIXMATCH.CONF_THRE": 0.95,
}


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("key", sorted(DASSL_DEFAULTS))
def test_default_equals_dassl(key: str) -> None:
    value = _get(get_cfg_default(), key)
    expected = DASSL_DEFAULTS[key]
    assert value == expected and type(value) is type(expected), (key, value)


def test_get_cfg_default_returns_independent_copies() -> None:
    a = get_cfg_default()
    a.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_clean_cfg_keeps_only_the_named_trainer() -> None:
    cfg = get_cfg_default()
    clean_cfg(cfg, "fixmatch")
    assert sorted(cfg.TRAINER.keys()) == ["FIXMATCH", "NAME"]


def test_extend_cfg_adds_reference_and_qprompt_keys() -> None:
    train = _load_train_module()
    cfg = train.extend_cfg(get_cfg_default())
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.TRAINER.COOP.CSC is False and cfg.TRAINER.COOP.CTX_INIT == ""
    assert cfg.TRAINER.COOP.PREC == "fp16" and cfg.TRAINER.COOP.CLASS_TOKEN_POSITION == "end"
    assert (cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT, cfg.TRAINER.COCOOP.PREC) == (16, "", "fp16")
    assert (cfg.TRAINER.MAPLE.N_CTX, cfg.TRAINER.MAPLE.CTX_INIT) == (2, "a photo of a")
    assert (cfg.TRAINER.MAPLE.PREC, cfg.TRAINER.MAPLE.PROMPT_DEPTH) == ("fp16", 9)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    q = cfg.TRAINER.QPROMPT
    for key in ("BITS", "TARGETS", "NORM", "MODE", "KMEANS_BACKEND", "PER_ROW", "NOISE_STD"):
        assert key in q, key
    for key in ("INTERVAL", "KL_THRESHOLD", "REQUIRE_ERROR_INCREASE"):
        assert key in q.CAC, key


def test_extend_cfg_agrees_with_trainers_defaults() -> None:
    """train.py spells CoOp's keys out as CoOp does; the plugin's config.py (source of TRAINER.QPROMPT) agrees."""
    train = _load_train_module()
    from quantprompt.dassl_plugin import config as tconfig

    cfg = train.extend_cfg(get_cfg_default())
    for dotted, default in tconfig.DEFAULTS.items():
        value = _get(cfg, dotted)
        assert (list(value) if isinstance(value, (list, tuple)) else value) == default, dotted


def _args(train, argv):
    return train.build_parser().parse_args(argv)


def test_setup_cfg_precedence_and_flags(tmp_path: Path) -> None:
    train = _load_train_module()
    ds = tmp_path / "ds.yaml"
    ds.write_text("DATASET:\n  NAME: Caltech101\nOPTIM:\n  LR: 0.5\n")
    method = tmp_path / "m.yaml"
    method.write_text("OPTIM:\n  LR: 0.002\n  MAX_EPOCH: 50\nTRAINER:\n  COOP:\n    N_CTX: 4\n")
    args = _args(train, [
        "--root", "/data", "--seed", "0", "--trainer", "CoOp", "--dataset-config-file", str(ds),
        "--config-file", str(method), "--output-dir", str(tmp_path / "out"), "--source-domains", "a", "b",
        "--transforms", "random_flip", "normalize", "--backbone", "tiny-vit",
        "OPTIM.MAX_EPOCH", "3", "TRAINER.QPROMPT.BITS", "2", "DATASET.NUM_SHOTS", "16",
    ])
    cfg = train.setup_cfg(args)
    assert cfg.is_frozen()
    assert cfg.DATASET.NAME == "Caltech101" and cfg.DATASET.ROOT == "/data"
    assert cfg.OPTIM.LR == 0.002  # method config overrides dataset config
    assert cfg.OPTIM.MAX_EPOCH == 3  # trailing opts override config files
    assert cfg.SEED == 0  # (CoOp drops --seed 0; we keep it)
    assert cfg.TRAINER.NAME == "CoOp" and cfg.MODEL.BACKBONE.NAME == "tiny-vit"
    assert cfg.TRAINER.COOP.N_CTX == 4 and cfg.TRAINER.QPROMPT.BITS == 2 and cfg.DATASET.NUM_SHOTS == 16
    assert list(cfg.DATASET.SOURCE_DOMAINS) == ["a", "b"]
    assert list(cfg.INPUT.TRANSFORMS) == ["random_flip", "normalize"]
    assert cfg.OUTPUT_DIR == str(tmp_path / "out")


def test_parser_has_coops_command_line() -> None:
    train = _load_train_module()
    args = _args(train, [])
    assert vars(args) == {
        "root": "", "output_dir": "", "resume": "", "seed": -1, "source_domains": None, "target_domains": None,
        "transforms": None, "config_file": "", "dataset_config_file": "", "trainer": "", "backbone": "",
        "head": "", "eval_only": False, "model_dir": "", "load_epoch": None, "no_train": False, "opts": [],
    }
    args = _args(train, ["--eval-only", "--model-dir", "m", "--load-epoch", "5", "--no-train", "--resume", "r",
                         "--target-domains", "x", "--head", "h"])
    assert (args.eval_only, args.model_dir, args.load_epoch, args.no_train) == (True, "m", 5, True)
    assert (args.resume, args.target_domains, args.head) == ("r", ["x"], "h")


def test_setup_cfg_errors_name_the_problem(tmp_path: Path) -> None:
    train = _load_train_module()
    with pytest.raises(FileNotFoundError, match="--config-file .*nope.yaml"):
        train.setup_cfg(_args(train, ["--config-file", str(tmp_path / "nope.yaml")]))
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        train.setup_cfg(_args(train, ["OPTIM.LR"]))
    with pytest.raises(ValueError, match="trailing KEY VALUE options: Non-existent key: OPTIM.NOT_A_KEY"):
        train.setup_cfg(_args(train, ["OPTIM.NOT_A_KEY", "1"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAINER:\n  COOP:\n    N_CTXX: 4\n")
    with pytest.raises(ValueError, match="--config-file .*bad.yaml: .*Non-existent config key: TRAINER.COOP.N_CTXX"):
        train.setup_cfg(_args(train, ["--config-file", str(bad)]))
