"""Config keys of the prompt trainers, added to a Dassl/engine config tree by :func:`extend_cfg`.

The reference keys (``TRAINER.COOP``, ``TRAINER.COCOOP``, ``TRAINER.MAPLE``) keep CoOp's and MaPLe's names and
defaults, so their YAML files merge unchanged. Ours live under ``TRAINER.QPROMPT``. A node that already exists
(a CoOp or MaPLe ``train.py`` that extended the config before us) is left as it is and only missing keys are
added, so calling this in any pipeline is safe.

Trainers never assume these keys exist: they read them through :func:`get` with the same defaults, so a
pipeline that never called :func:`extend_cfg` still runs with the reference defaults.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "extend_cfg", "get"]

# key -> default. Nested keys are dotted paths below the config root.
DEFAULTS: dict[str, Any] = {
    # CoOp (KaiyangZhou/CoOp train.py)
    "TRAINER.COOP.N_CTX": 16,
    "TRAINER.COOP.CSC": False,
    "TRAINER.COOP.CTX_INIT": "",
    "TRAINER.COOP.PREC": "fp16",
    "TRAINER.COOP.CLASS_TOKEN_POSITION": "end",
    # CoCoOp
    "TRAINER.COCOOP.N_CTX": 16,
    "TRAINER.COCOOP.CTX_INIT": "",
    "TRAINER.COCOOP.PREC": "fp16",
    "TRAINER.COCOOP.TEXT_BATCH_SIZE": 1000,  # ours: most (image, class) prompts per text-encoder call
    # MaPLe (muzairkhattak/multimodal-prompt-learning train.py)
    "TRAINER.MAPLE.N_CTX": 2,
    "TRAINER.MAPLE.CTX_INIT": "a photo of a",
    "TRAINER.MAPLE.PREC": "fp16",
    "TRAINER.MAPLE.PROMPT_DEPTH": 9,
    # QPrompt
    "TRAINER.QPROMPT.BITS": 1,
    "TRAINER.QPROMPT.TARGETS": [],  # empty: the method's default targets (see readme)
    "TRAINER.QPROMPT.NORM": True,
    "TRAINER.QPROMPT.MODE": "qat",  # qat | ptq | off
    "TRAINER.QPROMPT.PER_ROW": False,
    "TRAINER.QPROMPT.KMEANS_BACKEND": "torch",  # torch | sklearn
    "TRAINER.QPROMPT.CAC.RECLUSTER": "cac",  # cac | always (classic QAT, Table 4 "no CAC") | never
    "TRAINER.QPROMPT.CAC.INTERVAL": 10,  # minimum optimizer steps between re-clusterings (0: no minimum)
    "TRAINER.QPROMPT.CAC.KL_THRESHOLD": 1e-4,  # re-cluster only when KL(p_cur || p_old) exceeds this
    "TRAINER.QPROMPT.CAC.REQUIRE_ERROR_INCREASE": True,  # ... and the quantization error grew
    "TRAINER.QPROMPT.NOISE_STD": 0.01,  # NoiseCoOp, and wrapped trainers with MODE noise (Fig. 2)
    # wrapped host trainers (qp.quantize_trainers): the most values they may train, a prompt-sized set; a host
    # training more (a fine-tuned encoder) is refused before training. MaPLe's ViT-B/16 prompts are 3.55M values
    "TRAINER.QPROMPT.MAX_PARAMS": 5_000_000,
    # P4Q (prompt settings come from TRAINER.COOP: N_CTX, CTX_INIT, CSC, CLASS_TOKEN_POSITION, PREC)
    "TRAINER.P4Q.WEIGHT_BITS": 8,  # CLIP's weights, both encoders: 2..8, symmetric
    "TRAINER.P4Q.ACT_BITS": 8,  # activations entering every quantized layer, per tensor
    "TRAINER.P4Q.ACT_RANGE": "auto",  # auto | full | reduced (one bit fewer levels): the int8 kernel's grid
    "TRAINER.P4Q.PER_CHANNEL": True,  # one weight scale per output channel (False: per tensor)
    "TRAINER.P4Q.CALIBRATOR": "mse",  # minmax | percentile | mse
    "TRAINER.P4Q.CALIB_BATCHES": 4,  # training batches (test transform, fixed order) used for calibration
    "TRAINER.P4Q.FP_ENCODER": "none",  # none | image | text: that encoder stays full precision (ablation)
    "TRAINER.P4Q.ADAPTER_BITS": 4,  # adapter weights, quant.quantize_ (K-Means codebook, CAC)
    "TRAINER.P4Q.PROMPT_BITS": 8,  # prompt context, quant.quantize_
    "TRAINER.P4Q.R": 4,  # adapter bottleneck d -> d / r -> d
    "TRAINER.P4Q.ALPHA": 0.2,  # adapter mixing ratio: alpha * adapter(x) + (1 - alpha) * x
    "TRAINER.P4Q.LAMBDA": 1.0,  # weight of the distillation term
    "TRAINER.P4Q.T": 2.0,  # distillation temperature
    "TRAINER.P4Q.TEACHER": "",  # "": zero-shot CLIP with the dataset's template; else a CoOp checkpoint path
    "TRAINER.P4Q.EXPORT": False,  # after training: <OUTPUT_DIR>/model.p4q.safetensors (real int8/int4 file)
    "TRAINER.P4Q.ZERO_SHOT": False,  # True: evaluate the PTQ CLIP with hand-written prompts, learn nothing
    # data (CoOp's train.py adds it)
    "DATASET.SUBSAMPLE_CLASSES": "all",  # all | base | new
    # ours: evaluation and analysis outputs
    "TEST.PER_EPOCH": False,  # evaluate after every epoch -> per_epoch_eval.json
    "TEST.PER_EPOCH_NEW": True,  # ... and on the new classes too when training on base classes
    "TEST.LOAD_QPT": False,  # --eval-only loads <model-name>/model.qpt-<epoch> instead of the checkpoint
    "TRAIN.SAVE_PROMPT_SNAPSHOTS": False,  # prompt_snapshots/epoch-<e>.safetensors after every epoch
}


def _node_class(cfg: Any) -> type:
    return type(cfg)


def extend_cfg(cfg: Any) -> Any:
    """Add every key of :data:`DEFAULTS` that ``cfg`` lacks (in place) and return ``cfg``.

    Why: yacs refuses to merge a YAML key the tree does not hold, so ``configs/trainers/QCoOp/*.yaml`` only
    merges after this ran. Existing values are never overwritten.
    """
    node_cls = _node_class(cfg)
    for dotted, default in DEFAULTS.items():
        parts = dotted.split(".")
        node = cfg
        for part in parts[:-1]:
            if part not in node:
                node[part] = node_cls()
            node = node[part]
        if parts[-1] not in node:
            node[parts[-1]] = list(default) if isinstance(default, list) else default
    return cfg


_MISSING = object()


def get(cfg: Any, dotted: str, default: Any = _MISSING) -> Any:
    """Read ``cfg.A.B.C`` for ``"A.B.C"``; a missing key gives ``default`` (or :data:`DEFAULTS`' value).

    Why: our trainers must also run in a pipeline (a CoOp checkout's ``train.py``) that never added our keys.
    """
    node = cfg
    for part in dotted.split("."):
        try:
            node = node[part] if part in node else _MISSING
        except TypeError:
            node = _MISSING
        if node is _MISSING:
            if default is not _MISSING:
                return default
            if dotted in DEFAULTS:
                return DEFAULTS[dotted]
            raise KeyError(f"config key {dotted} is missing and has no default")
    return node
