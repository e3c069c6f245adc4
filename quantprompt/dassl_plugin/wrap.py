"""QPrompt for a host checkout's own trainers: ``qp.quantize_trainers("PromptSRC", "KgCoOp")``.

A CoOp-family checkout (PromptSRC, KgCoOp, ...) registers its prompt learner in Dassl's ``TRAINER_REGISTRY``.
:func:`quantize_trainers` registers beside it ``Q<Name>``, a subclass of the host's class with
:class:`QuantizedHost` in front. The host's code runs unchanged: its ``build_model``, ``forward_backward`` and
losses, its checkpoints and ``load_model``. What the subclass adds:

* after the host's ``build_model``: the tensors the host trains (``requires_grad`` parameters held by the
  optimizers it registered; or ``TRAINER.QPROMPT.TARGETS``) are quantized with :func:`quant.quantize_` from
  ``TRAINER.QPROMPT.*``, exactly as ``QCoOp`` quantizes its context (QAT with straight-through gradients,
  normalization, bits, PTQ; ``MODE noise``: the Gaussian-noise baseline instead);
* constrained adaptive clustering after every optimizer step through
  :meth:`torch.optim.Optimizer.register_step_post_hook`, so whatever the host's ``forward_backward`` does, one
  CAC check follows each ``optimizer.step()`` (a step a GradScaler skips is not counted);
* the packed ``.qpt`` beside every checkpoint and the ``Storage of learned parameters`` line, so the results
  tools show the Size column; ``TEST.LOAD_QPT`` (or a folder holding only the ``.qpt``) evaluates from it;
* checkpoints keep the host's key names (``ctx`` holds the quantized values; see :mod:`quantprompt.quant.state`),
  and a reload of averaged ``state_dict``s (PromptSRC's Gaussian prompt aggregation) re-fits the codebook.

Refused before training, one line each: nothing trainable, a target that matches nothing, more trained values
than ``TRAINER.QPROMPT.MAX_PARAMS``.
"""

from __future__ import annotations

import os.path as osp
from typing import Any, Optional

import torch
from torch import nn

from quantprompt.engine.compat import TRAINER_REGISTRY, SafeCheckpointMixin, TrainerX

from . import config as tcfg
from .base import (
    QUANT_MODES,
    PromptTrainer,
    _check_float,
    _check_int,
    classnames_sha256,
    quant_options_from_cfg,
    validate_quant_cfg,
    write_qpt,
)

__all__ = ["QuantizedHost", "WRAPPED_MODES", "quantize_trainers", "wrap_trainer"]

#: TRAINER.QPROMPT.MODE values of a wrapped trainer: ours plus the noise baseline (NoiseCoOp's, for any host)
WRAPPED_MODES = (*QUANT_MODES, "noise")


