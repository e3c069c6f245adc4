"""Dassl's trainer classes (``TrainerBase``, ``SimpleTrainer``, ``TrainerX``, ``TrainerXU``) and ``TRAINER_REGISTRY``.

CoOp/CoCoOp/MaPLe-style trainers subclass :class:`TrainerX`, override ``build_model`` / ``forward_backward`` /
(optionally) ``load_model``, and get from here: the epoch loop with its hooks, the printed progress lines
(``epoch [e/E] batch [i/N] time ... data ... loss ... acc ... lr ... eta ...``), evaluation
(``Evaluate on the *test* set`` + the evaluator's block), checkpoints with Dassl's names, resume, and optional
TensorBoard scalars. Names, call order, printed text and files follow Dassl.pytorch.

Differences from Dassl, all on purpose:

* the device is CUDA only when available *and* ``USE_CUDA``; CPU otherwise (Dassl assumes a GPU);
* a tqdm bar only when stdout is a terminal (logs get the plain lines only);
* TensorBoard is optional: without the ``tensorboard`` package, ``write_scalar`` is a no-op (one notice);
* checkpoints also carry ``rng_state`` (Python, NumPy, torch) and ``best_result``, restored on resume, so a run
  interrupted after epoch k and resumed ends bit-identical (on CPU) to an uninterrupted one;
* the default ``build_model`` (Dassl's ``SimpleNet`` over its backbone zoo) is not provided: override it.
"""

from __future__ import annotations

import datetime
import os.path as osp
import sys
import time
from collections import OrderedDict
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from quantprompt.engine.checkpoint import (
    get_rng_state,
    load_checkpoint,
    resume_models,
    save_models,
    set_rng_state,
)
from quantprompt.engine.evaluator import build_evaluator
from quantprompt.engine.registry import Registry
from quantprompt.engine.utils import (
    AverageMeter,
    MetricMeter,
    check_availability,
    mkdir_if_missing,
    tolist_if_not,
)

__all__ = [
    "TRAINER_REGISTRY",
    "SimpleTrainer",
    "TrainerBase",
    "TrainerX",
    "TrainerXU",
    "build_trainer",
    "get_rng_state",
    "set_rng_state",
    "stdout_is_tty",
]

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: Any) -> TrainerBase:
    """Instantiate the trainer registered as ``cfg.TRAINER.NAME`` (its ``__init__`` builds data and model)."""
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


def stdout_is_tty() -> bool:
    """True when stdout (through a log tee, if any) is an interactive terminal: the only case for a tqdm bar."""
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # closed or detached stream
        return False


