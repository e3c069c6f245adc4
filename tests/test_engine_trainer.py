"""The TrainerX loop end to end on a toy trainer and a toy dataset registered here: train.py's command line,
log.txt with Dassl's lines, checkpoints, best_val, eval-only, and a bit-exact resume after an interruption.

Classes are registered through ``quantprompt.engine.compat``, so these tests run against real Dassl too when it
is installed (the resume test needs the engine's RNG restore and is skipped under Dassl, saying why).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from quantprompt.engine import compat

if compat.BACKEND == "engine":
    from quantprompt.engine.trainer import TrainerXU as _TrainerXU
else:  # pragma: no cover - with Dassl installed
    from dassl.engine import TrainerXU as _TrainerXU

REPO = Path(__file__).resolve().parents[1]
CLASSNAMES = ["red", "green", "blue"]
COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def _load_train_module():
    if "train" in sys.modules and getattr(sys.modules["train"], "__file__", "") == str(REPO / "train.py"):
        return sys.modules["train"]
    spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module


def _write_images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        for label, color in enumerate(COLORS):
            for i in range(n):
                arr = np.clip(np.array(color)[None, None] + rng.normal(0, 50, (12, 12, 3)), 0, 255)
                path = root / "toy_colors" / split / f"{label}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr.astype(np.uint8)).save(path)


def _items(root: str, split: str) -> list:
    folder = os.path.join(root, "toy_colors", split)
    items = []
    for name in sorted(os.listdir(folder)):
        label = int(name.split("_")[0])
        items.append(compat.Datum(impath=os.path.join(folder, name), label=label, classname=CLASSNAMES[label]))
    return items


class ToyColors(compat.DatasetBase):
    dataset_dir = "toy_colors"

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        super().__init__(train_x=_items(root, "train"), val=_items(root, "val"), test=_items(root, "test"))


class ToyTrainer(compat.TrainerX):
    """CoOp's trainer shape: build_model registers (model, optim, sched); forward_backward steps the LR at the
    last batch of each epoch."""

    def build_model(self) -> None:
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, self.num_classes))
        self.model.to(self.device)
        self.optim = compat.build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = compat.build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compat.compute_accuracy(output, label)[0].item()}


class _Interrupted(Exception):
    pass


class ToyTrainerKilled(ToyTrainer):
    """Dies at the start of epoch KILL_AT (0-based), as a run killed right after saving epoch KILL_AT."""

    KILL_AT = 2

    def before_epoch(self) -> None:
        if self.epoch == self.KILL_AT:
            raise _Interrupted


class ToyColorsU(ToyColors):
    """With unlabelled data (train_u: the val images), for TrainerXU."""

    def __init__(self, cfg) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        compat.DatasetBase.__init__(self, train_x=_items(root, "train"), train_u=_items(root, "val"),
                                    test=_items(root, "test"))


class ToyTrainerXU(_TrainerXU):
    def build_model(self) -> None:
        ToyTrainer.build_model(self)
        self.seen_u = 0

    def forward_backward(self, batch_x, batch_u):
        image, label, image_u = self.parse_batch_train(batch_x, batch_u)
        self.seen_u += image_u.shape[0]
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


compat.DATASET_REGISTRY.register(ToyColors, force=True)
compat.DATASET_REGISTRY.register(ToyColorsU, force=True)
for _cls in (ToyTrainer, ToyTrainerKilled, ToyTrainerXU):
    compat.TRAINER_REGISTRY.register(_cls, force=True)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy_data")
    _write_images(root)
    return root


def _opts(epochs: int = 3, final_model: str = "last_step", **extra) -> list[str]:
    opts = {
        "DATASET.NAME": "ToyColors", "INPUT.SIZE": "(8, 8)", "DATALOADER.NUM_WORKERS": "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE": "4", "DATALOADER.TEST.BATCH_SIZE": "5", "OPTIM.NAME": "sgd",
        "OPTIM.LR": "0.05", "OPTIM.MAX_EPOCH": str(epochs), "OPTIM.LR_SCHEDULER": "cosine",
        "OPTIM.WARMUP_EPOCH": "1", "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": "1e-5",
        "TRAIN.PRINT_FREQ": "2", "TEST.FINAL_MODEL": final_model, "USE_CUDA": "False",
    }
    opts.update(extra)
    return [item for pair in opts.items() for item in pair]


def _cfg(train, root: Path, out: Path, trainer: str, **kw):
    args = train.build_parser().parse_args(
        # (--transforms takes several words: it goes before another flag, as the trailing opts are positional)
        ["--transforms", "random_resized_crop", "random_flip", "normalize", "--root", str(root), "--seed", "1",
         "--trainer", trainer, "--output-dir", str(out), *_opts(**kw)]
    )
    return train.setup_cfg(args)


def test_train_py_end_to_end_and_eval_only(data_root: Path, tmp_path: Path) -> None:
    train = _load_train_module()
    out = tmp_path / "output" / "seed1"
    argv = ["--transforms", "normalize", "--root", str(data_root), "--seed", "1", "--trainer", "ToyTrainer",
            "--output-dir", str(out), *_opts(epochs=4, **{"TRAIN.CHECKPOINT_FREQ": "2"})]
    train.cli(argv)

    log = (out / "log.txt").read_text()
    assert "Setting fixed seed" not in log  # printed before the log starts, as in CoOp
    for expected in ("** Arguments **", "** Config **", "** System info **", "Loading trainer: ToyTrainer",
                     "Loading dataset: ToyColors", "Loading evaluator: Classification",
                     "No checkpoint found, train from scratch", "Finish training", "Deploy the last-epoch model",
                     "Evaluate on the *test* set", "=> result", "* total: 12"):
        assert expected in log, expected
    lines = re.findall(
        r"^epoch \[(\d)/4\] batch \[(\d)/4\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
        r"loss (\d+\.\d{4}) \((\d+\.\d{4})\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr (\d\.\d{4}e[-+]\d\d) eta \d+:\d\d:\d\d$",
        log, flags=re.M,
    )
    assert [(e, b) for e, b, *_ in lines] == [(str(e), str(b)) for e in range(1, 5) for b in (2, 4)]
    lrs = [float(lr) for *_, lr in lines]
    assert lrs[0] == 1e-5 and lrs[2] == 0.05  # constant warmup, then the base LR
    assert float(lines[-1][3]) < float(lines[0][3])  # the epoch-average loss falls
    accuracy = float(re.findall(r"^\* accuracy: (\d+\.\d)%$", log, flags=re.M)[-1])
    assert accuracy >= 75.0
    assert re.search(r"^\* error: \d+\.\d%$", log, flags=re.M) and re.search(r"^\* macro_f1: \d+\.\d%$", log, re.M)
    assert re.search(r"^Elapsed: \d+:\d\d:\d\d$", log, flags=re.M)
    assert ("Initialize tensorboard" in log) != ("TensorBoard is not installed" in log)  # optional TensorBoard
    assert sorted(os.listdir(out / "model")) == ["checkpoint", "model.pth.tar-2", "model.pth.tar-4"]
    checkpoint = torch.load(out / "model" / "model.pth.tar-4", weights_only=True)
    assert {"state_dict", "epoch", "optimizer", "scheduler", "val_result"} <= set(checkpoint)
    assert checkpoint["epoch"] == 4 and checkpoint["val_result"] is None

    eval_out = tmp_path / "eval"
    train.cli(["--transforms", "normalize", "--root", str(data_root), "--seed", "1", "--trainer", "ToyTrainer",
               "--output-dir", str(eval_out), "--eval-only", "--model-dir", str(out), "--load-epoch", "4",
               *_opts(epochs=4)])
    eval_log = (eval_out / "log.txt").read_text()
    assert f"Load {out / 'model' / 'model.pth.tar-4'} to model (epoch=4" in eval_log
    assert "Evaluate on the *test* set" in eval_log and "Finish training" not in eval_log
    assert float(re.findall(r"^\* accuracy: (\d+\.\d)%$", eval_log, flags=re.M)[-1]) == accuracy

    with pytest.raises(FileNotFoundError, match="model.pth.tar-9"):
        train.cli(["--root", str(data_root), "--trainer", "ToyTrainer", "--output-dir", str(tmp_path / "e2"),
                   "--eval-only", "--model-dir", str(out), "--load-epoch", "9", *_opts()])
    assert not hasattr(sys.stdout, "console")  # main() handed stdout back


@pytest.mark.skipif(compat.BACKEND != "engine", reason="Dassl's checkpoints do not carry RNG state: resume is "
                    "only bit-exact with the built-in engine")
def test_interrupted_and_resumed_run_is_bit_exact(data_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    train = _load_train_module()
    extra = {"TRAIN.CHECKPOINT_FREQ": "1"}
    full = tmp_path / "full"
    cfg = _cfg(train, data_root, full, "ToyTrainer", epochs=4, final_model="best_val", **extra)
    compat.set_random_seed(cfg.SEED)
    compat.build_trainer(cfg).train()

    broken = tmp_path / "broken"
    cfg_killed = _cfg(train, data_root, broken, "ToyTrainerKilled", epochs=4, final_model="best_val", **extra)
    compat.set_random_seed(cfg_killed.SEED)
    with pytest.raises(_Interrupted):
        compat.build_trainer(cfg_killed).train()
    assert sorted(os.listdir(broken / "model"))[-1] == "model.pth.tar-2"

    cfg_resume = _cfg(train, data_root, broken, "ToyTrainer", epochs=4, final_model="best_val", **extra)
    compat.set_random_seed(cfg_resume.SEED)
    capsys.readouterr()
    compat.build_trainer(cfg_resume).train()
    out = capsys.readouterr().out
    assert f"Found checkpoint at {broken} (will resume training)" in out and "Previous epoch: 2" in out
    assert "epoch [1/4]" not in out and "epoch [3/4] batch [2/4]" in out

    for name in ("model.pth.tar-4", "model-best.pth.tar"):
        a = torch.load(full / "model" / name, weights_only=True)
        b = torch.load(broken / "model" / name, weights_only=True)
        assert a["epoch"] == b["epoch"] and a["val_result"] == b["val_result"]
        for key in a["state_dict"]:
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), (name, key)
        assert a["scheduler"]["_last_lr"] == b["scheduler"]["_last_lr"]


def test_progress_bar_only_on_a_terminal(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if compat.BACKEND != "engine":
        pytest.skip("the tqdm policy is the engine's (Dassl always draws a bar for evaluation)")
    from quantprompt.engine import trainer as engine_trainer
    from quantprompt.engine.utils import restore_stdout, setup_logger

    train = _load_train_module()
    cfg = _cfg(train, data_root, tmp_path / "tty", "ToyTrainer", epochs=1)
    trainer = compat.build_trainer(cfg)
    monkeypatch.setattr(engine_trainer, "stdout_is_tty", lambda: True)
    capsys.readouterr()
    try:
        setup_logger(cfg.OUTPUT_DIR)
        trainer.train()
    finally:
        restore_stdout()
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err  # the bar, on the terminal only
    log = (tmp_path / "tty" / "log.txt").read_text()
    assert "epoch [1/1] batch [2/4]" in log and "epoch 1/1:" not in log and "it/s" not in log


def test_trainer_base_bookkeeping_errors() -> None:
    from quantprompt.engine.trainer import TrainerBase

    base = TrainerBase()
    model = torch.nn.Linear(1, 1)
    base.register_model("m", model, None, None)
    with pytest.raises(KeyError, match="duplicate"):
        base.register_model("m", model)
    with pytest.raises(KeyError, match='"x"'):
        base.get_model_names("x")
    assert base.get_model_names() == ["m"] and base.get_model_names("m") == ["m"]
    base.set_model_mode("eval")
    assert not model.training
    with pytest.raises(KeyError, match="mode"):
        base.set_model_mode("infer")
    with pytest.raises(FloatingPointError, match="infinite or NaN"):
        base.model_backward(torch.tensor(float("nan"), requires_grad=True))

    class Early(TrainerBase):
        def __init__(self) -> None:
            self.register_model("m", model)

    with pytest.raises(AttributeError, match="super"):
        Early()
    with pytest.raises(ValueError, match=r"\[NoSuchTrainer\]"):
        cfg = compat.get_cfg_default()
        cfg.TRAINER.NAME = "NoSuchTrainer"
        compat.build_trainer(cfg)


@pytest.mark.parametrize(("count_iter", "batches"), [("train_x", 4), ("train_u", 2), ("smaller_one", 2)])
def test_trainer_xu_counts_iterations(data_root: Path, tmp_path: Path, count_iter: str, batches: int,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    train = _load_train_module()
    cfg = _cfg(train, data_root, tmp_path / "xu", "ToyTrainerXU", epochs=1,
               **{"DATASET.NAME": "ToyColorsU", "TRAIN.COUNT_ITER": count_iter, "TEST.NO_TEST": "True"})
    trainer = compat.build_trainer(cfg)
    capsys.readouterr()
    trainer.train()
    out = capsys.readouterr().out
    assert f"epoch [1/1] batch [{batches}/{batches}]" in out and "Evaluate" not in out
    assert trainer.seen_u == 4 * batches  # train_u (9 images, batch 4) restarts when exhausted
