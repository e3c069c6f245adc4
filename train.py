"""Train / evaluate a prompt-learning method: CoOp's ``train.py``, same command line, config order and output.

    python train.py --root DATA --seed 1 --trainer QCoOp \\
        --dataset-config-file configs/datasets/caltech101.yaml \\
        --config-file configs/trainers/QCoOp/vit_b16_ep10_bits1.yaml \\
        --output-dir output/base2new/train_base/caltech101/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Config precedence (CoOp's): defaults < dataset config < method config < command-line flags < trailing KEY VALUE
pairs. Dassl names come from ``quantprompt.engine.compat``: real Dassl.pytorch when installed, else the
built-in engine (``QUANTPROMPT_BACKEND=engine|dassl`` forces one). Runs from any working directory.
"""

from __future__ import annotations

import argparse
import importlib
import os
import os.path as osp
import pkgutil
import sys
from typing import Any, Optional

REPO_ROOT = osp.dirname(osp.abspath(__file__))
if sys.path[:1] != [REPO_ROOT]:
    # trainers/ and datasets/ are imported from the repo root (as in CoOp); first on the path so that the
    # repo's `datasets` wins over Hugging Face's package of the same name.
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from quantprompt.clierrors import OneLineParser, run_cli  # noqa: E402
from quantprompt.engine.compat import (  # noqa: E402
    build_trainer,
    collect_env_info,
    get_cfg_default,
    set_random_seed,
    setup_logger,
)

PLUGIN_PACKAGES = ("datasets", "trainers")


def import_plugins(packages: tuple[str, ...] = PLUGIN_PACKAGES) -> list[str]:
    """Import the repo's ``datasets`` and ``trainers`` packages and every public module in them, which registers
    the dataset and trainer classes (CoOp's train.py lists its ``import datasets.xyz`` lines by hand).

    Returns the imported module names. A package of that name from elsewhere (e.g. Hugging Face ``datasets``
    imported earlier in the process) is an error naming both paths.
    """
    imported: list[str] = []
    for package_name in packages:
        package = importlib.import_module(package_name)
        paths = [osp.abspath(p) for p in getattr(package, "__path__", [])]
        expected = osp.join(REPO_ROOT, package_name)
        if expected not in paths:
            raise ImportError(
                f"`import {package_name}` gave {paths or package}, not this repository's {expected}: another "
                "package of that name was imported first (or the repo's folder lacks __init__.py)"
            )
        imported.append(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.startswith("_"):
                continue
            full_name = f"{package_name}.{module.name}"
            importlib.import_module(full_name)
            imported.append(full_name)
    return imported


def print_args(args: argparse.Namespace, cfg: Any) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg: Any, args: argparse.Namespace) -> None:
    """Copy the command-line flags into ``cfg`` (CoOp's rules: an empty flag leaves the config value)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        # CoOp writes `if args.seed:`, which silently ignores `--seed 0`; any given seed (default -1) is used.
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg: Any) -> Any:
    """Add the config keys of the prompt-learning methods to Dassl's default tree: CoOp's and MaPLe's
    ``extend_cfg`` (spelled out as they do), then ours under ``TRAINER.QPROMPT`` from the plugin's own
    ``extend_cfg`` (the one line a foreign CoOp/MaPLe ``train.py`` adds, see docs/existing-checkout.md).

    yacs refuses a YAML key the tree does not hold, so the method configs only merge after this ran.
    """
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    cfg.TRAINER.COOP.CTX_INIT = ""  # initialization words
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # 'middle' or 'end' or 'front'

    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16
    cfg.TRAINER.COCOOP.CTX_INIT = ""
    cfg.TRAINER.COCOOP.PREC = "fp16"

    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"
    cfg.TRAINER.MAPLE.PREC = "fp16"
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # 1 = shallow MaPLe, at most 12

    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new

    # Ours, TRAINER.QPROMPT.* (BITS, TARGETS, NORM, MODE, KMEANS_BACKEND, PER_ROW, CAC.*, NOISE_STD), and the
    # trainers' extra keys come from quantprompt/dassl_plugin/config.py: one source for their defaults, shared
    # with the trainers (which read them) and with pipelines that use our trainers from their own train.py.
    from quantprompt.dassl_plugin.config import extend_cfg as extend_quantprompt_cfg

    extend_quantprompt_cfg(cfg)  # adds only the keys missing above
    return cfg


def setup_cfg(args: argparse.Namespace) -> Any:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:  # 1. the dataset config file
        _check_file(args.dataset_config_file, "--dataset-config-file")
        _merge(cfg.merge_from_file, args.dataset_config_file, f"--dataset-config-file {args.dataset_config_file}")
    if args.config_file:  # 2. the method config file
        _check_file(args.config_file, "--config-file")
        _merge(cfg.merge_from_file, args.config_file, f"--config-file {args.config_file}")
    reset_cfg(cfg, args)  # 3. command-line flags
    opts = list(args.opts or [])
    if opts[:1] == ["--"]:
        opts = opts[1:]
    if len(opts) % 2 != 0:
        raise ValueError(f"trailing config options must be KEY VALUE pairs, got an odd number: {opts}")
    _merge(cfg.merge_from_list, opts, "the trailing KEY VALUE options")  # 4. trailing KEY VALUE pairs
    cfg.freeze()
    return cfg


def _merge(merge: Any, source: Any, where: str) -> None:
    """Run a yacs merge, turning its bare AssertionError (unknown key) into a ValueError naming the source."""
    try:
        merge(source)
    except AssertionError as err:
        raise ValueError(
            f"{where}: {err} (a key must exist in Dassl's defaults or be added by extend_cfg; check its spelling)"
        ) from err
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from err


def _check_file(path: str, flag: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f"{flag} {path}: no such file (relative paths are read from {os.getcwd()})")


def main(args: argparse.Namespace) -> None:
    import_plugins()
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    try:
        if torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True

        print_args(args, cfg)
        print("Collecting env info ...")
        print(f"** System info **\n{collect_env_info()}\n")

        trainer = build_trainer(cfg)

        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.test()
            return

        if not args.no_train:
            trainer.train()
    finally:
        sys.stdout.flush()
        _restore_stdout()


def _restore_stdout() -> None:
    """Undo the engine's log tee when main() runs inside a longer-lived process (tests). Dassl's own Logger is
    left alone, as in CoOp (dropping it would close the console)."""
    from quantprompt.engine.utils import Logger, restore_stdout

    if isinstance(sys.stdout, Logger):
        restore_stdout()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume", type=str, default="", help="checkpoint directory (from which the training resumes)"
    )
    parser.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir", type=str, default="", help="load model from this directory for eval-only mode"
    )
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def cli(argv: Optional[list[str]] = None) -> None:
    main(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(cli, "train.py"))
