"""``python -m quantprompt.world pretrain [--quick] [--cache-dir DIR]`` and
``python -m quantprompt.world write DATASET... --root DIR``: the demo's two preparation steps on their own."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..clierrors import USER_ERRORS, OneLineParser, report


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = OneLineParser(prog="python -m quantprompt.world")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain (or check) the world CLIP in the cache")
    p.add_argument("--quick", action="store_true", help="the quick profile (2 + 2 layers, as quantprompt demo --quick)")
    p.add_argument("--cache-dir", help="default: $QUANTPROMPT_CACHE or ~/.cache/quantprompt")
    w = sub.add_parser("write", help="write world datasets in CoOp's layout")
    w.add_argument("datasets", nargs="+", help="WorldShapes, WorldPatterns, WorldObjects, WorldSketches, WorldPaintings")
    w.add_argument("--root", required=True, help="DATASET.ROOT to write into")
    w.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.command == "pretrain":
            from .cache import ensure_clip

            cached = ensure_clip("quick" if args.quick else "default", args.cache_dir)
            print(f"{cached.path} (spec {cached.spec!r}; zero-shot {cached.metadata.get('probe_zero_shot')}% "
                  "on the 64-class probe)")
        else:
            from .datasets import write_dataset

            for name in args.datasets:
                d = write_dataset(args.root, name, seed=args.seed)
                print(f"{d.dataset_dir}: {len(d.classnames)} classes {'(up to date)' if d.reused else ''}")
    except USER_ERRORS as err:
        return report(err, "python -m quantprompt.world")
    return 0


if __name__ == "__main__":
    sys.exit(main())
