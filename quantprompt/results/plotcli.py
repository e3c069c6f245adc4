"""Command line of ``tools/plot.py`` (also ``quantprompt plot``): one sub-command per figure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..clierrors import USER_ERRORS, OneLineParser, report

__all__ = ["main", "build_parser"]


def _labelled(items: Sequence[str]) -> dict[str, str]:
    """``LABEL=PATH`` or ``PATH`` (label = the path) -> {label: path}."""
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = item, item
        out[label] = path
    return out


def build_parser(prog: str = "plot.py") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description="Draw the paper's figures (PNG).")
    sub = p.add_subparsers(dest="figure", required=True)

    f = sub.add_parser("fewshot", help="Fig. 5: accuracy vs shots per method, averaged over datasets")
    f.add_argument("root", help="output root with few-shot runs")
    f.add_argument("--keyword", default="accuracy")

    e = sub.add_parser(
        "epochs", help="Figs. 2/7: base and new accuracy vs epoch per noise level or bit width"
    )
    e.add_argument("root", nargs="?", help="output root (groups = trainer/cfg of its train_base runs)")
    e.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="LABEL=RUN_DIR",
        help="explicit run folder(s) per curve (repeat; the same label averages several runs)",
    )
    e.add_argument("--splits", nargs="+", default=["base", "new"])

    h = sub.add_parser("hist", help="Fig. 3: histograms of prompt weights per epoch")
    h.add_argument("run", help="run folder with prompt_snapshots/")
    h.add_argument("--epochs", type=int, nargs="+")
    h.add_argument("--bins", type=int, default=60)
    h.add_argument("--keys", nargs="+", help="tensor names / regexes (default: all latent prompt tensors)")
    h.add_argument(
        "--quantized", action="store_true", help="plot the quantized values instead of latent ones"
    )

    k = sub.add_parser("kl", help="Fig. 6: KL divergence between adjacent epochs' prompt weights")
    k.add_argument("runs", nargs="+", metavar="[LABEL=]RUN_DIR")
    k.add_argument("--bins", type=int, default=60)
    k.add_argument("--keys", nargs="+")

    for s in (f, e, h, k):
        s.add_argument("-o", "--output", required=True, help="PNG file to write")
        s.add_argument("--title")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "plot.py") -> int:
    args = build_parser(prog).parse_args(argv)
    from . import plots

    kw = {"title": args.title} if args.title else {}
    root = getattr(args, "root", None)
    if root and not Path(root).is_dir():
        return report(NotADirectoryError(f"{root}: no such folder (give the output root of your runs)"), prog)
    try:
        if args.figure == "fewshot":
            out = plots.fewshot_curves(args.root, args.output, keyword=args.keyword, **kw)
        elif args.figure == "epochs":
            if args.run:
                groups: dict[str, list[str]] = {}
                for item in args.run:
                    label, sep, path = item.partition("=")
                    groups.setdefault(label if sep else item, []).append(path if sep else item)
                source = groups
            elif args.root:
                source = args.root
            else:
                print("error: give an output root or --run LABEL=RUN_DIR", file=sys.stderr)
                return 2
            out = plots.epoch_curves(source, args.output, splits=args.splits, **kw)
        elif args.figure == "hist":
            out = plots.weight_histograms(
                args.run,
                args.output,
                epochs=args.epochs,
                bins=args.bins,
                keys=args.keys,
                quantized=args.quantized,
                **kw,
            )
        else:
            out = plots.kl_trend(_labelled(args.runs), args.output, bins=args.bins, keys=args.keys, **kw)
    except USER_ERRORS as err:
        return report(err, prog)
    print(f"wrote {Path(out)}")
    return 0
