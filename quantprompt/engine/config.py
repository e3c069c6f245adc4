"""The default yacs config tree, key for key and value for value the one of Dassl.pytorch.

CoOp-style configs (``configs/datasets/*.yaml``, ``configs/trainers/*/*.yaml``) and ``train.py`` merge into this
tree, so every key a Dassl config may set must exist here with Dassl's default and type: yacs refuses unknown keys
and type changes. Keys of Dassl's own domain-adaptation / semi-supervised trainers are kept too, so a config
written for Dassl never fails here for a key it would accept there.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_cfg_default", "clean_cfg", "CfgNode"]

try:  # yacs is a hard dependency; keep the import error readable
    from yacs.config import CfgNode
except ImportError as err:  # pragma: no cover - yacs is in requirements.txt
    raise ImportError("quantprompt.engine needs yacs: pip install -r requirements.txt") from err


def _node(**values: Any) -> CfgNode:
    node = CfgNode()
    for key, value in values.items():
        setattr(node, key, value)
    return node


def _build_default() -> CfgNode:
    c = CfgNode()
    c.VERSION = 1
    c.OUTPUT_DIR = "./output"  # where log.txt and checkpoints go
    c.RESUME = ""  # a previous output dir to resume from
    c.SEED = -1  # negative: random; >= 0: fixed
    c.USE_CUDA = True  # use CUDA when available (CPU otherwise)
    c.VERBOSE = True

    c.INPUT = _node(
        SIZE=(224, 224),
        INTERPOLATION="bilinear",
        TRANSFORMS=(),
        NO_TRANSFORM=False,
        PIXEL_MEAN=[0.485, 0.456, 0.406],  # ImageNet's; CLIP configs override
        PIXEL_STD=[0.229, 0.224, 0.225],
        CROP_PADDING=4,
        RRCROP_SCALE=(0.08, 1.0),
        CUTOUT_N=1,
        CUTOUT_LEN=16,
        GN_MEAN=0.0,
        GN_STD=0.15,
        RANDAUGMENT_N=2,
        RANDAUGMENT_M=10,
        COLORJITTER_B=0.4,
        COLORJITTER_C=0.4,
        COLORJITTER_S=0.4,
        COLORJITTER_H=0.1,
        RGS_P=0.2,
        GB_P=0.5,
        GB_K=21,
    )

    c.DATASET = _node(
        ROOT="",
        NAME="",
        SOURCE_DOMAINS=(),
        TARGET_DOMAINS=(),
        NUM_LABELED=-1,
        NUM_SHOTS=-1,
        VAL_PERCENT=0.1,
        STL10_FOLD=-1,
        CIFAR_C_TYPE="",
        CIFAR_C_LEVEL=1,
        ALL_AS_UNLABELED=False,
    )

    c.DATALOADER = _node(NUM_WORKERS=4, K_TRANSFORMS=1, RETURN_IMG0=False)
    c.DATALOADER.TRAIN_X = _node(SAMPLER="RandomSampler", BATCH_SIZE=32, N_DOMAIN=0, N_INS=16)
    c.DATALOADER.TRAIN_U = _node(SAME_AS_X=True, SAMPLER="RandomSampler", BATCH_SIZE=32, N_DOMAIN=0, N_INS=16)
    c.DATALOADER.TEST = _node(SAMPLER="SequentialSampler", BATCH_SIZE=32)

    c.MODEL = _node(INIT_WEIGHTS="")
    c.MODEL.BACKBONE = _node(NAME="", PRETRAINED=True)
    c.MODEL.HEAD = _node(NAME="", HIDDEN_LAYERS=(), ACTIVATION="relu", BN=True, DROPOUT=0.0)

    c.OPTIM = _node(
        NAME="adam",
        LR=0.0003,
        WEIGHT_DECAY=5e-4,
        MOMENTUM=0.9,
        SGD_DAMPNING=0,  # sic: Dassl's spelling
        SGD_NESTEROV=False,
        RMSPROP_ALPHA=0.99,
        ADAM_BETA1=0.9,
        ADAM_BETA2=0.999,
        STAGED_LR=False,
        NEW_LAYERS=(),
        BASE_LR_MULT=0.1,
        LR_SCHEDULER="single_step",
        STEPSIZE=(-1,),  # -1 or 0: step size = MAX_EPOCH
        GAMMA=0.1,
        MAX_EPOCH=10,
        WARMUP_EPOCH=-1,  # > 0 enables warmup
        WARMUP_TYPE="linear",  # linear | constant
        WARMUP_CONS_LR=1e-5,
        WARMUP_MIN_LR=1e-5,
        WARMUP_RECOUNT=True,
    )

    c.TRAIN = _node(CHECKPOINT_FREQ=0, PRINT_FREQ=10, COUNT_ITER="train_x")

    c.TEST = _node(
        EVALUATOR="Classification",
        PER_CLASS_RESULT=False,
        COMPUTE_CMAT=False,
        NO_TEST=False,
        SPLIT="test",
        FINAL_MODEL="last_step",  # last_step | best_val
    )

    c.TRAINER = _node(NAME="")
    # Dassl's own trainers (domain adaptation, domain generalization, semi-supervised); kept for config parity.
    c.TRAINER.MCD = _node(N_STEP_F=4)
    c.TRAINER.MME = _node(LMDA=0.1)
    c.TRAINER.CDAC = _node(
        CLASS_LR_MULTI=10, RAMPUP_COEF=30, RAMPUP_ITRS=1000, TOPK_MATCH=5, P_THRESH=0.95, STRONG_TRANSFORMS=()
    )
    c.TRAINER.SE = _node(EMA_ALPHA=0.999, CONF_THRE=0.95, RAMPUP=300)
    c.TRAINER.M3SDA = _node(LMDA=0.5, N_STEP_F=4)
    c.TRAINER.DAEL = _node(WEIGHT_U=0.5, CONF_THRE=0.95, STRONG_TRANSFORMS=())
    c.TRAINER.CROSSGRAD = _node(EPS_F=1.0, EPS_D=1.0, ALPHA_F=0.5, ALPHA_D=0.5)
    c.TRAINER.DDAIG = _node(
        G_ARCH="", LMDA=0.3, CLAMP=False, CLAMP_MIN=-1.0, CLAMP_MAX=1.0, WARMUP=0, ALPHA=0.5
    )
    c.TRAINER.DAELDG = _node(WEIGHT_U=0.5, CONF_THRE=0.95, STRONG_TRANSFORMS=())
    c.TRAINER.DOMAINMIX = _node(TYPE="crossdomain", ALPHA=1.0, BETA=1.0)
    c.TRAINER.ENTMIN = _node(LMDA=1e-3)
    c.TRAINER.MEANTEACHER = _node(WEIGHT_U=1.0, EMA_ALPHA=0.999, RAMPUP=5)
    c.TRAINER.MIXMATCH = _node(WEIGHT_U=100.0, TEMP=2.0, MIXUP_BETA=0.75, RAMPUP=20000)
    c.TRAINER.FIXMATCH = _node(WEIGHT_U=1.0, CONF_THRE=0.95, STRONG_TRANSFORMS=())
    return c


_DEFAULT = _build_default()


def get_cfg_default() -> CfgNode:
    """Return a fresh, mutable copy of the default config (as ``dassl.config.get_cfg_default``)."""
    return _DEFAULT.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop the ``TRAINER.*`` sub-nodes of other trainers so that ``print(cfg)`` shows only what matters."""
    for key in list(cfg.TRAINER.keys()):
        if key == "NAME" or key == trainer.upper():
            continue
        cfg.TRAINER.pop(key, None)
