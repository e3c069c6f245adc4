"""P4Q: CoOp prompts + a low-bit adapter on a post-training-quantized CLIP, distilled from full-precision CLIP.

Config: prompt settings under ``TRAINER.COOP`` (CoOp's learner is reused), the method's under ``TRAINER.P4Q``
(see quantprompt/dassl_plugin/config.py and docs/p4q.md). Checkpoints in ``prompt_learner/`` hold the context, the adapter and
the calibrated activation ranges; the packed ``model.qpt-<epoch>`` holds context and adapter.

``TRAINER.P4Q.ZERO_SHOT True`` is the PTQ baseline: the quantized CLIP with hand-written prompts and no adapter.
Like ZeroshotCLIP, "training" evaluates; it writes only the calibrated activation ranges
(``prompt_learner/calibration.safetensors``), which the evaluation runs of the same model directory load, so a
base-to-new test on the new classes uses the base run's calibration (no new-class image is seen).
"""

from __future__ import annotations

import os.path as osp
from typing import Any, Optional

import torch

from quantprompt.engine.compat import build_transform, compute_accuracy, load_checkpoint

from . import config as tcfg
from .base import (
    PromptTrainer,
    _check_bool,
    _check_choice,
    _check_float,
    _check_int,
    _check_str,
    _fail,
)

P4Q_NODE = "TRAINER.P4Q"
CALIBRATORS = ("minmax", "percentile", "mse")
FP_ENCODERS = ("none", "image", "text")
ACT_RANGES = ("auto", "full", "reduced")
CALIBRATION_FILE = "calibration.safetensors"  # zero-shot PTQ runs: the activation ranges, nothing else


def validate_p4q_cfg(cfg: Any) -> None:
    """Every ``TRAINER.P4Q`` key, checked before data or CLIP are loaded; the error names the key."""
    n = P4Q_NODE
    _check_int(cfg, f"{n}.WEIGHT_BITS", 2, 8)
    _check_int(cfg, f"{n}.ACT_BITS", 2, 8)
    _check_choice(cfg, f"{n}.ACT_RANGE", ACT_RANGES)
    _check_bool(cfg, f"{n}.PER_CHANNEL")
    _check_choice(cfg, f"{n}.CALIBRATOR", CALIBRATORS)
    _check_int(cfg, f"{n}.CALIB_BATCHES", 1)
    _check_choice(cfg, f"{n}.FP_ENCODER", FP_ENCODERS)
    _check_int(cfg, f"{n}.ADAPTER_BITS", 1, 8)
    _check_int(cfg, f"{n}.PROMPT_BITS", 1, 8)
    _check_int(cfg, f"{n}.R", 1)
    _check_float(cfg, f"{n}.ALPHA", 0.0)
    if tcfg.get(cfg, f"{n}.ALPHA") > 1:
        _fail(f"{n}.ALPHA", tcfg.get(cfg, f"{n}.ALPHA"), "is out of range (must be in [0, 1])")
    _check_float(cfg, f"{n}.LAMBDA", 0.0)
    _check_float(cfg, f"{n}.T", 0.0)
    if tcfg.get(cfg, f"{n}.T") <= 0:
        _fail(f"{n}.T", tcfg.get(cfg, f"{n}.T"), "is out of range (must be > 0)")
    _check_bool(cfg, f"{n}.EXPORT")
    _check_bool(cfg, f"{n}.ZERO_SHOT")
    _check_str(cfg, f"{n}.TEACHER")
    teacher = tcfg.get(cfg, f"{n}.TEACHER")
    if teacher and not osp.isfile(teacher):
        _fail(f"{n}.TEACHER", teacher, "is not a file: give a trained full-precision CoOp checkpoint "
                                       "(prompt_learner/model.pth.tar-N) or leave it empty for zero-shot CLIP")


