"""Training-step and evaluation time of the prompt models, text encoder cut at the last EOT vs all 77 positions.

Every text encoder computes only the first max(EOT)+1 token positions of its prompts (see docs/performance.md);
the baseline is the full 77-position pass (``text_encoder.truncate = False``), measured in the same run on the
same model, interleaved. For CoCoOp the baseline is also the reference's one image per text-encoder call
(``text_batch_size = n_cls``) and ours the default bound of prompts per call.

* train step = forward, cross-entropy, backward, SGD step and ``quant.step`` (Q-models), as a trainer does;
* eval pass = the text features (once; CoCoOp: per image) and the logits of ``--eval-images`` images.

CLIP is random, with ViT-B/16's shapes (text: 512 wide, 8 heads; vision: 768 wide, 12 layers, patch 16) but
small images (``--image-size 32``: 4 patches) so the vision tower costs little on a CPU, and -- on CPU by
default -- only ``--text-layers 2`` of the 12 text layers: every layer scales alike with the positions, so the
speed-up per layer is the same, and the fixed costs (images, loss, optimizer) weigh *more* with fewer layers,
which makes the printed ratios conservative. ``--text-layers 12`` times the real depth.

    python bench/train.py                                   # CPU, ~10 min on 2 cores
    python bench/train.py --device cuda --text-layers 12 --image-size 224 --repeats 5

Ends with one ``name: value`` line per figure: speed-ups (full-length time / ours) per model and class count,
``train_step_overhead_qcoop_vs_coop`` (percent a QCoOp step takes over a CoOp step from the same init, both
cut, best of ``--overhead-repeats`` alternated steps: the quantization hook's cost in a real step),
``train_step_overhead_wrapped_vs_host`` (the same for a host trainer's plain step quantized by
``qp.quantize_trainers``' code path: ``quantize_`` plus the CAC hook on ``optimizer.step``), and on CUDA
the peak memory of one training step on each path: ``train_peak_mem_mib_<model>_<classes>_{full,truncated}``
(MiB the step allocates above what was resident before it: activations, gradients, workspace) and
``train_peak_mem_ratio_<model>_<classes>`` (truncated / full). ``--figure-suffix _cuda`` (bench/gpu.sh) names
the speed-ups ``train_step_speedup_coop_1000_cuda`` and so on.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (model, classes) timed by default; a full-length step at 1,000 classes is the expensive part on a CPU
TRAIN_RUNS = "coop:100,qcoop:100,maple:100,qmaple:100,cocoop:100,coop:1000,qcoop:1000"
EVAL_RUNS = "zsclip:100,coop:100,maple:100,cocoop:100,zsclip:1000,coop:1000,maple:1000,cocoop:1000"
WORDS = ("red", "striped", "sea", "lion", "mountain", "crested", "wood", "warbler", "golden", "retriever",
         "spiny", "lobster", "electric", "guitar", "tree", "frog", "grand", "piano", "snow", "leopard")


def classnames(n: int, seed: int) -> list[str]:
    """n distinct names of 1-4 words (ImageNet's names are mostly 1-3 words)."""
    rng = random.Random(seed)
    names = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.choice((1, 1, 2, 2, 2, 3, 3, 4)))
        names.append(" ".join(words) + f" {i}")
    return names


def vitb16_clip(text_layers: int, image_size: int, seed: int) -> Any:
    import torch

    from quantprompt.clip._openai import openai_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = openai_clip().model.CLIP(512, image_size, 12, 768, 16, 77, 49408, 512, 8, text_layers)
        model.logit_scale.data.fill_(math.log(100.0))
    return model.eval()


def options(name: str, text_layers: int) -> dict[str, Any]:
    """CoOp's ImageNet setting (16 random context vectors), CoCoOp's and MaPLe's defaults, 1 / 4 bits."""
    depth = min(9, text_layers)
    table = {
        "zsclip": {},
        "coop": {"n_ctx": 16}, "qcoop": {"n_ctx": 16, "bits": 1},
        "cocoop": {"n_ctx": 4, "ctx_init": "a photo of a"},
        "qcocoop": {"n_ctx": 4, "ctx_init": "a photo of a", "bits": 4},
        "maple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": depth},
        "qmaple": {"n_ctx": 2, "ctx_init": "a photo of a", "prompt_depth": depth, "bits": 4},
    }
    return table[name]


