"""Evaluation time of each prompt model over the same images with 1,000 classes, against zero-shot CLIP.

CoOp, QCoOp, MaPLe and QMaPLe compute their text features once per evaluation in eval mode (their prompts
do not depend on the image), like zero-shot CLIP; the references recompute them for every batch (shown as
``coop_uncached``). CoCoOp's prompts depend on each image, so it runs the text encoder once per image.

    python bench/eval.py                       # tiny CLIP, CPU, 1,000 classes, 256 images
    python bench/eval.py --clip ViT-B/16 --device cuda --precision fp16 --images 512
    python bench/eval.py --clip vitb16-random --device cuda --precision fp16   # the shapes, without weights

Ends with one ``name: value`` line per figure (times in seconds; ratios vs zero-shot CLIP in this run).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("zsclip", "coop", "qcoop", "maple", "qmaple", "cocoop")


def load_clip(spec: str, seed: int, device: str, precision: str) -> Any:
    from quantprompt import clip as qclip

    if spec in ("tiny", "tiny-vit"):
        return qclip.tiny(seed, "vit").to(device)
    if spec == "vitb16-random":  # ViT-B/16's shapes (224 px, 12 + 12 layers), random weights: no download
        from bench.train import vitb16_clip

        return vitb16_clip(12, 224, seed).to(device)
    return qclip.load(spec, device=device, precision=precision)[0]


def time_eval(model: Any, batches: list, uncached: bool = False, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` full evaluations (each starts with an empty text cache)."""
    import torch

    best = float("inf")
    model.eval()
    for _ in range(repeats):
        model.invalidate_cache()
        if batches[0].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            for images in batches:
                if uncached:
                    model.invalidate_cache()  # what the references do: text features for every batch
                model(images)
        if batches[0].is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="tiny", help="'tiny' (default), 'vitb16-random' (ViT-B/16's shapes, "
                        "random weights, no download) or any quantprompt.clip.load spec")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cocoop-images", type=int, default=4,
                        help="evaluate CoCoOp on the first N images only (its time is scaled to all images)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list from {', '.join(MODELS)}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp16", "fp32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from quantprompt import prompting

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    if "zsclip" not in models:
        models.insert(0, "zsclip")
    torch.manual_seed(args.seed)
    classnames = [f"object number {i}" for i in range(args.classes)]
    clip_model = load_clip(args.clip, args.seed, args.device, args.precision)
    res = clip_model.visual.input_resolution
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.images, 3, res, res, generator=gen).to(args.device)
    batches = list(images.split(args.batch_size))
    options = {
        "zsclip": {},
        "coop": {"n_ctx": 4, "ctx_init": "a photo of a"},
        "qcoop": {"n_ctx": 4, "ctx_init": "a photo of a", "bits": 1},
        "maple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": 9},
        "qmaple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": 9, "bits": 4},
        "cocoop": {"n_ctx": 4, "ctx_init": "a photo of a"},
    }
    figures: dict[str, float] = {}
    print(f"CLIP {args.clip} on {args.device} ({args.precision}), {args.classes} classes, {args.images} images, "
          f"batch {args.batch_size}, best of {args.repeats} (models interleaved)")
    built = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in models:
            built[name] = prompting.build(name, clip_model, classnames, precision=args.precision, **options[name])
    n_cocoop = min(args.cocoop_images or args.images, args.images)
    best = {name: float("inf") for name in models}
    if "coop" in models:
        best["coop_uncached"] = float("inf")
    for _ in range(args.repeats):  # round robin, so drifting machine load hits every model alike
        for name in models:
            if name == "cocoop":
                continue
            best[name] = min(best[name], time_eval(built[name], batches, repeats=1))
            if name == "coop":
                best["coop_uncached"] = min(best["coop_uncached"], time_eval(built[name], batches, True, 1))
    if "cocoop" in models:  # one run: each image costs a full text-encoder pass over all classes
        sub = list(images[:n_cocoop].split(args.batch_size))
        best["cocoop"] = time_eval(built["cocoop"], sub, repeats=1) * args.images / n_cocoop
    for name, seconds in best.items():
        figures[f"{name}_seconds"] = seconds
        note = f" (measured on {n_cocoop} images, scaled)" if name == "cocoop" and n_cocoop < args.images else ""
        print(f"  {name:14s} {seconds:9.3f} s{note}")
    base = figures["zsclip_seconds"]
    for name in [m for m in best if m != "zsclip"]:
        figures[f"{name}_vs_zsclip"] = figures[f"{name}_seconds"] / base
    if "coop_uncached_seconds" in figures:
        figures["coop_cache_speedup"] = figures["coop_uncached_seconds"] / figures["coop_seconds"]
    for key, value in figures.items():
        print(f"{key}: {value:.4g}")
    return figures


if __name__ == "__main__":
    main()