class QuantizedHost:
    """Put in front of a host trainer class (by :func:`wrap_trainer`); see the module docstring."""

    QPROMPT_HOST: Optional[type] = None  # the wrapped host class

    # -- configuration ------------------------------------------------------------------------------
    def check_cfg(self, cfg: Any) -> None:
        super().check_cfg(cfg)  # type: ignore[misc]
        validate_quant_cfg(cfg, WRAPPED_MODES)
        _check_int(cfg, "TRAINER.QPROMPT.MAX_PARAMS", 1)
        if tcfg.get(cfg, "TRAINER.QPROMPT.MODE") == "noise":
            _check_float(cfg, "TRAINER.QPROMPT.NOISE_STD", 0.0)

    # -- model --------------------------------------------------------------------------------------
    def build_model(self) -> None:
        super().build_model()  # type: ignore[misc]
        self.qprompt_attach()

    def _qp_root(self) -> nn.Module:
        root = getattr(self, "model", None)
        if not isinstance(root, nn.Module):
            raise TypeError(f"{type(self).__name__}: the host's build_model left no nn.Module in self.model; "
                            f"QPrompt quantizes tensors of self.model")
        return root

    def _qp_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers the host registered (``register_model``), and ``self.optim``, each once."""
        found: list[torch.optim.Optimizer] = []
        candidates = list(getattr(self, "_optims", {}).values()) + [getattr(self, "optim", None)]
        for o in candidates:
            if isinstance(o, torch.optim.Optimizer) and all(o is not f for f in found):
                found.append(o)
        return found

    def _qp_trained(self, root: nn.Module) -> list[str]:
        """Names (in ``root``) of the requires_grad tensors the host's optimizers hold, in model order."""
        from quantprompt.quant.targets import param_entries

        held = {id(p) for o in self._qp_optimizers() for g in o.param_groups for p in g["params"]
                if isinstance(p, torch.Tensor) and p.requires_grad}
        entries = param_entries(root)
        names = [e.name for e in entries if id(e.tensor) in held]
        outside = held - {id(e.tensor) for e in entries}
        if outside:
            raise ValueError(f"{type(self).__name__}: the host's optimizer trains {len(outside)} tensor(s) that are "
                             f"not in self.model; name the prompt tensors in TRAINER.QPROMPT.TARGETS")
        return names

    def qprompt_attach(self) -> None:
        """Quantize (or add noise to) what the host trains; hook CAC into its optimizers (see module docstring)."""
        from quantprompt import quant
        from quantprompt.quant.targets import match_targets, param_entries

        cfg = self.cfg  # type: ignore[attr-defined]
        who = type(self).__name__
        root = self._qp_root()
        targets = list(tcfg.get(cfg, "TRAINER.QPROMPT.TARGETS"))
        if targets:
            names = []
            for t in targets:
                try:
                    hits = match_targets(root, [t], "TRAINER.QPROMPT.TARGETS")
                except ValueError:
                    trained = ", ".join(self._qp_trained(root)) or "nothing"
                    raise ValueError(
                        f"{who}: TRAINER.QPROMPT.TARGETS: target {t!r} matches no parameter of self.model "
                        f"({type(root).__name__}); give exact names or full-match regexes, e.g. of what the host "
                        f"trains: {trained}") from None
                names += [e.name for e in hits if e.name not in names]
        else:
            names = self._qp_trained(root)
            if not names:
                raise ValueError(
                    f"{who}: the host trains nothing: no parameter with requires_grad is held by its optimizer(s) "
                    f"after build_model; name the prompt tensors in TRAINER.QPROMPT.TARGETS")
        sizes = {e.name: e.tensor.numel() for e in param_entries(root)}
        total, limit = sum(sizes[n] for n in names), int(tcfg.get(cfg, "TRAINER.QPROMPT.MAX_PARAMS"))
        if total > limit:
            raise ValueError(
                f"{who}: the host trains {total:,} values in {len(names)} tensors, more than a prompt-sized set "
                f"(TRAINER.QPROMPT.MAX_PARAMS={limit}); QPrompt quantizes prompts: freeze the encoders, name the "
                f"prompt tensors in TRAINER.QPROMPT.TARGETS, or raise TRAINER.QPROMPT.MAX_PARAMS")
        self._qp_names = names
        self._qp_options = quant_options_from_cfg(cfg)  # as QCoOp writes them into .qpt metadata
        self._cac_last: dict[str, dict] = {}
        mode = self._qp_options["mode"]
        if mode == "noise":
            std = float(tcfg.get(cfg, "TRAINER.QPROMPT.NOISE_STD"))
            self.qprompt_config: Any = quant.NoiseConfig(std=std, targets=names)
            quant.add_noise_(root, self.qprompt_config)
            print(f"QPrompt: Gaussian noise (std {std}) on {len(names)} trained tensors ({total:,} values): "
                  f"{', '.join(names)}")
        else:
            kwargs = {k: v for k, v in self._qp_options.items() if k != "targets"}
            self.qprompt_config = quant.QuantConfig(targets=names, **kwargs)
            quant.quantize_(root, self.qprompt_config)
            print(f"QPrompt: {kwargs['bits']}-bit {mode} on {len(names)} trained tensors ({total:,} values): "
                  f"{', '.join(names)}")
            self._qp_hook_optimizers(root)
        invalidate = getattr(root, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()

    def _qp_hook_optimizers(self, root: nn.Module) -> None:
        from quantprompt.quant import KMeansQuantizer
        from quantprompt.quant.targets import param_entries

        quantized = {}
        for e in param_entries(root):
            if e.name in self._qp_names and hasattr(e.owner, "parametrizations"):
                qs = [p for p in e.owner.parametrizations[e.attr] if isinstance(p, KMeansQuantizer)]
                if qs:
                    quantized[id(e.tensor)] = (e.name, e.tensor, qs[0])
        self._qp_handles = []
        for o in self._qp_optimizers():
            mine = [quantized[id(p)] for g in o.param_groups for p in g["params"] if id(p) in quantized]
            if mine:
                self._qp_handles.append(o.register_step_post_hook(
                    lambda opt, args, kwargs, mine=mine: self.qprompt_after_step(mine)))

    def qprompt_after_step(self, entries: list) -> None:
        """One CAC check per quantized tensor the stepped optimizer holds; counters at TRAIN.PRINT_FREQ."""
        for name, tensor, q in entries:
            self._cac_last[name] = dict(q.step(tensor))
        freq = int(self.cfg.TRAIN.PRINT_FREQ)  # type: ignore[attr-defined]
        batch, num = getattr(self, "batch_idx", 0) + 1, getattr(self, "num_batches", 0)
        if freq > 0 and batch % freq == 0 and num >= freq and batch != num:
            print(self.cac_line())

    cac_line = PromptTrainer.cac_line

    def _qp_quantizers(self) -> dict[str, Any]:
        from quantprompt import quant

        return quant.quantizers(self._qp_root()) if getattr(self, "_qp_names", None) else {}

    # -- epochs -------------------------------------------------------------------------------------
    def after_epoch(self) -> None:
        if self._qp_quantizers():
            print(self.cac_line())
            last = (self.epoch + 1) == self.max_epoch  # type: ignore[attr-defined]
            if last and self._qp_options["mode"] == "ptq":
                from quantprompt import quant

                quant.finalize_(self._qp_root())
                print("PTQ: prompt quantized after training (quant.finalize_)")
        super().after_epoch()  # type: ignore[misc]

    def after_train(self) -> None:
        if not isinstance(self, PromptTrainer):  # ours print it in their own after_train
            print(self.storage_line())
        super().after_train()  # type: ignore[misc]

    # -- size ---------------------------------------------------------------------------------------
    def packed_active(self) -> bool:
        """Whether a .qpt can be written now: some quantizer is on (PTQ: after finalize_; never in noise mode)."""
        return any(bool(q.active) for q in self._qp_quantizers().values())

    def storage_bytes(self) -> dict[str, int]:
        """The .qpt's payload when quantized, else the trained tensors in fp16 (the paper's convention)."""
        from quantprompt import quant

        if self.packed_active():
            rep = quant.size_report(self._qp_root(), metadata=self.qpt_metadata())
            return {k: int(rep[k]) for k in ("payload_bytes", "header_bytes", "metadata_bytes", "total_bytes",
                                             "unquantized_fp16_bytes")}
        from quantprompt.quant.targets import param_entries

        n = sum(e.tensor.numel() for e in param_entries(self._qp_root()) if e.name in self._qp_names)
        return {"payload_bytes": 2 * n, "header_bytes": 0, "metadata_bytes": 0, "total_bytes": 2 * n,
                "unquantized_fp16_bytes": 2 * n}

    storage_line = PromptTrainer.storage_line

    # -- .qpt ---------------------------------------------------------------------------------------
    def qpt_metadata(self) -> dict[str, Any]:
        """What a reader needs besides CLIP. For one of our trainers as host (CoOp ...) exactly what its own
        Q-trainer (QCoOp ...) writes, so the two give the same bytes."""
        if isinstance(self, PromptTrainer):
            meta = super().qpt_metadata()  # type: ignore[misc]
            meta.update(method="q" + meta["method"], trainer=type(self).__name__, bits=self._qp_options["bits"],
                        options={**meta["options"], **self._qp_options})
            return meta
        cfg = self.cfg  # type: ignore[attr-defined]
        dm = getattr(self, "dm", None)
        names = list(getattr(getattr(dm, "dataset", None), "classnames", []) or [])
        host = type(self).QPROMPT_HOST
        return {
            "method": "wrapped",
            "trainer": type(self).__name__,
            "host": f"{host.__module__}.{host.__qualname__}" if host is not None else None,
            "bits": self._qp_options["bits"],
            "targets": list(self._qp_names),
            "classnames": names,
            "classnames_sha256": classnames_sha256(names),
            "clip": cfg.MODEL.BACKBONE.NAME,
            "dataset": cfg.DATASET.NAME,
            "options": dict(self._qp_options),
            "epoch": int(getattr(self, "epoch", -1) + 1),
        }

    def write_qpt(self, path: str) -> int:
        return write_qpt(self._qp_root(), path, self.qpt_metadata())

    def qpt_folder(self) -> str:
        """The registered model (checkpoint folder) holding the quantized tensors: the .qpt goes beside it."""
        held = {id(q) for q in self._qp_quantizers().values()}
        for name, module in getattr(self, "_models", {}).items():
            if isinstance(module, nn.Module) and any(id(m) in held for m in module.modules()):
                return name
        names = list(getattr(self, "_models", {}))
        if not names:
            raise ValueError(f"{type(self).__name__}: the host registered no model (register_model)")
        return names[0]

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Any = None,
                   model_name: str = "") -> None:
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result,  # type: ignore[misc]
                           model_name=model_name)
        if isinstance(self, PromptTrainer) or not self.packed_active():
            return  # ours write the .qpt in their own save_model (through this class's write_qpt)
        folder = osp.join(directory, self.qpt_folder())
        if model_name == "model-best.pth.tar":
            self.write_qpt(osp.join(folder, "model-best.qpt"))
        else:
            self.write_qpt(osp.join(folder, f"model.qpt-{epoch + 1}"))
            if is_best:
                self.write_qpt(osp.join(folder, "model-best.qpt"))

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """The host's ``load_model``, or the packed ``.qpt`` when ``TEST.LOAD_QPT`` is True or it is all there is."""
        if directory and self._qp_quantizers():
            name = self.qpt_folder()
            ckpt = osp.join(directory, name, "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}")
            qpt = osp.join(directory, name, "model-best.qpt" if epoch is None else f"model.qpt-{epoch}")
            if bool(tcfg.get(self.cfg, "TEST.LOAD_QPT")) or (not osp.exists(ckpt) and osp.exists(qpt)):  # type: ignore[attr-defined]
                self._qp_load_qpt(qpt)
                return
        super().load_model(directory, epoch)  # type: ignore[misc]

    def _qp_load_qpt(self, path: str) -> None:
        from quantprompt import quant

        if not osp.exists(path):
            raise FileNotFoundError(f'Packed prompt not found at "{path}" (TEST.LOAD_QPT is True); check '
                                    f"--model-dir and --load-epoch")
        with open(path, "rb") as f:
            blob = f.read()
        meta = quant.read_metadata(blob) or {}
        trainer = meta.get("trainer")
        if trainer is not None and trainer != type(self).__name__:
            raise ValueError(f"{path} was written by trainer {trainer!r}, not {type(self).__name__}")
        root = self._qp_root()
        rest = quant.size_report(root).get("unquantized_fp16_bytes", 0)
        if rest:
            raise ValueError(f"{path}: this model trains {rest // 2} values outside the quantized targets, which a "
                             f".qpt does not store; load the checkpoint (TEST.LOAD_QPT False)")
        quant.load_into(root, blob)
        print(f'Loading packed prompt from "{path}" (epoch = {meta.get("epoch")}, bits = {meta.get("bits")})')