def parse_runs(text: str, parser: argparse.ArgumentParser, allowed: tuple[str, ...]) -> list[tuple[str, int]]:
    runs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, n = item.partition(":")
        if name not in allowed or not n.isdigit() or int(n) < 1:
            parser.error(f"bad run {item!r}: use model:classes with model in {', '.join(allowed)}")
        runs.append((name, int(n)))
    return runs


def timed(fn: Callable[[], Any], device: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn(); CPU time is what a shared machine distorts least."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def set_path(model: Any, full: bool) -> None:
    """full=True: the references' computation (77 positions; CoCoOp one image per text-encoder call)."""
    model.text_encoder.truncate = not full
    if hasattr(model, "text_batch_size"):
        model.text_batch_size = model.prompt_learner.n_cls if full else model.default_text_batch_size


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "amp"],
                        help="fp16 / amp need CUDA (amp: autocast fp16 over fp32 weights, as TRAINER.*.PREC)")
    parser.add_argument("--text-layers", type=int, default=None, help="default: 2 on CPU, 12 on CUDA")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="images per CoOp / MaPLe training step")
    parser.add_argument("--cocoop-batch-size", type=int, default=4, help="images per CoCoOp training step")
    parser.add_argument("--eval-images", type=int, default=8, help="images of an eval pass (CoCoOp: 2 on CPU)")
    parser.add_argument("--train", default=TRAIN_RUNS, help="model:classes list of training steps to time")
    parser.add_argument("--eval", default=EVAL_RUNS, help="model:classes list of evaluation passes to time")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings per path (best is kept); default 3, and 1 for CPU runs at >= 1,000 classes")
    parser.add_argument("--overhead-classes", type=int, default=100,
                        help="classes of the CoOp vs QCoOp steps that time the quantization hook")
    parser.add_argument("--overhead-repeats", type=int, default=5,
                        help="alternated CoOp / QCoOp steps each for the hook's overhead (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="what the figures compare: wall time, or this process's CPU time (steadier on a "
                             "machine shared with other jobs; CPU runs only). Both are printed per line.")
    parser.add_argument("--figure-suffix", default="",
                        help="appended to every speed-up / overhead figure name (bench/gpu.sh: _cuda)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    suffix = args.figure_suffix
    models = ("zsclip", "coop", "qcoop", "cocoop", "qcocoop", "maple", "qmaple")
    train_runs = parse_runs(args.train, parser, tuple(m for m in models if m != "zsclip"))
    eval_runs = parse_runs(args.eval, parser, models)
    cpu = not args.device.startswith("cuda")
    if args.clock == "cpu" and not cpu:
        parser.error("--clock cpu measures CPU runs only (GPU work is not CPU time)")
    if cpu and args.precision != "fp32":
        parser.error(f"--precision {args.precision} needs --device cuda")
    text_layers = args.text_layers or (2 if cpu else 12)
    if not 1 <= text_layers <= 12:
        parser.error("--text-layers must be in 1..12")

    import torch
    import torch.nn.functional as F

    from quantprompt import prompting, quant

    if args.threads:
        torch.set_num_threads(args.threads)
    clip_model = vitb16_clip(text_layers, args.image_size, args.seed).to(args.device)
    precision = "fp16" if args.precision == "fp16" else "fp32"
    autocast = args.precision == "amp"
    gen = torch.Generator().manual_seed(args.seed)

    def images(n: int) -> Any:
        return torch.randn(n, 3, args.image_size, args.image_size, generator=gen).to(args.device)

    def repeats(n_cls: int) -> int:
        return args.repeats or (1 if cpu and n_cls >= 1000 else 3)

    def build(name: str, n_cls: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = prompting.build(name, clip_model, classnames(n_cls, args.seed), precision=precision,
                                    **options(name, text_layers))
        model.default_text_batch_size = getattr(model, "text_batch_size", None)
        return model

    def context() -> Any:
        return torch.autocast("cuda", dtype=torch.float16) if autocast else torch.autocast("cpu", enabled=False)

    print(f"CLIP: random, ViT-B/16 shapes, {text_layers} of 12 text layers, {args.image_size} px images; "
          f"{args.device}, {args.precision}, {torch.get_num_threads()} threads. Each figure = best of the "
          "repeats; full-length and truncated timings interleaved. On a shared machine ratios, not times, count.",
          flush=True)
    figures: dict[str, float] = {}
    best: dict[tuple, tuple[float, float]] = {}  # (kind, model, classes, full) -> best (wall, cpu) seconds
    clock = 0 if args.clock == "wall" else 1
    began = time.perf_counter()

    def measure(model: Any, key: tuple, fn: Callable[[], Any], n: int) -> None:
        for _ in range(n):
            for full in (True, False):
                set_path(model, full)
                wall, cpu_s = timed(fn, args.device)
                old = best.get((*key, full), (math.inf, math.inf))
                best[(*key, full)] = (min(old[0], wall), min(old[1], cpu_s))
        set_path(model, False)

    def report(label: str, key: tuple, length: int) -> float:
        (full_w, full_c), (cut_w, cut_c) = best[(*key, True)], best[(*key, False)]
        print(f"{label}: 77 positions {full_w:7.2f} s (CPU {full_c:7.2f} s), {length} positions {cut_w:7.2f} s "
              f"(CPU {cut_c:7.2f} s): speed-up {full_w / cut_w:5.2f}x wall, {full_c / cut_c:5.2f}x CPU",
              flush=True)
        return (full_w, full_c)[clock] / (cut_w, cut_c)[clock]

    def training_step(model: Any, n_cls: int, batch: int) -> Callable[[], None]:
        """One trainer step on fixed images: forward, loss, backward, SGD, quant.step (Q-models)."""
        model.train()
        optim = torch.optim.SGD(model.trainable_parameters(), lr=0.002, momentum=0.9)
        x, y = images(batch), torch.randint(0, n_cls, (batch,), generator=gen).to(args.device)

        def step() -> None:
            with context():
                loss = F.cross_entropy(model(x), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if model.quant_config is not None:
                quant.step(model)

        return step

    def wrapped_host_step(model: Any, n_cls: int, batch: int) -> Callable[[], None]:
        """A host trainer's own step (forward, loss, backward, optimizer.step: nothing of ours in it) after
        :class:`QuantizedHost` quantized what its optimizer holds and hooked CAC into ``optimizer.step``."""
        from quantprompt.dassl_plugin.config import extend_cfg
        from quantprompt.dassl_plugin.wrap import QuantizedHost
        from quantprompt.engine.config import get_cfg_default

        model.train()
        optim = torch.optim.SGD(model.trainable_parameters(), lr=0.002, momentum=0.9)
        cfg = extend_cfg(get_cfg_default())
        cfg.SEED = args.seed

        class Host(QuantizedHost):  # the trainer attributes qprompt_attach reads, without data or CLIP loading
            def __init__(self) -> None:
                self.model, self.optim, self._optims, self.cfg = model, optim, {"prompt_learner": optim}, cfg

        Host().qprompt_attach()
        x, y = images(batch), torch.randint(0, n_cls, (batch,), generator=gen).to(args.device)

        def step() -> None:
            with context():
                loss = F.cross_entropy(model(x), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()  # the CAC check runs in the hook

        return step

    def peak_memory(model: Any, step: Callable[[], None]) -> dict[bool, tuple[int, int]]:
        """CUDA only: {full: (peak bytes above what was allocated before the step, peak bytes in all)} of one
        step on each path; the first number is the step's own memory (activations, gradients, workspace)."""
        out = {}
        for full in (True, False):
            set_path(model, full)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            resident = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            out[full] = (peak - resident, peak)
        set_path(model, False)
        return out

    for name, n_cls in train_runs:
        model = build(name, n_cls)
        batch = args.cocoop_batch_size if name.endswith("cocoop") else args.batch_size
        step = training_step(model, n_cls, batch)
        length = model.text_encoder.length(model.prompt_learner.tokenized_prompts)
        measure(model, ("train", name, n_cls), step, repeats(n_cls))
        figures[f"train_step_speedup_{name}_{n_cls}{suffix}"] = report(
            f"train step {name:>7} {n_cls:>5} classes, {batch} images", ("train", name, n_cls), length)
        if not cpu:
            mem = peak_memory(model, step)
            mib = {full: (a / 2**20, b / 2**20) for full, (a, b) in mem.items()}
            print(f"peak memory of a train step {name:>7} {n_cls:>5} classes: 77 positions {mib[True][0]:.0f} MiB "
                  f"above resident ({mib[True][1]:.0f} MiB in all), {length} positions {mib[False][0]:.0f} MiB "
                  f"({mib[False][1]:.0f} MiB in all)", flush=True)
            figures[f"train_peak_mem_mib_{name}_{n_cls}_full"] = mib[True][0]
            figures[f"train_peak_mem_mib_{name}_{n_cls}_truncated"] = mib[False][0]
            figures[f"train_peak_mem_ratio_{name}_{n_cls}"] = mem[False][0] / max(mem[True][0], 1)
        del model, step

    for name, n_cls in eval_runs:
        model = build(name, n_cls).eval()
        n_img = min(args.eval_images, 2) if name.endswith("cocoop") and cpu else args.eval_images
        x = images(n_img)

        def evaluate(model=model, x=x) -> None:
            model.invalidate_cache()
            with torch.no_grad(), context():
                model(x)

        tokens = model.prompt_learner.tokenized_prompts
        length = model.text_encoder.length(tokens.reshape(-1, tokens.shape[-1]))
        measure(model, ("eval", name, n_cls), evaluate, repeats(n_cls))
        figures[f"eval_speedup_{name}_{n_cls}{suffix}"] = report(
            f"eval pass  {name:>7} {n_cls:>5} classes, {n_img} images", ("eval", name, n_cls), length)
        del model

    if args.overhead_repeats:  # coop and qcoop steps alternated, from the same init, both cut
        n_cls = args.overhead_classes
        steps = {}
        for name in ("coop", "qcoop", "wrapped"):
            torch.manual_seed(args.seed)
            gen.manual_seed(args.seed)
            if name == "wrapped":  # a host's CoOp step, quantized by qp.quantize_trainers' own code path
                steps[name] = wrapped_host_step(build("coop", n_cls), n_cls, args.batch_size)
            else:
                steps[name] = training_step(build(name, n_cls), n_cls, args.batch_size)
        low = {name: (math.inf, math.inf) for name in steps}
        for _ in range(args.overhead_repeats):
            for name, step in steps.items():
                wall, cpu_s = timed(step, args.device)
                low[name] = (min(low[name][0], wall), min(low[name][1], cpu_s))
        ratio = [low["qcoop"][i] / low["coop"][i] for i in (0, 1)]
        figures[f"train_step_overhead_qcoop_vs_coop{suffix}"] = 100.0 * (ratio[clock] - 1.0)
        print(f"quantization hook, {n_cls} classes, {args.batch_size} images, best of {args.overhead_repeats} "
              f"alternated steps: CoOp {low['coop'][0]:.3f} s (CPU {low['coop'][1]:.3f} s), QCoOp "
              f"{low['qcoop'][0]:.3f} s (CPU {low['qcoop'][1]:.3f} s): {100 * (ratio[0] - 1):+.1f} % wall, "
              f"{100 * (ratio[1] - 1):+.1f} % CPU", flush=True)
        ratio = [low["wrapped"][i] / low["coop"][i] for i in (0, 1)]
        figures[f"train_step_overhead_wrapped_vs_host{suffix}"] = 100.0 * (ratio[clock] - 1.0)
        print(f"wrapped host trainer (qp.quantize_trainers: quantize_ + optimizer step hook), same steps: host "
              f"{low['coop'][0]:.3f} s, wrapped {low['wrapped'][0]:.3f} s (CPU {low['wrapped'][1]:.3f} s): "
              f"{100 * (ratio[0] - 1):+.1f} % wall, {100 * (ratio[1] - 1):+.1f} % CPU", flush=True)
        del steps
    print(f"total bench time {time.perf_counter() - began:.0f} s; figures compare {args.clock} time")
    for key, value in figures.items():
        print(f"{key}: {value:.3f}")
    return figures


if __name__ == "__main__":
    main()
