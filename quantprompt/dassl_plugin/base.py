"""The one Dassl trainer behind every prompt method: cfg -> options, build, train step, checkpoints, .qpt.

Each method (``CoOp``, ``QCoOp``, ``MaPLe`` ...) is a thin subclass that names its prompting model, its config
node and its checkpoint folder. Everything else lives here so that all methods share one tested code path:

* ``check_cfg`` validates every key the method reads at start-up and names the key in the error;
* ``build_model`` loads CLIP through :func:`quantprompt.clip.load` (any spec: OpenAI name, local file, Hugging
  Face folder, ``tiny-vit``) and builds the model with :func:`quantprompt.prompting.build`;
* ``forward_backward`` follows CoOp's PREC (fp16 / fp32 / amp with a GradScaler) and calls ``quant.step`` after
  every optimizer step, logging the constrained-adaptive-clustering (CAC) counters;
* checkpoints keep CoOp's names and folders; quantized methods also write the packed prompt
  ``<model-name>/model.qpt-<epoch>`` (and ``model-best.qpt``), and ``load_model`` reads either;
* optional per-epoch evaluation (``TEST.PER_EPOCH``) and prompt snapshots (``TRAIN.SAVE_PROMPT_SNAPSHOTS``).

Dassl names come only from :mod:`quantprompt.engine.compat`, so the same classes run under real Dassl or
under our engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import os.path as osp
import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from quantprompt.engine.compat import (
    TRAINER_REGISTRY,
    DataManager,
    SafeCheckpointMixin,
    TrainerX,
    build_optimizer,
    compute_accuracy,
    load_checkpoint,
    load_pretrained_weights,
    set_random_seed,
)
from quantprompt.engine.optim import build_lr_scheduler

from . import config as tcfg

__all__ = ["PromptTrainer", "quant_options_from_cfg", "register", "skipped_baselines", "validate_cfg",
           "validate_quant_cfg", "warn_skipped"]

PRECISIONS = ("fp16", "fp32", "amp")
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
QUANT_MODES = ("qat", "ptq", "off")
KMEANS_BACKENDS = ("torch", "sklearn")
SUBSAMPLE = ("all", "base", "new")
RECLUSTER = ("cac", "always", "never")

# ----------------------------------------------------------------------------------------------------------
# registration: our baselines give way to a CoOp/MaPLe checkout's own classes, and say so once
# ----------------------------------------------------------------------------------------------------------
_SKIPPED: list[str] = []
_WARNED = [False]


def warn_skipped(stacklevel: int = 2) -> None:
    """One warning per process listing the baselines that stayed unregistered (see :func:`register`)."""
    if _SKIPPED and not _WARNED[0]:
        _WARNED[0] = True
        names = ", ".join(_SKIPPED)
        warnings.warn(
            f"quantprompt trainers: {names} already registered in TRAINER_REGISTRY by another package; "
            f"kept those, ours stay unregistered (the Q-trainers are registered as usual).",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def _same_source(a: Any, b: type) -> bool:
    """The same class from the same file, imported twice under two package paths."""
    try:
        return a.__qualname__ == b.__qualname__ and osp.samefile(inspect.getfile(a), inspect.getfile(b))
    except (TypeError, OSError, AttributeError):
        return False


def register(cls: type, baseline: bool) -> bool:
    """Register ``cls`` in ``TRAINER_REGISTRY`` under its class name; return whether ours is the entry now.

    A baseline (CoOp, CoCoOp, MaPLe, ZeroshotCLIP) whose name is already taken keeps the existing entry:
    the pipeline it was imported into (a CoOp or MaPLe checkout) registered its own, and replacing it would
    change that pipeline's results; :func:`warn_skipped` then names it. Our own names (QCoOp ...) taken by a
    different class are an error: two plugins would silently disagree about what ``--trainer QCoOp`` means.
    """
    name = cls.__name__
    if name in TRAINER_REGISTRY.registered_names():
        existing = TRAINER_REGISTRY.get(name)
        if existing is cls or _same_source(existing, cls):
            return True  # the same module imported twice (e.g. under two package paths)
        if not baseline:
            raise KeyError(
                f"trainer name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}; "
                f"remove that plugin or rename one of the two classes"
            )
        if name not in _SKIPPED:
            _SKIPPED.append(name)
        return False
    TRAINER_REGISTRY.register(cls)
    return True


def skipped_baselines() -> list[str]:
    """Names of our baselines that stayed unregistered because the pipeline already had its own."""
    return list(_SKIPPED)


# ----------------------------------------------------------------------------------------------------------
# config validation
# ----------------------------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fail(key: str, value: Any, what: str) -> None:
    raise ValueError(f"{key}={value!r} {what}")


def _check_choice(cfg: Any, key: str, choices: tuple) -> None:
    v = tcfg.get(cfg, key)
    if v not in choices:
        _fail(key, v, f"is not one of {', '.join(choices)}")


def _check_bool(cfg: Any, key: str) -> None:
    v = tcfg.get(cfg, key)
    if not isinstance(v, bool):
        _fail(key, v, "must be True or False")


def _check_int(cfg: Any, key: str, lo: int, hi: Optional[int] = None) -> None:
    v = tcfg.get(cfg, key)
    if not _is_int(v):
        _fail(key, v, "must be an integer")
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        _fail(key, v, f"is out of range {rng}")


def _check_float(cfg: Any, key: str, lo: float) -> None:
    v = tcfg.get(cfg, key)
    if not _is_num(v) or v != v:
        _fail(key, v, "must be a number")
    if v < lo:
        _fail(key, v, f"is out of range (must be >= {lo})")


def _check_str(cfg: Any, key: str) -> None:
    v = tcfg.get(cfg, key)
    if not isinstance(v, str):
        _fail(key, v, "must be a string")


def validate_cfg(cfg: Any, node: Optional[str], quantized: bool, noise: bool = False) -> None:
    """Check every key a trainer reads; raise ``ValueError`` naming the first bad key.

    Why here and not in the model: a typo in a YAML file should fail before minutes of data loading, with the
    config key the user wrote (``TRAINER.QPROMPT.BITS``) rather than a model argument name.
    """
    spec = tcfg.get(cfg, "MODEL.BACKBONE.NAME", "")
    if not isinstance(spec, str) or not spec.strip():
        _fail("MODEL.BACKBONE.NAME", spec,
              "must name a CLIP model: an OpenAI name (ViT-B/16, RN50 ...), a local file or folder, or tiny-vit")
    _check_choice(cfg, "DATASET.SUBSAMPLE_CLASSES", SUBSAMPLE)
    for key in ("TEST.PER_EPOCH", "TEST.PER_EPOCH_NEW", "TEST.LOAD_QPT", "TRAIN.SAVE_PROMPT_SNAPSHOTS"):
        _check_bool(cfg, key)
    if node is not None:
        base = f"TRAINER.{node}"
        _check_choice(cfg, f"{base}.PREC", PRECISIONS)
        _check_int(cfg, f"{base}.N_CTX", 1)
        _check_str(cfg, f"{base}.CTX_INIT")
        if node == "COOP":
            _check_bool(cfg, f"{base}.CSC")
            _check_choice(cfg, f"{base}.CLASS_TOKEN_POSITION", CLASS_TOKEN_POSITIONS)
        if node == "MAPLE":
            _check_int(cfg, f"{base}.PROMPT_DEPTH", 1, 12)
        if node == "COCOOP":
            _check_int(cfg, f"{base}.TEXT_BATCH_SIZE", 1)
    if quantized:
        validate_quant_cfg(cfg)
    if noise:
        _check_float(cfg, "TRAINER.QPROMPT.NOISE_STD", 0.0)


def validate_quant_cfg(cfg: Any, modes: tuple[str, ...] = QUANT_MODES) -> None:
    """Check the ``TRAINER.QPROMPT.*`` keys of a quantized trainer (ours, or a wrapped host's with ``modes``)."""
    q = "TRAINER.QPROMPT"
    _check_int(cfg, f"{q}.BITS", 1, 8)
    targets = tcfg.get(cfg, f"{q}.TARGETS")
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) and t for t in targets):
        _fail(f"{q}.TARGETS", targets, "must be a list of parameter names or regular expressions "
                                      "(empty: the method's default targets)")
    _check_bool(cfg, f"{q}.NORM")
    _check_choice(cfg, f"{q}.MODE", modes)
    _check_bool(cfg, f"{q}.PER_ROW")
    _check_choice(cfg, f"{q}.KMEANS_BACKEND", KMEANS_BACKENDS)
    _check_choice(cfg, f"{q}.CAC.RECLUSTER", RECLUSTER)
    _check_int(cfg, f"{q}.CAC.INTERVAL", 0)
    _check_float(cfg, f"{q}.CAC.KL_THRESHOLD", 0.0)
    _check_bool(cfg, f"{q}.CAC.REQUIRE_ERROR_INCREASE")