def _needs_safe_checkpoints(host: type) -> bool:
    """Whether the host saves and resumes with Dassl's own methods (which pickle its warmup scheduler)."""
    return all(getattr(host, m) is getattr(TrainerX, m) for m in ("save_model", "resume_model_if_exist"))


def wrap_trainer(host: type, name: Optional[str] = None) -> type:
    """``Q<Host>``: ``host`` with :class:`QuantizedHost` in front (not registered; see :func:`quantize_trainers`).

    Also accepts our own trainers (``CoOp`` -> a class that must equal ``QCoOp``: the tests' anchor).
    """
    if not (isinstance(host, type) and issubclass(host, TrainerX)):
        raise TypeError(f"wrap_trainer: {host!r} is not a Dassl trainer class (a TrainerX subclass)")
    if issubclass(host, QuantizedHost) or getattr(host, "QUANTIZED", False):
        raise ValueError(f"wrap_trainer: {host.__name__} is already a quantized trainer")
    qname = name or f"Q{host.__name__}"
    bases: tuple[type, ...] = (QuantizedHost,)
    if _needs_safe_checkpoints(host):
        bases += (SafeCheckpointMixin,)
    doc = (f"{host.__name__} ({host.__module__}) with its trained tensors quantized by QPrompt "
           f"(TRAINER.QPROMPT.*); made by quantprompt.dassl_plugin.quantize_trainers.")
    return type(qname, (*bases, host), {"QPROMPT_HOST": host, "__module__": __name__, "__qualname__": qname,
                                       "__doc__": doc})


