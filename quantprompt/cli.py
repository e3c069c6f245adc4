"""The ``quantprompt`` command: deploy a packed prompt, inspect it, and the results tools.

    quantprompt classify --clip ViT-B/16 --prompt task.qpt [--classnames names.txt] IMAGE_OR_FOLDER... \\
        [--topk 5] [--text-cache task.text.safetensors] [--json]
    quantprompt classify --prompt model.p4q.safetensors [--int8] IMAGE_OR_FOLDER...   # P4Q export
    quantprompt inspect task.qpt [--json]
    quantprompt results OUTPUT_ROOT --table base2new --format github     # = tools/parse_test_res.py
    quantprompt plot fewshot OUTPUT_ROOT -o fig5.png                      # = tools/plot.py
    quantprompt grid base2new --methods qcoop,coop --jobs 4 [--data DIR]  # = python -m quantprompt.grid
    quantprompt configs [QCoOp | QCoOp/vit_b16_ctxv1 | datasets/caltech101]  # our YAML configs' paths
    quantprompt demo [--quick] [--methods ...] [--seeds ...] [--output DIR] [--cache-dir DIR] [--jobs N]
    quantprompt study [--claims ID,...] [--jobs N] [--dry-run] [--report-only]  # the claims study (docs/claims.md)

Imports are lazy: ``quantprompt --help`` and ``quantprompt inspect`` do not load CLIP.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from .clierrors import USER_ERRORS, OneLineParser, report, run_cli

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="quantprompt", description="Quantized prompt tuning for CLIP: tools.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="top-k classes of images with CLIP + a packed prompt (.qpt)")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    c.add_argument("--prompt", required=True,
                   help="packed prompt (.qpt) written by a quantized trainer, or a P4Q export (.safetensors)")
    c.add_argument(
        "--clip", help="CLIP spec (name, local file, HF folder, tiny-vit); default: the one in the .qpt"
    )
    c.add_argument(
        "--classnames", help="class names, one per line (needed when the .qpt stores only their hash)"
    )
    c.add_argument("--topk", type=int, default=5, help="classes shown per image (default 5)")
    c.add_argument("--text-cache", help="safetensors file caching the text features (created or reused)")
    c.add_argument("--device", default="cpu", help="torch device (default cpu)")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    c.add_argument("--int8", action="store_true",
                   help="P4Q export at 8 bits: encode images with PyTorch's int8 kernels (CPU)")

    i = sub.add_parser("inspect", help="metadata and size breakdown of a packed prompt (.qpt) or a P4Q export")
    i.add_argument("prompt")
    i.add_argument("--json", action="store_true")

    g = sub.add_parser("configs", help="path of our configs folder, a trainer's config names, or one config's path")
    g.add_argument("name", nargs="?", default="",
                   help="nothing: the folder; a trainer (QCoOp): its config names; QCoOp/vit_b16_ctxv1: the file")

    sub.add_parser("results", help="tables from an output tree (see tools/parse_test_res.py)", add_help=False)
    sub.add_parser("plot", help="the paper's figures (see tools/plot.py)", add_help=False)
    sub.add_parser("grid", help="run a benchmark grid on GPUs or SLURM (see docs/grid.md)", add_help=False)
    sub.add_parser("demo", help="base-to-new on the demo world with a CPU-pretrained CLIP (docs/demo.md)",
                   add_help=False)
    sub.add_parser("study", help="the papers' claims as a pre-registered paired study (docs/claims.md)",
                   add_help=False)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "results":
        from quantprompt.results.parse import main as results_main

        return results_main(argv[1:], prog="quantprompt results")
    if argv and argv[0] == "plot":
        from quantprompt.results.plotcli import main as plot_main

        return plot_main(argv[1:], prog="quantprompt plot")
    if argv and argv[0] == "grid":
        from quantprompt.grid.cli import main as grid_main

        return grid_main(argv[1:], prog="quantprompt grid")
    if argv and argv[0] == "study":
        from quantprompt.study.cli import main as study_main

        return study_main(argv[1:], prog="quantprompt study")
    if argv and argv[0] == "demo":
        from quantprompt.world.demo import main as demo_main

        return demo_main(argv[1:], prog="quantprompt demo")
    args = build_parser().parse_args(argv)
    if args.command == "configs":
        return _configs(args.name)
    from quantprompt import deploy

    try:
        if args.command == "inspect":
            from quantprompt.p4q.export import inspect_export, is_p4q_file

            if is_p4q_file(args.prompt):
                info = inspect_export(args.prompt)
                print(json.dumps(info, indent=1, default=str) if args.json else
                      "\n".join(f"{k}: {v}" for k, v in info.items()))
                return 0
            info = deploy.inspect_qpt(args.prompt)
            print(json.dumps(info, indent=1, default=str) if args.json else deploy.inspect_text(info))
            return 0
        clf = deploy.Classifier(
            args.prompt,
            clip=args.clip,
            classnames=args.classnames,
            device=args.device,
            text_cache=args.text_cache,
            int8=args.int8,
        )
        preds = clf.classify(args.images, topk=args.topk, batch_size=args.batch_size)
    except USER_ERRORS as err:
        return report(err, f"quantprompt {args.command}")
    for pred in preds:
        if args.json:
            print(json.dumps(pred.to_dict()))
        else:
            tops = "  ".join(f"{name} ({prob * 100:.1f}%)" for name, prob in pred.topk)
            print(f"{pred.image}: {tops}")
    return 0


def _configs(name: str) -> int:
    """``quantprompt configs``: print a path (for ``--config-file $(quantprompt configs QCoOp/...)``) or names."""
    from quantprompt import configs

    try:
        if not name:
            print(configs.configs_dir())
        elif name.strip("/") == "datasets":
            print("\n".join(sorted(p.stem for p in (configs.configs_dir() / "datasets").glob("*.yaml"))))
        elif name.strip("/") == "trainers":
            print("\n".join(sorted(p.name for p in (configs.configs_dir() / "trainers").iterdir() if p.is_dir())))
        elif "/" not in name.strip("/"):
            names = configs.available(name.strip("/"))
            if not names:
                configs.resolve(name)  # raises, listing the trainers that exist
            print("\n".join(names))
        else:
            print(configs.resolve(name))
    except USER_ERRORS as err:
        return report(err, "quantprompt configs")
    return 0


def entry() -> None:
    """The ``quantprompt`` console script: :func:`main`, a bad input reported in one line (exit code 2)."""
    sys.exit(run_cli(main, "quantprompt"))


if __name__ == "__main__":  # pragma: no cover
    entry()