def load_teacher_ctx(path: str) -> torch.Tensor:
    """The context tensor of a CoOp checkpoint (``state_dict['ctx']``), loaded with ``weights_only=True``."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else {}
    for key in ("ctx", "prompt_learner.ctx", "parametrizations.ctx.original"):
        if key in state:
            return state[key].detach().float().cpu()
    raise ValueError(f"{P4Q_NODE}.TEACHER={path!r} holds no CoOp context ('ctx'); found {sorted(state)[:8]}")


class P4Q(PromptTrainer):
    """Trainer of the P4Q model (``quantprompt.prompting.build('p4q', ...)``)."""

    METHOD = "p4q"
    NODE = "COOP"
    MODEL_NAME = "prompt_learner"

    def check_cfg(self, cfg: Any) -> None:
        super().check_cfg(cfg)
        validate_p4q_cfg(cfg)

    @property
    def quant_active(self) -> bool:  # adapter and context always carry QPrompt's quantizer
        return getattr(getattr(self, "model", None), "quant_config", None) is not None

    def model_options(self) -> dict[str, Any]:
        opts = super().model_options()
        n, cfg = P4Q_NODE, self.cfg
        opts.update(
            weight_bits=int(tcfg.get(cfg, f"{n}.WEIGHT_BITS")), act_bits=int(tcfg.get(cfg, f"{n}.ACT_BITS")),
            act_range=str(tcfg.get(cfg, f"{n}.ACT_RANGE")),
            per_channel=bool(tcfg.get(cfg, f"{n}.PER_CHANNEL")), fp_encoder=str(tcfg.get(cfg, f"{n}.FP_ENCODER")),
            adapter_ratio=int(tcfg.get(cfg, f"{n}.R")), adapter_alpha=float(tcfg.get(cfg, f"{n}.ALPHA")),
            adapter_bits=int(tcfg.get(cfg, f"{n}.ADAPTER_BITS")), prompt_bits=int(tcfg.get(cfg, f"{n}.PROMPT_BITS")),
            dataset=str(tcfg.get(cfg, "DATASET.NAME", "")) or None,
            zero_shot=bool(tcfg.get(cfg, f"{n}.ZERO_SHOT")),
        )
        return opts

    def build_prompt_model(self, clip_model: torch.nn.Module, classnames: list[str]) -> torch.nn.Module:
        from quantprompt import prompting

        teacher = str(tcfg.get(self.cfg, f"{P4Q_NODE}.TEACHER"))
        extra = {"teacher_ctx": load_teacher_ctx(teacher)} if teacher else {}
        model = prompting.build(self.METHOD, clip_model, list(classnames), **self.options, **extra)
        model.to(self.device)
        self.calibrate(model)
        return model

    # -- calibration ----------------------------------------------------------------------------------
    def calibration_batches(self) -> list[torch.Tensor]:
        """The first ``CALIB_BATCHES`` x batch-size training images in dataset order, test transform: the
        same images in every run with this seed, so calibration (and eval-only rebuilds) are repeatable."""
        from PIL import Image

        n_batches = int(tcfg.get(self.cfg, f"{P4Q_NODE}.CALIB_BATCHES"))
        size = int(self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
        items = list(self.dm.dataset.train_x)[: n_batches * size]
        tfm = build_transform(self.cfg, is_train=False)
        batches = []
        for start in range(0, len(items), size):
            images = []
            for item in items[start:start + size]:
                with Image.open(item.impath) as im:
                    images.append(tfm(im.convert("RGB")))
            batches.append(torch.stack(images))
        return batches

    def calibrate(self, model: torch.nn.Module) -> None:
        method = str(tcfg.get(self.cfg, f"{P4Q_NODE}.CALIBRATOR"))
        batches = self.calibration_batches()
        ranges = model.calibrate(batches, method)
        print(f"P4Q: PTQ calibrated {len(ranges)} activation quantizers ({method}) on {len(batches)} batches; "
              f"W{model.weight_bits}A{model.act_bits} ({model.act_range} activation range), full-precision "
              f"encoder: {model.fp_encoder}")

    # -- training step --------------------------------------------------------------------------------
    def forward_backward(self, batch: dict) -> dict:
        from quantprompt.p4q import p4q_loss

        image, label = self.parse_batch_train(batch)
        lam = float(tcfg.get(self.cfg, f"{P4Q_NODE}.LAMBDA"))
        temperature = float(tcfg.get(self.cfg, f"{P4Q_NODE}.T"))
        with self.autocast():  # PREC amp; the integer-simulated layers run in fp32 inside (integer_linear)
            output = self.model(image)
            teacher = self.model.teacher_logits(image)
            loss, ce, kd = p4q_loss(output.float(), teacher.float(), label, lam, temperature)
        self.backward_and_step(loss)
        self.after_optimizer_step()
        summary = {"loss": loss.item(), "ce": ce.item(), "kd": kd.item(),
                   "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def after_train(self) -> None:
        if tcfg.get(self.cfg, f"{P4Q_NODE}.EXPORT"):
            self.export(osp.join(self.output_dir, "model.p4q.safetensors"))
        super().after_train()

    def export(self, path: str) -> dict[str, int]:
        """The trained model as a real low-bit file (see docs/p4q.md); returns its size figures."""
        from quantprompt.p4q.export import export_p4q

        info = export_p4q(self.model, path, extra={"clip": str(self.cfg.MODEL.BACKBONE.NAME),
                                                   "dataset": str(self.cfg.DATASET.NAME)})
        print(f"P4Q export saved to {path} ({info['file_bytes']} bytes, "
              f"{info['file_bytes'] / info['fp32_clip_bytes']:.3f} x the fp32 CLIP)")
        return info

    def qpt_metadata(self) -> dict[str, Any]:
        meta = super().qpt_metadata()
        meta["bits"] = self.options.get("adapter_bits")
        return meta

    # -- zero-shot PTQ (TRAINER.P4Q.ZERO_SHOT): nothing to learn ------------------------------------------
    @property
    def zero_shot(self) -> bool:
        return bool(tcfg.get(self.cfg, f"{P4Q_NODE}.ZERO_SHOT"))

    def train(self) -> None:  # type: ignore[override]
        if not self.zero_shot:
            super().train()
            return
        print("P4Q zero-shot PTQ: the quantized CLIP with hand-written prompts has nothing to train: evaluating")
        path = self.save_calibration(self.output_dir)
        print(f"PTQ calibration saved to {path}")
        if tcfg.get(self.cfg, f"{P4Q_NODE}.EXPORT"):
            self.export(osp.join(self.output_dir, "model.p4q.safetensors"))
        print("Storage of learned parameters (none: zero-shot PTQ): 0 bytes payload")
        self.test()

    def save_calibration(self, directory: str) -> str:
        """The activation ranges (the only state of the zero-shot PTQ model) as safetensors, atomically."""
        from quantprompt.safetensors_io import save_atomic

        path = osp.join(directory, self.MODEL_NAME, CALIBRATION_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.prompt_learner.act_ranges.state_dict().items()}
        save_atomic(state, path, metadata={"format": "quantprompt-p4q-calibration"})
        return path

    def load_calibration(self, directory: str) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = osp.join(directory, self.MODEL_NAME, CALIBRATION_FILE)
        if not osp.isfile(path):
            raise FileNotFoundError(f'PTQ calibration not found at "{path}": run the zero-shot P4Q training run '
                                    "(TRAINER.P4Q.ZERO_SHOT True) into --model-dir first")
        try:
            state = load_file(path)
            self.model.prompt_learner.act_ranges.load_state_dict(state, strict=True)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise ValueError(f"{path}: not the calibration of this model ({type(err).__name__}: "
                             f"{str(err)[:200]})") from None
        print(f'Loading the PTQ calibration from "{path}"')

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        if self.zero_shot:
            if directory:
                self.load_calibration(directory)
            else:
                print("Note: zero-shot PTQ without --model-dir: calibrated on this run's training images")
        else:
            super().load_model(directory, epoch)
        self.model.invalidate_cache()