def quantize_trainers(*names: str) -> list[str]:
    """Register ``Q<Name>`` for each host trainer ``Name`` in the running ``TRAINER_REGISTRY``; return the names.

    Call it after the checkout's own ``import trainers.<name>`` lines. Calling it again is harmless. An unknown
    name, a name QuantPrompt already quantizes (``CoOp`` -> ``QCoOp``), or a ``Q<Name>`` taken by another class
    raise ``ValueError`` naming them. Under real Dassl it also applies :func:`patch_dassl_for_new_torch`: the
    host's trainer builds its schedule with Dassl's warmup scheduler, which torch >= 2.7 cannot construct
    (the learning rates are unchanged).
    """
    from quantprompt.engine.compat import BACKEND

    from .catalog import TRAINERS
    from .torch_compat import patch_dassl_for_new_torch

    if not names:
        raise ValueError("quantize_trainers: name at least one trainer, e.g. qp.quantize_trainers('PromptSRC')")
    ours = {name: baseline for _, name, baseline in TRAINERS}
    done = []
    for name in names:
        registered = TRAINER_REGISTRY.registered_names()
        if not isinstance(name, str) or name not in registered:
            raise ValueError(f"quantize_trainers: no trainer {name!r} in TRAINER_REGISTRY (registered: "
                             f"{', '.join(sorted(registered))}); import the checkout's trainer module first")
        qname = f"Q{name}"
        if name in ours and not ours[name]:
            raise ValueError(f"quantize_trainers: {name} is one of QuantPrompt's own trainers; it is not a host "
                             f"to wrap")
        if qname in ours:
            raise ValueError(f"quantize_trainers: {name} is quantized by QuantPrompt's own {qname}; use "
                             f"--trainer {qname} instead of wrapping {name}")
        host = TRAINER_REGISTRY.get(name)
        if qname in registered:
            existing = TRAINER_REGISTRY.get(qname)
            if getattr(existing, "QPROMPT_HOST", None) is host:
                done.append(qname)
                continue
            raise ValueError(f"quantize_trainers: {qname} is already registered by {existing.__module__}."
                             f"{existing.__qualname__}; the quantized {name} cannot take that name")
        TRAINER_REGISTRY.register(wrap_trainer(host, qname))
        done.append(qname)
    if BACKEND == "dassl":
        patch_dassl_for_new_torch()
    return done