def quant_options_from_cfg(cfg: Any) -> dict[str, Any]:
    """``TRAINER.QPROMPT.*`` as :class:`quantprompt.quant.QuantConfig` fields (``targets`` only when set)."""
    q = "TRAINER.QPROMPT"
    opts: dict[str, Any] = {"bits": int(tcfg.get(cfg, f"{q}.BITS"))}
    targets = list(tcfg.get(cfg, f"{q}.TARGETS"))
    if targets:
        opts["targets"] = targets
    opts["norm"] = bool(tcfg.get(cfg, f"{q}.NORM"))
    opts["mode"] = str(tcfg.get(cfg, f"{q}.MODE"))
    opts["per_row"] = bool(tcfg.get(cfg, f"{q}.PER_ROW"))
    opts["kmeans_backend"] = str(tcfg.get(cfg, f"{q}.KMEANS_BACKEND"))
    opts["recluster"] = str(tcfg.get(cfg, f"{q}.CAC.RECLUSTER"))
    opts["interval"] = int(tcfg.get(cfg, f"{q}.CAC.INTERVAL"))
    opts["kl_threshold"] = float(tcfg.get(cfg, f"{q}.CAC.KL_THRESHOLD"))
    opts["require_error_increase"] = bool(tcfg.get(cfg, f"{q}.CAC.REQUIRE_ERROR_INCREASE"))
    opts["seed"] = int(cfg.SEED) if int(cfg.SEED) >= 0 else 0  # k-means seed follows the run's seed
    return opts


