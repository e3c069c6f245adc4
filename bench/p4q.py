"""P4Q made real: file size of the exported low-bit model and int8 CPU speed, against fp32 CLIP, same run.

ViT-B/32 shapes with random weights (speed and size do not depend on the values). Steps:

1. fp32 CLIP's state dict as safetensors: the size baseline (whole model, both encoders).
2. P4Q at W8A8 and W4A8 (calibrated on a few random images), exported with ``quantprompt.p4q.export``:
   ``p4q_file_ratio_w8`` / ``_w4`` = export file bytes / fp32 file bytes.
3. Image-encoding time, ``--threads`` threads each (default 1 vs 1; the box may be shared, so runs are
   interleaved and the best of ``--repeats`` counts): fp32 CLIP's image encoder against the exported 8-bit
   model loaded back and run on FBGEMM int8 GEMMs with the calibrated activation ranges
   (``p4q_cpu_speedup_int8``, the backend ``quantprompt classify --int8`` uses), on PyTorch's dynamic int8
   Linear (``p4q_cpu_speedup_int8_dynamic``) and, with ``--torchao``, torchao's int8-dynamic-activation
   int8-weight path on the same weights (``p4q_cpu_speedup_torchao``).
4. ``p4q_prediction_agreement``: share of test images whose class under the int8 model equals the simulated-
   quantization model's (the calibrated P4Q model in fake quantization), over ``--test-images`` images
   (``_dynamic``: the same for the dynamic path).

    python bench/p4q.py                  # ~5 min on one free core
    python bench/p4q.py --threads 2 --torchao

Ends with ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIT_B32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
               text_width=512, text_heads=8, text_layers=12)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(n: int, seed: int, size: int = 224) -> Any:
    """Smooth random colour fields (different per image), normalised like CLIP's inputs."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 7, 7, generator=g) * torch.rand(n, 1, 1, 1, generator=g) * 2
    fine = torch.randn(n, 3, size, size, generator=g) * 0.3
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) + fine


def best_time(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def torchao_encoder(model: Any) -> Any:
    """The same 8-bit weights as plain Linear layers, quantized by torchao (int8 dynamic act., int8 weight)."""
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from quantprompt.p4q.backend import Int8ImageEncoder, PatchLinear
    from quantprompt.p4q.layers import QuantLinear, QuantPatchConv
    from quantprompt.p4q.ptq import _set, _shared_copy

    def linear(weight: Any, bias: Any) -> nn.Linear:
        w = weight.reshape(weight.shape[0], -1)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    visual = _shared_copy(model.image_encoder)
    for name, m in list(visual.named_modules()):
        if isinstance(m, QuantLinear):
            _set(visual, name, linear(m.qweight().detach(), m.bias))
        elif isinstance(m, QuantPatchConv):
            _set(visual, name, PatchLinear(m, linear(m.qweight().detach(), m.bias)))
    quantize_(visual, Int8DynamicActivationInt8WeightConfig())
    return Int8ImageEncoder(visual, model.prompt_learner.adapter).eval()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="images per timed encoding pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--calib-images", type=int, default=8)
    parser.add_argument("--torchao", action="store_true",
                        help="also time torchao's int8 path (slow on CPUs without VNNI: ~15x slower than fp32 here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--act-bits", type=int, default=8,
                        help="activation bits of the simulated model (7: the grid int8 GEMMs without VNNI compute)")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    from quantprompt import clip as qclip
    from quantprompt import prompting
    from quantprompt.p4q.backend import int8_image_encoder, kernel_levels
    from quantprompt.p4q.export import export_p4q, load_p4q

    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    figures: dict[str, float] = {}
    clip = qclip.tiny(args.seed, "vit", **VIT_B32)
    n_params = sum(v.numel() for v in clip.state_dict().values())
    print(f"CLIP ViT-B/32 shapes, random weights: {n_params / 1e6:.1f} M values; {args.threads} thread(s), "
          f"CPU shared with other jobs: ratios are measured in this run, interleaved")
    calib = [images(args.calib_images, args.seed + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = os.path.join(tmp, "clip_fp32.safetensors")
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, fp32_path)
        fp32_bytes = os.path.getsize(fp32_path)
        print(f"fp32 CLIP file: {fp32_bytes / 2**20:.1f} MiB")
        paths = {}
        for bits in (8, 4):
            model = prompting.build("p4q", clip, CLASSES, n_ctx=4, ctx_init="a photo of a", precision="fp32",
                                    weight_bits=bits, act_bits=args.act_bits)
            model.calibrate(calib, "mse")
            model.eval()
            paths[bits] = os.path.join(tmp, f"p4q_w{bits}.safetensors")
            info = export_p4q(model, paths[bits])
            figures[f"p4q_file_ratio_w{bits}"] = info["file_bytes"] / fp32_bytes
            print(f"P4Q W{bits}A{args.act_bits} export: {info['file_bytes'] / 2**20:.1f} MiB "
                  f"({figures[f'p4q_file_ratio_w{bits}']:.3f} x fp32)")
            if bits == 8:
                simulated = model
        loaded = load_p4q(paths[8])
    int8 = int8_image_encoder(loaded)

    batch = images(args.batch, args.seed + 2)
    dynamic = int8_image_encoder(loaded, dynamic=True)
    encoders: dict[str, Callable[[Any], Any]] = {"fp32": clip.visual, "int8": int8, "int8_dynamic": dynamic}
    if args.torchao:
        try:
            encoders["torchao"] = torchao_encoder(loaded)
        except ImportError as err:
            print(f"torchao not importable ({err}); skipped")
    times: dict[str, list[float]] = {k: [] for k in encoders}
    with torch.no_grad():
        for enc in encoders.values():  # warm-up (weight packing, allocator)
            enc(batch[:2])
        for _ in range(args.repeats):
            for name, enc in encoders.items():
                times[name] += best_time(lambda enc=enc: enc(batch), 1)
    best = {k: min(v) for k, v in times.items()}
    for name, seconds in best.items():
        print(f"  image encoding {name:8s} {args.batch / seconds:7.2f} images/s (best of {args.repeats})")
    figures["p4q_cpu_speedup_int8"] = best["fp32"] / best["int8"]
    figures["p4q_cpu_speedup_int8_dynamic"] = best["fp32"] / best["int8_dynamic"]
    if "torchao" in best:
        figures["p4q_cpu_speedup_torchao"] = best["fp32"] / best["torchao"]

    agree = {"int8": 0, "int8_dynamic": 0}
    total = 0
    classes_seen: set[int] = set()
    with torch.no_grad():
        text = simulated.text_features().float()
        scale = simulated.logit_scale.exp().float()
        for start in range(0, args.test_images, args.batch):
            x = images(min(args.batch, args.test_images - start), args.seed + 100 + start)
            sim = simulated(x).argmax(-1)
            for name in agree:
                feats = encoders[name](x)
                feats = feats / feats.norm(dim=-1, keepdim=True)
                agree[name] += int((sim == (scale * feats @ text.t()).argmax(-1)).sum())
            total += int(sim.numel())
            classes_seen |= set(sim.tolist())
    figures["p4q_prediction_agreement"] = agree["int8"] / total
    figures["p4q_prediction_agreement_dynamic"] = agree["int8_dynamic"] / total
    print(f"int8 vs simulated predictions: {agree['int8']}/{total} equal (dynamic path: {agree['int8_dynamic']}; "
          f"{len(classes_seen)} distinct classes predicted); int8 activation levels: {kernel_levels()}")
    for key, value in figures.items():
        print(f"{key}: {value:.4g}")
    return figures


if __name__ == "__main__":
    main()
