"""``--trainer QCoOp`` inside a foreign CoOp-family checkout, with the two lines docs/existing-checkout.md gives.

The checkout is built in a temporary folder as CoOp's and MaPLe's repositories are laid out: its own
``train.py`` (CoOp's structure, plus ``import quantprompt.dassl_plugin as qp`` and ``qp.extend_cfg(cfg)``), its
own ``trainers/`` registering a baseline named ``CoOp``, its own ``datasets/`` registering ``Caltech101``, and a
hostile top-level ``clip/`` package: one that raises on import, or one with MaPLe's ``CLIP(..., design_details)``
signature that the host's trainers import first (as MaPLe's do). Only the installed ``quantprompt`` package is
importable from our repository (through a folder holding a link to it), never our ``trainers/``/``datasets/``.

Each Q-trainer trains on the base classes, writes its packed prompt, and a second run evaluates the packed
prompt on the new classes. The engine case runs everywhere: there the checkout's ``from dassl... import``
lines resolve to a stand-in ``dassl`` package that re-exports our engine (``QUANTPROMPT_BACKEND=engine``). The
same runs happen under real Dassl.pytorch whenever it is importable.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HAS_DASSL = importlib.util.find_spec("dassl") is not None
BACKENDS = [
    "engine",
    pytest.param("dassl", marks=pytest.mark.skipif(
        not HAS_DASSL, reason="Dassl.pytorch is not importable here; the engine case runs the same checkout")),
]
MODEL_DIR = {"QCoOp": "prompt_learner", "QCoCoOp": "prompt_learner", "QMaPLe": "MultiModalPromptLearner"}

HOST_TRAIN = '''\
"""A CoOp-style train.py of a foreign checkout; the two lines marked ADDED are all that QuantPrompt needs."""
import argparse
import sys

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import set_random_seed, setup_logger

import datasets.caltech101  # noqa: F401
import trainers.coop  # noqa: F401
import quantprompt.dassl_plugin as qp  # ADDED 1


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    qp.extend_cfg(cfg)  # ADDED 2


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(args.dataset_config_file)
    cfg.merge_from_file(args.config_file)
    cfg.DATASET.ROOT = args.root
    cfg.OUTPUT_DIR = args.output_dir
    cfg.SEED = args.seed
    cfg.TRAINER.NAME = args.trainer
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup_cfg(args)
    set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    else:
        trainer.train()
    # test probes: what `clip` means to the host, what quantprompt bound to, who owns the baseline name
    print("PROBE host clip:", getattr(sys.modules.get("clip"), "__file__", None))
    print("PROBE quantprompt clip:", getattr(sys.modules.get("_quantprompt_openai_clip"), "__file__", None))
    print("PROBE CoOp:", TRAINER_REGISTRY.get("CoOp").__module__, qp.skipped_baselines())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--root", "--output-dir", "--trainer", "--config-file", "--dataset-config-file", "--model-dir"):
        parser.add_argument(flag, type=str, default="")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--load-epoch", type=int)
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER)
    main(parser.parse_args())
'''

HOST_TRAINERS = {
    "trainers/__init__.py": "",
    # MaPLe's trainers import their edited clip at module level; the raising variant must not be imported at all
    "trainers/coop.py": '''\
        {clip_import}
        from dassl.engine import TRAINER_REGISTRY, TrainerX


        @TRAINER_REGISTRY.register()
        class CoOp(TrainerX):
            """The host's own baseline (never run here): its name must keep pointing at this class."""
        ''',
}

HOST_DATASETS = {
    "datasets/__init__.py": "",
    "datasets/caltech101.py": '''\
        import json
        import math
        import os

        from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum


        @DATASET_REGISTRY.register()
        class Caltech101(DatasetBase):
            """The host's reader of CoOp's Caltech101 split file, with base/new halves of the classes."""

            def __init__(self, cfg):
                folder = os.path.join(os.path.abspath(cfg.DATASET.ROOT), "caltech-101")
                with open(os.path.join(folder, "split_zhou_Caltech101.json")) as f:
                    split = json.load(f)
                labels = sorted({int(item[1]) for item in split["train"]})
                half = math.ceil(len(labels) / 2)
                sub = cfg.DATASET.SUBSAMPLE_CLASSES
                keep = {"all": labels, "base": labels[:half], "new": labels[half:]}[sub]
                relabel = {old: new for new, old in enumerate(keep)}

                def read(items):
                    return [Datum(impath=os.path.join(folder, "101_ObjectCategories", path),
                                  label=relabel[int(label)], classname=name)
                            for path, label, name in items if int(label) in relabel]

                super().__init__(train_x=read(split["train"]), val=read(split["val"]), test=read(split["test"]))
        ''',
    "configs/datasets/caltech101.yaml": 'DATASET:\n  NAME: "Caltech101"\n',
}

HOSTILE_CLIP = {
    "raising": {
        "clip/__init__.py": 'raise RuntimeError("the host checkout\'s clip/ folder was imported")\n',
    },
    # MaPLe's edited copy: CLIP needs design_details; everything else fails loudly if quantprompt used it
    "maple": {
        "clip/__init__.py": "from . import clip, model  # noqa: F401\n",
        "clip/clip.py": '''\
            _MODELS = {}


            def tokenize(*args, **kwargs):
                raise RuntimeError("the host checkout's clip.tokenize was used")


            def _transform(n_px):
                raise RuntimeError("the host checkout's clip._transform was used")
            ''',
        "clip/model.py": '''\
            class CLIP:
                def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                             context_length, vocab_size, transformer_width, transformer_heads,
                             transformer_layers, design_details):
                    self.design_details = design_details


            def convert_weights(model):
                raise RuntimeError("the host checkout's clip.model.convert_weights was used")
            ''',
        "clip/simple_tokenizer.py": '''\
            class SimpleTokenizer:
                def __init__(self):
                    raise RuntimeError("the host checkout's SimpleTokenizer was used")
            ''',
    },
}

# A stand-in `dassl` for the engine case: the checkout's `from dassl.x import y` lines get our engine's names.
DASSL_STANDIN = {
    "dassl/__init__.py": "",
    "dassl/config.py": "from quantprompt.engine.compat import get_cfg_default  # noqa: F401\n",
    "dassl/engine.py": "from quantprompt.engine.compat import TRAINER_REGISTRY, TrainerX, build_trainer  # noqa: F401\n",
    "dassl/utils.py": "from quantprompt.engine.compat import set_random_seed, setup_logger  # noqa: F401\n",
    "dassl/data/__init__.py": "",
    "dassl/data/datasets.py": "from quantprompt.engine.compat import DATASET_REGISTRY, DatasetBase, Datum  # noqa: F401\n",
}


def _write(root: Path, files: dict[str, str], **fmt: str) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text)
        path.write_text(text.format(**fmt) if fmt else text)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantprompt.testing import make_dataset

    root = tmp_path_factory.mktemp("foreign-data")
    make_dataset(root, "Caltech101", n_classes=4, images_per_class=6, seed=0)
    return root


def make_checkout(root: Path, hostile: str) -> Path:
    """The foreign checkout in ``root/host``; returns its folder."""
    host = root / "host"
    (host / "train.py").parent.mkdir(parents=True)
    (host / "train.py").write_text(HOST_TRAIN)
    clip_import = "from clip import clip  # noqa: F401  (as MaPLe's trainers do)" if hostile == "maple" else ""
    _write(host, HOST_TRAINERS, clip_import=clip_import)
    _write(host, HOST_DATASETS)
    _write(host, HOSTILE_CLIP[hostile])
    return host


def environment(root: Path, backend: str) -> dict[str, str]:
    """Only the installed package from our repository: a folder linking ``quantprompt`` (plus the dassl stand-in)."""
    site = root / "site"
    site.mkdir()
    (site / "quantprompt").symlink_to(REPO / "quantprompt", target_is_directory=True)
    paths = [str(site)]
    if backend == "engine":
        _write(root / "standin", DASSL_STANDIN)
        paths.insert(0, str(root / "standin"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QUANTPROMPT_BACKEND")}
    env.update(PYTHONPATH=os.pathsep.join(paths), QUANTPROMPT_BACKEND=backend, PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_host(host: Path, env: dict[str, str], *args: str) -> str:
    res = subprocess.run([sys.executable, "train.py", *args], cwd=host, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.stdout


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("trainer,hostile", [("QCoOp", "raising"), ("QCoCoOp", "maple"), ("QMaPLe", "maple")])
def test_q_trainer_in_foreign_checkout(tmp_path: Path, data: Path, backend: str, trainer: str, hostile: str) -> None:
    from quantprompt.clip._openai import openai_clip_dir
    from quantprompt.configs import resolve

    host = make_checkout(tmp_path, hostile)
    env = environment(tmp_path, backend)
    common = ["--root", str(data), "--seed", "1", "--trainer", trainer,
              "--dataset-config-file", "configs/datasets/caltech101.yaml",
              "--config-file", str(resolve(f"{trainer}/tiny"))]  # our config, found from the installed package
    out = host / "output" / "base2new"
    train_out = run_host(host, env, *common, "--output-dir", str(out / "train_base"),
                         "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1")
    folder = out / "train_base" / MODEL_DIR[trainer]
    qpt = folder / "model.qpt-1"
    assert qpt.is_file() and (folder / "model.pth.tar-1").is_file()
    assert f"Packed prompt saved to {qpt}" in train_out
    assert re.search(r"^\* accuracy: [\d.]+%$", train_out, re.M)

    test_out = run_host(host, env, *common, "--output-dir", str(out / "test_new"), "--model-dir",
                        str(out / "train_base"), "--load-epoch", "1", "--eval-only",
                        "DATASET.SUBSAMPLE_CLASSES", "new", "TEST.LOAD_QPT", "True")
    assert f'Loading packed prompt from "{qpt}"' in test_out
    assert re.search(r"^\* accuracy: [\d.]+%$", test_out, re.M)
    assert (out / "test_new" / "log.txt").is_file()

    for text in (train_out, test_out):
        host_clip = re.search(r"^PROBE host clip: (.*)$", text, re.M)[1]
        ours = re.search(r"^PROBE quantprompt clip: (.*)$", text, re.M)[1]
        assert Path(ours) == openai_clip_dir() / "__init__.py"
        if hostile == "maple":  # the host's own `import clip` still gives its edited copy
            assert Path(host_clip) == host / "clip" / "__init__.py"
        else:
            assert host_clip == "None"
        # the host's baseline kept its name: the plugin registers only our methods
        assert re.search(r"^PROBE CoOp: trainers\.coop \[\]$", text, re.M)


def test_config_names_resolve_from_the_installed_package(tmp_path: Path) -> None:
    """`quantprompt configs` (no torch needed) prints paths a foreign train.py's --config-file can take."""
    env = environment(tmp_path, "engine")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "quantprompt.cli", "configs", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    assert Path(cli().stdout.strip()) == REPO / "configs"
    assert Path(cli("QCoOp/vit_b16_ctxv1").stdout.strip()) == REPO / "configs/trainers/QCoOp/vit_b16_ctxv1.yaml"
    assert Path(cli("datasets/oxford_pets.yaml").stdout.strip()) == REPO / "configs/datasets/oxford_pets.yaml"
    assert "vit_b16_c2_ep5_batch4_2ctx" in cli("QMaPLe").stdout.split()
    bad = cli("QCoOp/vit_b99")
    assert bad.returncode == 2 and "no config 'QCoOp/vit_b99'" in bad.stderr and "vit_b16_ctxv1_b2" in bad.stderr
    bad = cli("QCoop/tiny")
    assert bad.returncode == 2 and "no trainer 'QCoop'" in bad.stderr and "QCoOp" in bad.stderr
    env_bad = dict(env, QUANTPROMPT_CONFIGS=str(tmp_path))
    res = subprocess.run([sys.executable, "-m", "quantprompt.cli", "configs"], cwd=tmp_path, env=env_bad,
                         capture_output=True, text=True)
    assert res.returncode == 2 and f"QUANTPROMPT_CONFIGS={tmp_path} is not a quantprompt configs folder" in res.stderr


# ------------------------------------------------------------------------------------------------------------
# the host's *own* trainers, quantized by one more line: qp.quantize_trainers(...)  (see tests/test_dassl_plugin_wrap.py)
# ------------------------------------------------------------------------------------------------------------
TINY_HOST_CONFIG = """\
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 50
  NUM_WORKERS: 0
INPUT:
  SIZE: (32, 32)
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_flip", "normalize"]
OPTIM:
  NAME: "sgd"
  LR: 0.5
  MAX_EPOCH: 2
  LR_SCHEDULER: "cosine"
TRAIN:
  PRINT_FREQ: 1
MODEL:
  BACKBONE:
    NAME: "tiny-vit"
"""


def make_wrapping_checkout(root: Path, backend: str) -> Path:
    """The fake checkout plus its own trainers (tests/fake_host_trainers.py.txt) and the third added line."""
    host = make_checkout(root, "maple")
    src = (Path(__file__).parent / "fake_host_trainers.py.txt").read_text()
    (host / "trainers" / "fakes.py").write_text(src.format(engine="dassl.engine", optim="dassl.optim",
                                                           utils="dassl.utils"))
    text = HOST_TRAIN.replace("import trainers.coop  # noqa: F401\n",
                              "import trainers.coop  # noqa: F401\nimport trainers.fakes  # noqa: F401\n")
    text = text.replace("import quantprompt.dassl_plugin as qp  # ADDED 1\n",
                        "import quantprompt.dassl_plugin as qp  # ADDED 1\n"
                        'qp.quantize_trainers("KgLike", "SrcLike")  # ADDED 3\n')
    (host / "train.py").write_text(text)
    (host / "configs" / "trainers").mkdir(parents=True)
    (host / "configs" / "trainers" / "tiny.yaml").write_text(TINY_HOST_CONFIG)
    if backend == "engine":  # the stand-in dassl also needs the optimizer builders and load_checkpoint
        _write(root / "standin", {
            "dassl/optim.py": "from quantprompt.engine.compat import build_lr_scheduler, build_optimizer  # noqa\n",
            "dassl/utils.py": "from quantprompt.engine.compat import load_checkpoint, set_random_seed, "
                              "setup_logger  # noqa: F401\n",
        })
    return host


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("trainer", ["QKgLike", "QSrcLike"])
def test_wrapped_host_trainer_in_foreign_checkout(tmp_path: Path, data: Path, backend: str, trainer: str) -> None:
    env = environment(tmp_path, backend)
    host = make_wrapping_checkout(tmp_path, backend)
    folder_name = {"QKgLike": "prompt_learner", "QSrcLike": "VLPromptLearner"}[trainer]
    common = ["--root", str(data), "--seed", "1", "--trainer", trainer,
              "--dataset-config-file", "configs/datasets/caltech101.yaml", "--config-file", "configs/trainers/tiny.yaml"]
    out = host / "output" / "base2new"
    train_out = run_host(host, env, *common, "--output-dir", str(out / "train_base"),
                         "DATASET.SUBSAMPLE_CLASSES", "base")
    qpt = out / "train_base" / folder_name / "model.qpt-2"
    assert f"Packed prompt saved to {qpt}" in train_out
    assert re.search(r"^QPrompt: 1-bit qat on 1 trained tensors \(\d+ values\): prompt_learner.ctx$", train_out, re.M)
    assert re.search(r"^Storage of learned parameters \(packed \.qpt\): \d+ bytes payload", train_out, re.M)
    if trainer == "QSrcLike":
        assert "Using GPA model for final inference..." in train_out
    test_out = run_host(host, env, *common, "--output-dir", str(out / "test_new"), "--model-dir",
                        str(out / "train_base"), "--load-epoch", "2", "--eval-only",
                        "DATASET.SUBSAMPLE_CLASSES", "new", "TEST.LOAD_QPT", "True")
    assert f'Loading packed prompt from "{qpt}"' in test_out
    assert re.search(r"^\* accuracy: [\d.]+%$", test_out, re.M)
    # the results tools read the Size column of the Q<Name> run from its .qpt
    from quantprompt.results import run_size

    size, problem = run_size(out / "train_base", trainer)
    assert problem is None and size.source == "qpt" and size.path == str(qpt)