def classnames_sha256(classnames: list[str]) -> str:
    """sha256 of the class names joined by newlines (UTF-8): lets a .qpt reader verify a names file."""
    return hashlib.sha256("\n".join(classnames).encode("utf-8")).hexdigest()


def _clean_name(name: str) -> str:
    """``parametrizations.ctx.original`` -> ``ctx`` (the name the user knows)."""
    return name.replace("parametrizations.", "").replace(".original", "")


class _Holder(nn.Module):
    """Checkpoint root for MaPLe: saves ``prompt_learner.*`` keys exactly as MaPLe's checkpoints name them."""

    def __init__(self, prompt_learner: nn.Module) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner


# ----------------------------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------------------------
def write_qpt(module: nn.Module, path: str, metadata: dict) -> int:
    """Write ``module``'s packed prompt to ``path`` whole (temporary name, then rename) and return its bytes;
    warn when some learned values are not quantized (they are not in the file). Our trainers and wrapped host
    trainers (:mod:`.wrap`) write their .qpt through here."""
    from quantprompt import quant

    rest = quant.size_report(module).get("unquantized_fp16_bytes", 0)
    if rest:
        warnings.warn(f"{path}: {rest // 2} learned values are not quantized (TRAINER.QPROMPT.TARGETS) and "
                      f"are not in the .qpt; evaluate from the checkpoint instead", stacklevel=3)
    from quantprompt.atomic import write_atomic

    blob = quant.export(module, metadata=metadata)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    write_atomic(path, write)
    print(f"Packed prompt saved to {path} ({len(blob)} bytes)")
    return len(blob)