class TrainerBase:
    """Holds the registered models with their optimizers and schedulers, and runs the generic epoch loop."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Optional[torch.optim.Optimizer]] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer: Any = None

    # ----------------------------------------------------------------- models
    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim: Any = None,
                       sched: Any = None) -> None:
        """Register ``model`` (with its optimizer and scheduler) under ``name``: it is then saved, resumed,
        loaded, switched train/eval and stepped by the loop. Its checkpoints go to ``<output>/<name>/``."""
        for attr in ("_models", "_optims", "_scheds"):
            if self.__dict__.get(attr) is None:
                raise AttributeError(f"Cannot register a model before super().__init__() has run ({attr} is unset)")
        if name in self._models:
            raise KeyError(f'Found duplicate model names: a model named "{name}" is already registered')
        self._models[name] = model  # type: ignore[assignment]
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Union[str, list[str], None] = None) -> list[str]:
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            if name not in names_real:
                raise KeyError(f'No model registered as "{name}"; registered: {names_real}')
        return names

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Optional[float] = None,
                   model_name: str = "") -> None:
        """Save every registered model to ``directory/<name>/`` (``model.pth.tar-<epoch + 1>`` or ``model_name``)."""
        save_models(self, epoch, directory, is_best=is_best, val_result=val_result, model_name=model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory/<name>/checkpoint``; returns the epoch to start at
        (0, with 'No checkpoint found, train from scratch', when some model has no folder)."""
        return resume_models(self, directory)

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model-best.pth.tar`` (or ``model.pth.tar-<epoch>``) of every registered model from ``directory``."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given (ignore this if it's done on purpose)")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f"No model at {model_path}")
            checkpoint = load_checkpoint(model_path)
            val_result = checkpoint.get("val_result")
            shown = f"{val_result:.1f}" if isinstance(val_result, (int, float)) else str(val_result)
            print(f"Load {model_path} to {name} (epoch={checkpoint['epoch']}, val_result={shown})")
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode: str = "train", names: Union[str, list[str], None] = None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f"set_model_mode: mode must be 'train', 'test' or 'eval', got {mode!r}")

    def update_lr(self, names: Union[str, list[str], None] = None) -> None:
        """Step the schedulers once (CoOp's trainers call this after an epoch's last batch)."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    # ----------------------------------------------------------------- TensorBoard (optional)
    def init_writer(self, log_dir: str) -> None:
        """Open a TensorBoard writer in ``log_dir`` when the ``tensorboard`` package is installed."""
        if self.__dict__.get("_writer") is not None:
            return
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            # once per run, so that every log.txt says why it has no curves
            print("TensorBoard is not installed: training curves are not written (pip install tensorboard)")
            self._writer = None
            return
        from torch.utils.tensorboard import SummaryWriter

        mkdir_if_missing(log_dir)
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self.__dict__.get("_writer") is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: Any, global_step: Optional[int] = None) -> None:
        if self.__dict__.get("_writer") is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ----------------------------------------------------------------- loop
    def train(self, start_epoch: int, max_epoch: int) -> None:  # type: ignore[override]
        """Generic training loop: before_train, then per epoch before_epoch / run_epoch / after_epoch, after_train."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self) -> Any:
        raise NotImplementedError

    def parse_batch_train(self, batch: Any) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: Any) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: Any) -> Any:
        raise NotImplementedError

    def model_inference(self, input: Any) -> Any:
        raise NotImplementedError

    def model_zero_grad(self, names: Union[str, list[str], None] = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: Union[str, list[str], None] = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names: Union[str, list[str], None] = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Builds data (``DataManager``), model and evaluator from ``cfg``; implements train/test bookkeeping."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -float("inf")

    def check_cfg(self, cfg: Any) -> None:
        """Hook for a trainer to validate its config early (raise naming the key)."""
        if cfg.TEST.FINAL_MODEL not in ("last_step", "best_val"):
            raise ValueError(f"TEST.FINAL_MODEL must be 'last_step' or 'best_val', got {cfg.TEST.FINAL_MODEL!r}")
        if cfg.TRAIN.PRINT_FREQ < 1:
            raise ValueError(f"TRAIN.PRINT_FREQ must be >= 1, got {cfg.TRAIN.PRINT_FREQ}")

    def build_data_loader(self) -> None:
        """Create the loaders and dataset attributes (``train_loader_x``, ``val_loader``, ``test_loader``,
        ``num_classes``, ``lab2cname``, ``dm``) from ``DataManager(self.cfg)``."""
        from quantprompt.engine.data import DataManager

        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u  # optional, may be None
        self.val_loader = dm.val_loader  # optional, may be None
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}.build_model() is not implemented: the built-in engine has no Dassl backbone "
            "zoo (SimpleNet); a trainer builds its model, optimizer and scheduler and calls self.register_model()"
        )

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME if self.cfg.RESUME else self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False

        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` ('val' when a val loader exists, else 'test'); returns the first metric (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"  # in case val_loader is None
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")

        batches: Any = data_loader
        if stdout_is_tty():
            from tqdm import tqdm

            batches = tqdm(data_loader, leave=False, dynamic_ncols=True)
        for batch in batches:
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input: Any) -> Any:
        return self.model(input)

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: Union[str, list[str], None] = None) -> float:
        name = self.get_model_names(names)[0]
        optim = self._optims[name]
        if optim is None:
            raise ValueError(f'Model "{name}" was registered without an optimizer, so it has no learning rate')
        return optim.param_groups[0]["lr"]

    # ---- shared by TrainerX / TrainerXU
    def _log_progress(self, batch_time: AverageMeter, data_time: AverageMeter, losses: MetricMeter,
                      bar: Any = None) -> None:
        meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
        only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
        if meet_freq or only_few_batches:
            nb_remain = self.num_batches - self.batch_idx - 1
            nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
            eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
            info = [
                f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {self.get_current_lr():.4e}",
                f"eta {eta}",
            ]
            line = " ".join(info)
            if bar is not None:
                bar.write(line, file=sys.stdout)
            else:
                print(line)

        n_iter = self.epoch * self.num_batches + self.batch_idx
        for name, meter in losses.meters.items():
            self.write_scalar("train/" + name, meter.avg, n_iter)
        self.write_scalar("train/lr", self.get_current_lr(), n_iter)

    def _progress_bar(self) -> Any:
        if not stdout_is_tty():
            return None
        from tqdm import tqdm

        return tqdm(total=self.num_batches, desc=f"epoch {self.epoch + 1}/{self.max_epoch}", leave=False,
                    dynamic_ncols=True, file=sys.stderr)


class TrainerX(SimpleTrainer):
    """A trainer using labelled data only (``train_loader_x``): what CoOp, CoCoOp and MaPLe subclass."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        bar = self._progress_bar()
        try:
            end = time.time()
            for batch_idx, batch in enumerate(self.train_loader_x):
                self.batch_idx = batch_idx
                data_time.update(time.time() - end)
                loss_summary = self.forward_backward(batch)
                batch_time.update(time.time() - end)
                losses.update(loss_summary)
                if bar is not None:
                    bar.update(1)
                self._log_progress(batch_time, data_time, losses, bar)
                end = time.time()
        finally:
            if bar is not None:
                bar.close()

    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)


class TrainerXU(SimpleTrainer):
    """A trainer using labelled and unlabelled data (``train_loader_x`` and ``train_loader_u``), as in Dassl."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        if self.train_loader_u is None:
            raise ValueError(f"{type(self).__name__} needs unlabelled data (train_u), but the dataset has none")
        len_x, len_u = len(self.train_loader_x), len(self.train_loader_u)
        count_iter = self.cfg.TRAIN.COUNT_ITER
        if count_iter == "train_x":
            self.num_batches = len_x
        elif count_iter == "train_u":
            self.num_batches = len_u
        elif count_iter == "smaller_one":
            self.num_batches = min(len_x, len_u)
        else:
            raise ValueError(f"TRAIN.COUNT_ITER must be 'train_x', 'train_u' or 'smaller_one', got {count_iter!r}")

        iter_x, iter_u = iter(self.train_loader_x), iter(self.train_loader_u)
        bar = self._progress_bar()
        try:
            end = time.time()
            for batch_idx in range(self.num_batches):
                self.batch_idx = batch_idx
                try:
                    batch_x = next(iter_x)
                except StopIteration:
                    iter_x = iter(self.train_loader_x)
                    batch_x = next(iter_x)
                try:
                    batch_u = next(iter_u)
                except StopIteration:
                    iter_u = iter(self.train_loader_u)
                    batch_u = next(iter_u)
                data_time.update(time.time() - end)
                loss_summary = self.forward_backward(batch_x, batch_u)  # type: ignore[call-arg]
                batch_time.update(time.time() - end)
                losses.update(loss_summary)
                if bar is not None:
                    bar.update(1)
                self._log_progress(batch_time, data_time, losses, bar)
                end = time.time()
        finally:
            if bar is not None:
                bar.close()

    def parse_batch_train(self, batch_x: dict[str, Any], batch_u: dict[str, Any]) -> tuple[Any, Any, Any]:  # type: ignore[override]
        return batch_x["img"].to(self.device), batch_x["label"].to(self.device), batch_u["img"].to(self.device)
