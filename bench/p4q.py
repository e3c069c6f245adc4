"""P4Q made real: file size of the exported low-bit model and int8 CPU speed, against fp32 CLIP, same run; and
whether the int8 model predicts what the simulated-quantization model predicts.

ViT-B/32 shapes with random weights for size and speed (they do not depend on the values). Steps:

1. fp32 CLIP's state dict as safetensors: the size baseline (whole model, both encoders).
2. P4Q at W8A8 and W4A8 (calibrated on a few random images), exported with ``quantprompt.p4q.export``:
   ``p4q_file_ratio_w8`` / ``_w4`` = export file bytes / fp32 file bytes.
3. Image-encoding time, ``--threads`` threads each (default 1 vs 1; the box may be shared, so runs are
   interleaved and the best of ``--repeats`` counts): fp32 CLIP's image encoder against the exported 8-bit
   model loaded back and run on FBGEMM int8 GEMMs with the calibrated activation ranges
   (``p4q_cpu_speedup_int8``, the backend ``quantprompt classify --int8`` uses; in batches of ``--batch``
   images, and ``_batch1`` one image per call), on PyTorch's dynamic int8 Linear
   (``p4q_cpu_speedup_int8_dynamic``) and, with ``--torchao``, torchao's int8-dynamic-activation int8-weight
   path on the same weights (``p4q_cpu_speedup_torchao``). On an AVX2 CPU without VNNI the int8 GEMM runs
   at a fixed ~43-46 GMAC/s per core whatever the batch, while fp32 GEMMs get faster with larger batches, so
   the speed-up is largest one image at a time (docs/p4q.md). ``p4q_gemm_speedup_int8`` (``_batch1``) is
   the ceiling of the encoders' ratio: one block's four GEMMs (attention in/out projection, MLP in/out) at
   the same rows, fp32 ``F.linear`` against the int8 kernel the encoder calls, with their rates in GMAC/s
   (``p4q_gemm_rate_*_gmacs``); those GEMMs are ~90% of either encoder's time.
4. ``p4q_prediction_agreement``: share of ``--test-images`` images whose class under the exported int8 model
   (loaded back, FBGEMM) equals the simulated-quantization model's (the calibrated P4Q model, fake
   quantization), on the random-weight ViT-B/32. The simulated model uses the activation grid this machine's
   int8 kernel computes exactly (``act_range="auto"``: 127 levels on x86 without VNNI) and the kernel's own
   integer arithmetic, so the two are equal bit for bit: ``p4q_max_feature_diff`` is the largest absolute
   difference of their image features. ``_dynamic``: the same agreement for the dynamic path.
5. ``p4q_prediction_agreement_world``: the same on a *trained* CLIP with real class margins -- the demo world's
   CLIP (``quantprompt.world.ensure_clip``, pretrained into ``--world-cache`` on first use, a few minutes on
   the CPU) on WorldShapes' test images (``quantprompt.world.write_dataset``), P4Q W8A8 calibrated on its first
   training images, exported and loaded back. ``--no-world`` skips it.

    python bench/p4q.py                  # ~5 min on one free core (plus the world CLIP's pretraining once)
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


class BlockGemms:
    """The four GEMMs of one transformer block (attention in/out projections, MLP in/out) at ``rows`` tokens:
    fp32 ``F.linear`` (the addmm CLIP's encoder calls) against the int8 kernel our encoder calls (input
    quantization included). They bound the encoders' ratio (~90% of either encoder's time), so they are timed
    in the same interleaved rounds as the encoders (:meth:`round`), best of the rounds."""

    def __init__(self, clip: Any, int8: Any, rows: int) -> None:
        import torch
        import torch.nn.functional as F

        fp_block = clip.visual.transformer.resblocks[0]
        q_block = int8.visual.transformer.resblocks[0]
        fp = [(fp_block.attn.in_proj_weight, fp_block.attn.in_proj_bias),
              (fp_block.attn.out_proj.weight, fp_block.attn.out_proj.bias),
              (fp_block.mlp.c_fc.weight, fp_block.mlp.c_fc.bias), (fp_block.mlp.c_proj.weight, fp_block.mlp.c_proj.bias)]
        q = [q_block.attn.in_proj, q_block.attn.out_proj, q_block.c_fc, q_block.c_proj]
        g = torch.Generator().manual_seed(0)
        inputs = [torch.rand(rows, w.shape[1], generator=g) for w, _ in fp]  # within every calibrated range
        kernel = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
        self.calls = {
            "fp32": [lambda x=x, w=w, b=b: F.linear(x, w, b) for (w, b), x in zip(fp, inputs)],
            "int8": [lambda x=x, m=m: kernel(x, m.x_scale, m.x_zero_point, m.packed) for m, x in zip(q, inputs)],
        }
        self.best = {k: [float("inf")] * len(fp) for k in self.calls}
        self.gmac = sum(rows * w.shape[0] * w.shape[1] for w, _ in fp) / 1e9
        for fns in self.calls.values():  # warm-up
            for fn in fns:
                fn()

    def round(self) -> None:
        for i in range(len(self.best["fp32"])):
            for name, fns in self.calls.items():
                self.best[name][i] = min(self.best[name][i], best_time(fns[i], 1)[0])

    def seconds(self, name: str) -> float:
        return sum(self.best[name])


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


def world_images(paths: list[Path]) -> Any:
    """PNG files -> a normalised batch as the demo configs feed the world CLIP (32x32, CLIP's mean/std)."""
    import numpy as np
    import torch
    from PIL import Image

    from quantprompt.world.pretrain import CLIP_MEAN, CLIP_STD

    arrays = []
    for path in paths:
        with Image.open(path) as im:
            arrays.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean = torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).reshape(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def world_agreement(cache_dir: str | None, test_per_class: int, batch: int) -> dict[str, float]:
    """Exported int8 P4Q vs the simulated model on the trained world CLIP and WorldShapes' test images."""
    import json

    import torch

    from quantprompt import clip as qclip
    from quantprompt import prompting
    from quantprompt.p4q.backend import int8_image_encoder
    from quantprompt.p4q.export import export_p4q, load_p4q
    from quantprompt.world.cache import ensure_clip
    from quantprompt.world.datasets import write_dataset

    cached = ensure_clip("default", cache_dir, progress=False)
    clip, _ = qclip.load(str(cached.path), precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(tmp, "WorldShapes", train_per_class=2, val_per_class=1, test_per_class=test_per_class)
        split = json.loads((data.dataset_dir / "split_zhou_WorldShapes.json").read_text())
        images_dir = data.dataset_dir / "images"
        train = [images_dir / item[0] for item in split["train"]][: 4 * 32]  # the demo's CALIB_BATCHES x batch
        test = [(images_dir / item[0], int(item[1])) for item in split["test"]]
        calib = [world_images(train[i:i + 32]) for i in range(0, len(train), 32)]
        model = prompting.build("p4q", clip, data.classnames, n_ctx=4, ctx_init="a photo of a", precision="fp32",
                                weight_bits=8, act_bits=8, dataset="WorldShapes")
        model.calibrate(calib, "mse")
        model.eval()
        path = os.path.join(tmp, "world_w8.p4q.safetensors")
        export_p4q(model, path)
        int8 = int8_image_encoder(load_p4q(path))
        same = correct_sim = correct_fp = total = 0
        max_diff = 0.0
        with torch.no_grad():
            text = model.text_features().float()
            scale = model.logit_scale.exp().float()
            for start in range(0, len(test), batch):
                chunk = test[start:start + batch]
                x = world_images([p for p, _ in chunk])
                labels = torch.tensor([label for _, label in chunk])
                sim_feats = model.encode_image(x)
                feats = int8(x)
                max_diff = max(max_diff, float((feats - sim_feats).abs().max()))
                sim = model(x).argmax(-1)
                got = (scale * (feats / feats.norm(dim=-1, keepdim=True)) @ text.t()).argmax(-1)
                same += int((sim == got).sum())
                correct_sim += int((sim == labels).sum())
                correct_fp += int((model.teacher_logits(x).argmax(-1) == labels).sum())
                total += len(chunk)
    print(f"world CLIP ({cached.path.name}, {len(data.classnames)} WorldShapes classes, {total} test images): "
          f"int8 = simulated on {same}/{total}; accuracy fp32 zero-shot {100 * correct_fp / total:.1f}%, "
          f"simulated W8A8 P4Q (initial prompt) {100 * correct_sim / total:.1f}%")
    return {"p4q_prediction_agreement_world": same / total, "p4q_max_feature_diff_world": max_diff}


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
    parser.add_argument("--act-bits", type=int, default=8, help="activation bits of the simulated model")
    parser.add_argument("--no-world", action="store_true", help="skip the agreement on the trained world CLIP")
    parser.add_argument("--world-cache", default=None,
                        help="where the world CLIP is cached (default: $QUANTPROMPT_CACHE or ~/.cache/quantprompt)")
    parser.add_argument("--world-test-per-class", type=int, default=8,
                        help="WorldShapes test images per class (64 classes)")
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
    single: dict[str, list[float]] = {k: [] for k in encoders}  # one image per call: latency-bound serving
    tokens = (VIT_B32["image_resolution"] // VIT_B32["vision_patch_size"]) ** 2 + 1
    with torch.no_grad():
        gemms = {"": BlockGemms(clip, int8, args.batch * tokens), "_batch1": BlockGemms(clip, int8, tokens)}
        for enc in encoders.values():  # warm-up (weight packing, allocator)
            enc(batch[:2])
        for _ in range(args.repeats):
            for name, enc in encoders.items():
                times[name] += best_time(lambda enc=enc: enc(batch), 1)
                single[name] += best_time(lambda enc=enc: enc(batch[:1]), 3)
            for gemm in gemms.values():
                gemm.round()
    best = {k: min(v) for k, v in times.items()}
    best1 = {k: min(v) for k, v in single.items()}
    for name, seconds in best.items():
        print(f"  image encoding {name:12s} {args.batch / seconds:7.2f} images/s in batches of {args.batch}, "
              f"{1 / best1[name]:7.2f} images/s one at a time (best of {args.repeats} / {3 * args.repeats})")
    figures["p4q_cpu_speedup_int8"] = best["fp32"] / best["int8"]
    figures["p4q_cpu_speedup_int8_batch1"] = best1["fp32"] / best1["int8"]
    for label, gemm in gemms.items():
        rows, encoder_seconds = (args.batch * tokens, best["fp32"]) if label == "" else (tokens, best1["fp32"])
        share = VIT_B32["vision_layers"] * gemm.seconds("fp32") / encoder_seconds
        print(f"  one block's 4 GEMMs at {rows} rows: fp32 {gemm.gmac / gemm.seconds('fp32'):.1f} GMAC/s, int8 "
              f"{gemm.gmac / gemm.seconds('int8'):.1f} GMAC/s, x{gemm.seconds('fp32') / gemm.seconds('int8'):.2f}; "
              f"x{VIT_B32['vision_layers']} blocks ~ {100 * share:.0f}% of the fp32 encoder's best time (timed apart)")
        figures[f"p4q_gemm_speedup_int8{label}"] = gemm.seconds("fp32") / gemm.seconds("int8")
        figures[f"p4q_gemm_rate_int8_gmacs{label}"] = gemm.gmac / gemm.seconds("int8")
        figures[f"p4q_gemm_rate_fp32_gmacs{label}"] = gemm.gmac / gemm.seconds("fp32")
    figures["p4q_cpu_speedup_int8_dynamic"] = best["fp32"] / best["int8_dynamic"]
    if "torchao" in best:
        figures["p4q_cpu_speedup_torchao"] = best["fp32"] / best["torchao"]

    agree = {"int8": 0, "int8_dynamic": 0}
    total = 0
    max_diff = 0.0
    classes_seen: set[int] = set()
    with torch.no_grad():
        text = simulated.text_features().float()
        scale = simulated.logit_scale.exp().float()
        for start in range(0, args.test_images, args.batch):
            x = images(min(args.batch, args.test_images - start), args.seed + 100 + start)
            sim = simulated(x).argmax(-1)
            max_diff = max(max_diff, float((encoders["int8"](x) - simulated.encode_image(x)).abs().max()))
            for name in agree:
                feats = encoders[name](x)
                feats = feats / feats.norm(dim=-1, keepdim=True)
                agree[name] += int((sim == (scale * feats @ text.t()).argmax(-1)).sum())
            total += int(sim.numel())
            classes_seen |= set(sim.tolist())
    figures["p4q_prediction_agreement"] = agree["int8"] / total
    figures["p4q_prediction_agreement_dynamic"] = agree["int8_dynamic"] / total
    figures["p4q_max_feature_diff"] = max_diff
    print(f"int8 vs simulated predictions: {agree['int8']}/{total} equal (dynamic path: {agree['int8_dynamic']}; "
          f"{len(classes_seen)} distinct classes predicted); activation grid {simulated.act_range} "
          f"({next(iter(simulated.act_quants.values())).levels} levels; the int8 kernel here computes "
          f"{kernel_levels()} exactly)")
    if not args.no_world:
        figures.update(world_agreement(args.world_cache, args.world_test_per_class, args.batch))
    for key, value in figures.items():
        print(f"{key}: {value:.4g}")
    return figures


if __name__ == "__main__":
    main()