class PromptTrainer(SafeCheckpointMixin, TrainerX):
    """Base class of all prompt trainers; subclasses set the class attributes below.

    Under either backend the LR schedule comes from :mod:`quantprompt.engine.optim` (Dassl's LRs, epoch for
    epoch, and a warmup that runs on torch >= 2.7, where Dassl's own warmup wrapper fails to construct), and
    checkpoints are written and resumed by :class:`SafeCheckpointMixin` (weights_only-loadable files).
    """

    METHOD: str = ""  # quantprompt.prompting.build name
    NODE: Optional[str] = "COOP"  # config node under TRAINER
    MODEL_NAME: str = "prompt_learner"  # checkpoint folder (CoOp); MaPLe: MultiModalPromptLearner
    QUANTIZED: bool = False
    NOISE: bool = False
    REPORT_ACC: bool = True  # CoOp logs train acc; CoCoOp / MaPLe log the loss only

    # -- configuration ------------------------------------------------------------------------------
    def check_cfg(self, cfg: Any) -> None:
        super().check_cfg(cfg)
        validate_cfg(cfg, self.NODE, self.QUANTIZED, self.NOISE)

    @property
    def prec(self) -> str:
        return tcfg.get(self.cfg, f"TRAINER.{self.NODE}.PREC") if self.NODE else "fp16"

    def model_options(self) -> dict[str, Any]:
        """Translate the config into :func:`quantprompt.prompting.build` options (plain Python values)."""
        cfg = self.cfg
        opts: dict[str, Any] = {"precision": self.prec}
        if self.NODE is not None:
            node = f"TRAINER.{self.NODE}"
            opts["n_ctx"] = int(tcfg.get(cfg, f"{node}.N_CTX"))
            opts["ctx_init"] = str(tcfg.get(cfg, f"{node}.CTX_INIT"))
            if self.NODE == "COOP":
                opts["csc"] = bool(tcfg.get(cfg, f"{node}.CSC"))
                opts["class_token_position"] = str(tcfg.get(cfg, f"{node}.CLASS_TOKEN_POSITION"))
            if self.NODE == "MAPLE":
                opts["prompt_depth"] = int(tcfg.get(cfg, f"{node}.PROMPT_DEPTH"))
            if self.NODE == "COCOOP":
                opts["text_batch_size"] = int(tcfg.get(cfg, f"{node}.TEXT_BATCH_SIZE"))
        if self.QUANTIZED:
            opts.update(quant_options_from_cfg(cfg))
        if self.NOISE:
            opts["noise_std"] = float(tcfg.get(cfg, "TRAINER.QPROMPT.NOISE_STD"))
        return opts

    # -- model --------------------------------------------------------------------------------------
    def load_clip(self) -> nn.Module:
        """CLIP from any spec of :func:`quantprompt.clip.load`, on the trainer's device, CoOp's precision."""
        from quantprompt import clip as qclip

        spec = self.cfg.MODEL.BACKBONE.NAME
        print(f"Loading CLIP (backbone: {spec})")
        precision = "fp16" if self.prec == "fp16" else "fp32"
        clip_model, _ = qclip.load(spec, device=str(self.device), precision=precision)
        size = tuple(self.cfg.INPUT.SIZE)
        res = int(clip_model.visual.input_resolution)
        if size[0] != res:
            raise ValueError(
                f"INPUT.SIZE={size} does not match the input resolution {res} of CLIP {spec!r}; "
                f"set INPUT.SIZE \"({res}, {res})\""
            )
        return clip_model

    def build_prompt_model(self, clip_model: nn.Module, classnames: list[str]) -> nn.Module:
        from quantprompt import prompting

        return prompting.build(self.METHOD, clip_model, list(classnames), **self.options)

    def build_model(self) -> None:
        cfg = self.cfg
        classnames = list(self.dm.dataset.classnames)
        self.classnames = classnames
        self.options = self.model_options()
        self.clip_model = self.load_clip()

        print("Building custom CLIP")
        self.model = self.build_prompt_model(self.clip_model, classnames)

        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            if not name.startswith("prompt_learner."):
                param.requires_grad_(False)
        enabled = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        print(f"Parameters to be updated: {enabled}")

        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model.prompt_learner, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        saved = self.model.prompt_learner if self.MODEL_NAME == "prompt_learner" else _Holder(
            self.model.prompt_learner)
        self.register_model(self.MODEL_NAME, saved, self.optim, self.sched)

        amp_cuda = self.prec == "amp" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if amp_cuda else None
        self._cac_last: dict[str, dict] = {}
        self._new_eval: Optional[tuple] = None

    @property
    def quant_active(self) -> bool:
        qc = getattr(self.model, "quant_config", None)
        return self.QUANTIZED and qc is not None

    # -- training step ------------------------------------------------------------------------------
    def forward_backward(self, batch: dict) -> dict:
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output, label)
        self.backward_and_step(loss)
        self.after_optimizer_step()

        summary = {"loss": loss.item()}
        if self.REPORT_ACC:
            summary["acc"] = compute_accuracy(output, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def autocast(self) -> contextlib.AbstractContextManager:
        """CoOp's ``PREC amp``: autocast in fp16 on CUDA, bf16 on the CPU (torch's CPU autocast default);
        a no-op context for fp16 and fp32 (the weights carry the precision)."""
        if self.prec != "amp":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward_and_step(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step; under amp on CUDA through the GradScaler (CoOp's amp path)."""
        if self.prec != "amp":
            self.model_backward_and_update(loss)
            return
        self.model_zero_grad()
        self.detect_anomaly(loss)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            loss.backward()
            self.model_update()

    def parse_batch_train(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def after_optimizer_step(self) -> None:
        """One CAC check per optimizer step (paper Sec. 4.3); counters are printed at PRINT_FREQ."""
        if not self.quant_active:
            return
        from quantprompt import quant

        info = quant.step(self.model) or {}
        for name, item in info.items():
            self._cac_last[name] = dict(item) if isinstance(item, dict) else {}
        freq = self.cfg.TRAIN.PRINT_FREQ
        last = (self.batch_idx + 1) == self.num_batches
        if (self.batch_idx + 1) % freq == 0 and self.num_batches >= freq and not last:
            print(self.cac_line())

    def cac_line(self) -> str:
        """``CAC: ctx reclusters N kl x err y`` per tensor (a summary when more than three tensors)."""
        infos = sorted(self._cac_last.items())
        if not infos:
            return "CAC: no quantized tensors"

        def num(info: dict, key: str) -> float:
            v = info.get(key)
            return float(v) if isinstance(v, (int, float)) else float("nan")

        if len(infos) <= 3:
            parts = [f"{_clean_name(n)} reclusters {int(num(i, 'reclusters'))} kl {num(i, 'kl'):.4g} "
                     f"err {num(i, 'error'):.4g}" for n, i in infos]
            return "CAC: " + "; ".join(parts)
        total = sum(int(num(i, "reclusters")) for _, i in infos)
        most = max(int(num(i, "reclusters")) for _, i in infos)
        kl = sum(num(i, "kl") for _, i in infos) / len(infos)
        err = sum(num(i, "error") for _, i in infos) / len(infos)
        return (f"CAC: {len(infos)} tensors reclusters {total} (max {most} per tensor) mean kl {kl:.4g} "
                f"mean err {err:.4g}")

    # -- epochs -------------------------------------------------------------------------------------
    def before_train(self) -> None:
        super().before_train()
        if tcfg.get(self.cfg, "TRAIN.SAVE_PROMPT_SNAPSHOTS") and self.start_epoch == 0:
            self.save_prompt_snapshot(0)

    def before_epoch(self) -> None:
        # Each epoch's randomness (shuffling, augmentation, noise) depends on (seed, epoch) only, so a run
        # resumed after epoch k continues bit for bit as an uninterrupted one would.
        seed = self.cfg.SEED
        if seed is not None and seed >= 0:
            set_random_seed(int(seed) * 1000 + self.epoch)

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        if self.quant_active:
            print(self.cac_line())
            if last_epoch and self.model.quant_config.mode == "ptq":
                from quantprompt import quant

                quant.finalize_(self.model)
                print("PTQ: prompt quantized after training (quant.finalize_)")
        if tcfg.get(self.cfg, "TEST.PER_EPOCH"):
            self.per_epoch_eval()
        if tcfg.get(self.cfg, "TRAIN.SAVE_PROMPT_SNAPSHOTS"):
            self.save_prompt_snapshot(self.epoch + 1)
        super().after_epoch()

    def after_train(self) -> None:
        print(self.storage_line())
        super().after_train()

    def packed_active(self) -> bool:
        """Whether a .qpt can be written now: some quantizer is switched on (PTQ: only after finalize_)."""
        if not self.quant_active:
            return False
        from quantprompt import quant

        return any(bool(getattr(q, "active", False)) for q in quant.quantizers(self.model).values())

    def storage_bytes(self) -> dict[str, int]:
        """Storage of the learned prompt: the .qpt's size for Q-trainers, fp16 for the others (as the paper)."""
        if self.packed_active():
            from quantprompt import quant

            rep = quant.size_report(self.model, metadata=self.qpt_metadata())
            return {k: int(rep[k]) for k in ("payload_bytes", "header_bytes", "metadata_bytes", "total_bytes",
                                             "unquantized_fp16_bytes")}
        n = sum(p.numel() for p in self.model.prompt_learner.parameters())
        return {"payload_bytes": 2 * n, "header_bytes": 0, "metadata_bytes": 0, "total_bytes": 2 * n,
                "unquantized_fp16_bytes": 2 * n}

    def storage_line(self) -> str:
        s = self.storage_bytes()
        if self.packed_active():
            return (f"Storage of learned parameters (packed .qpt): {s['payload_bytes']} bytes payload + "
                    f"{s['header_bytes']} bytes header + {s['metadata_bytes']} bytes metadata = "
                    f"{s['total_bytes']} bytes")
        return f"Storage of learned parameters (fp16): {s['total_bytes']} bytes"

    # -- per-epoch evaluation (Figs. 2 / 7) ---------------------------------------------------------
    @torch.no_grad()
    def _accuracy(self, model: nn.Module, loader: Any) -> float:
        model.eval()
        correct = total = 0
        for batch in loader:
            image, label = batch["img"].to(self.device), batch["label"].to(self.device)
            pred = model(image).argmax(dim=1)
            correct += int((pred == label).sum())
            total += int(label.numel())
        return 100.0 * correct / max(total, 1)

    def _new_class_evaluator(self) -> Optional[tuple]:
        """(model, loader) for the new classes, built once, sharing CLIP with the training model."""
        if self._new_eval is None:
            cfg = self.cfg.clone()
            cfg.defrost()
            cfg.DATASET.SUBSAMPLE_CLASSES = "new"
            dm = DataManager(cfg)
            model = self.build_prompt_model(self.clip_model, list(dm.dataset.classnames)).to(self.device)
            self._new_eval = (model, dm.test_loader)
        return self._new_eval

    def per_epoch_eval(self) -> None:
        """Accuracy on the test split (and on the new classes when training on base) -> per_epoch_eval.json."""
        was_training = self.model.prompt_learner.training
        self.set_model_mode("eval")
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        sub = tcfg.get(self.cfg, "DATASET.SUBSAMPLE_CLASSES")
        key = "base" if sub == "base" else "test"
        record[key] = self._accuracy(self.model, self.test_loader)
        csc = self.NODE == "COOP" and bool(tcfg.get(self.cfg, "TRAINER.COOP.CSC"))
        if sub == "base" and tcfg.get(self.cfg, "TEST.PER_EPOCH_NEW") and not csc:
            model, loader = self._new_class_evaluator()
            model.prompt_learner.load_state_dict(self.model.prompt_learner.state_dict())
            record["new"] = self._accuracy(model, loader)
        text = " ".join(f"{k} {v:.2f}%" for k, v in record.items() if k != "epoch")
        print(f"per-epoch evaluation: epoch [{self.epoch + 1}/{self.max_epoch}] {text}")
        path = osp.join(self.output_dir, "per_epoch_eval.json")
        rows = []
        if osp.exists(path):
            with open(path, encoding="utf-8") as f:
                rows = [r for r in json.load(f) if r.get("epoch") != record["epoch"]]
        rows.append(record)
        rows.sort(key=lambda r: r["epoch"])
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
        if was_training:
            self.set_model_mode("train")

    # -- prompt snapshots (Figs. 3 / 6) -------------------------------------------------------------
    def save_prompt_snapshot(self, epoch: int) -> str:
        """``prompt_snapshots/epoch-<e>.safetensors``: latent weights by clean name, plus ``<name>.quantized``."""
        from safetensors.torch import save_file

        learner = self.model.prompt_learner
        tensors: dict[str, torch.Tensor] = {}
        for name, p in learner.named_parameters():
            clean = _clean_name(name)
            tensors[clean] = p.detach().float().cpu().contiguous()
            if ".original" in name:
                owner_path, _, attr = clean.rpartition(".")
                owner = learner.get_submodule(owner_path) if owner_path else learner
                with torch.no_grad():
                    tensors[clean + ".quantized"] = getattr(owner, attr).detach().float().cpu().contiguous()
        folder = osp.join(self.output_dir, "prompt_snapshots")
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f"epoch-{epoch}.safetensors")
        save_file(tensors, path, metadata={"epoch": str(epoch), "trainer": type(self).__name__})
        index_path = osp.join(folder, "index.json")
        index = {}
        if osp.exists(index_path):
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
        index[str(epoch)] = osp.basename(path)
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(index.items(), key=lambda kv: int(kv[0]))), f, indent=1)
        return path

    # -- checkpoints and .qpt -----------------------------------------------------------------------
    def qpt_metadata(self) -> dict[str, Any]:
        """What a reader needs besides CLIP to rebuild and run the model (see readme: .qpt metadata)."""
        learner = self.model.prompt_learner
        n_ctx = getattr(learner, "n_ctx", self.options.get("n_ctx"))
        return {
            "method": self.METHOD,
            "trainer": type(self).__name__,
            "bits": self.options.get("bits"),
            "n_ctx": int(n_ctx) if n_ctx is not None else None,
            "class_token_position": self.options.get("class_token_position", "end"),
            "classnames": list(self.classnames),
            "classnames_sha256": classnames_sha256(list(self.classnames)),
            "clip": self.cfg.MODEL.BACKBONE.NAME,
            "dataset": self.cfg.DATASET.NAME,
            "options": dict(self.options),
            "epoch": int(self.epoch + 1),
        }

    def write_qpt(self, path: str) -> int:
        return write_qpt(self.model, path, self.qpt_metadata())

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Any = None,
                   model_name: str = "") -> None:
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result, model_name=model_name)
        if not self.packed_active():
            return
        folder = osp.join(directory, self.MODEL_NAME)
        if model_name == "model-best.pth.tar":
            self.write_qpt(osp.join(folder, "model-best.qpt"))
        else:
            path = osp.join(folder, f"model.qpt-{epoch + 1}")
            self.write_qpt(path)
            if is_best:
                self.write_qpt(osp.join(folder, "model-best.qpt"))

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model.pth.tar-<epoch>`` (default ``model-best.pth.tar``) or the packed ``.qpt`` beside it.

        The .qpt is used when ``TEST.LOAD_QPT`` is True or when the folder holds only the .qpt.
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        ckpt_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        qpt_file = "model-best.qpt" if epoch is None else f"model.qpt-{epoch}"
        want_qpt = bool(tcfg.get(self.cfg, "TEST.LOAD_QPT"))
        for name in self.get_model_names():
            ckpt_path = osp.join(directory, name, ckpt_file)
            qpt_path = osp.join(directory, name, qpt_file)
            use_qpt = want_qpt or (not osp.exists(ckpt_path) and osp.exists(qpt_path))
            if use_qpt:
                if not self.quant_active:
                    raise ValueError(
                        f"{qpt_path}: packed prompts (.qpt) belong to the quantized trainers (QCoOp, QCoCoOp, "
                        f"QMaPLe), not {type(self).__name__} with TRAINER.QPROMPT.MODE off"
                    )
                self._load_qpt(qpt_path)
                continue
            if not osp.exists(ckpt_path):
                folder = osp.join(directory, name)
                found = sorted(os.listdir(folder)) if osp.isdir(folder) else []
                raise FileNotFoundError(
                    f'Model not found at "{ckpt_path}" (nor {qpt_file}); files there: {found or "none"}. '
                    f"Check --model-dir and --load-epoch."
                )
            self._load_checkpoint(name, ckpt_path)

    def _load_checkpoint(self, name: str, path: str) -> None:
        checkpoint = load_checkpoint(path)
        state_dict = dict(checkpoint["state_dict"])
        epoch = checkpoint.get("epoch")
        module = self._models[name]
        own = module.state_dict()
        if name != "prompt_learner" and not any(k in own for k in state_dict):
            state_dict = {k: v for k, v in state_dict.items() if k.startswith("prompt_learner.")}
        # fixed token embeddings depend on the class names of this run (CoOp: "ignore fixed token vectors")
        state_dict = {k: v for k, v in state_dict.items()
                      if k.rsplit(".", 1)[-1] not in ("token_prefix", "token_suffix")}
        print(f'Loading weights to {name} from "{path}" (epoch = {epoch})')
        # strict=False: the keys are checked below by what the load left out; the quantizer's state_dict hooks
        # (quant.state) accept the current layout (``ctx`` + ``ctx.qprompt_latent`` ...) and the older one
        result = module.load_state_dict(state_dict, strict=False)
        missing = [_clean_name(k) for k in result.missing_keys]
        if missing:
            raise ValueError(
                f"{path} lacks learned tensors {missing} of {type(self).__name__}; it was written by another "
                f"trainer or configuration (found {sorted(state_dict)[:8]})"
            )
        if result.unexpected_keys:
            warnings.warn(f"{path}: ignoring tensors this model does not have: {result.unexpected_keys}",
                          stacklevel=2)

    def _load_qpt(self, path: str) -> None:
        from quantprompt import quant

        if not osp.exists(path):
            raise FileNotFoundError(f'Packed prompt not found at "{path}" (TEST.LOAD_QPT is True)')
        with open(path, "rb") as f:
            blob = f.read()
        meta = quant.read_metadata(blob) or {}
        method = meta.get("method")
        if method is not None and method != self.METHOD:
            raise ValueError(f"{path} holds a {method!r} prompt, but trainer {type(self).__name__} needs "
                             f"{self.METHOD!r}")
        clip = meta.get("clip")
        spec = self.cfg.MODEL.BACKBONE.NAME
        if clip is not None and clip != spec and osp.basename(str(clip)) != osp.basename(str(spec)):
            raise ValueError(f"{path} was trained with CLIP {clip!r}, but MODEL.BACKBONE.NAME is {spec!r}")
        rest = quant.size_report(self.model).get("unquantized_fp16_bytes", 0)
        if rest:
            raise ValueError(f"{path}: this model has {rest // 2} learned values outside the quantized targets, "
                             f"which a .qpt does not store; load the checkpoint (TEST.LOAD_QPT False)")
        quant.load_into(self.model, blob)
        print(f'Loading packed prompt from "{path}" (epoch = {meta.get("epoch")}, bits = {meta.get("bits")})')
