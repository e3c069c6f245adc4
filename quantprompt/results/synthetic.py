"""Synthetic ``log.txt`` files in the formats the parser reads, for tests and demos.

Styles:

* ``"dassl"`` -- current Dassl.pytorch and our engine (``epoch [e/E] batch [b/B] ...``, ``Finish training``,
  ``Evaluate on the *test* set``, one decimal);
* ``"coop"`` -- the original CoOp / CoCoOp / MaPLe repositories on Dassl before v0.6.1 (tab-separated
  ``epoch [e/E][b/B]`` lines, ``Finished training``, ``Do evaluation on test set``, two decimals);
* ``"eval"`` -- an ``--eval-only`` run (loads a checkpoint, one result block, no training lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ["log_text", "write_log", "result_block"]

_HEADER = """Setting fixed seed: {seed}
***************
** Arguments **
***************
backbone:
config_file: configs/trainers/{trainer}/{cfg}.yaml
dataset_config_file: configs/datasets/{dataset}.yaml
eval_only: {eval_only}
output_dir: {output}
seed: {seed}
trainer: {trainer}
************
** Config **
************
DATASET:
  NAME: {dataset}
  NUM_SHOTS: 16
OPTIM:
  MAX_EPOCH: {max_epoch}
Loading trainer: {trainer}
Loading dataset: {dataset}
Building transform_train
Building transform_test
Loading CLIP (backbone: ViT-B/16)
Building custom CLIP
Turning off gradients in both the image and the text encoder
"""


def result_block(
    accuracy: float, style: str = "dassl", total: int = 1500, split: str = "test", macro_f1: bool = True
) -> str:
    """One evaluation block exactly as Dassl's evaluator prints it (numbers consistent with ``accuracy``)."""
    correct = int(round(total * accuracy / 100.0))
    dec = 2 if style == "coop" else 1
    head = f"Do evaluation on {split} set" if style == "coop" else f"Evaluate on the *{split}* set"
    lines = [
        head,
        "=> result",
        f"* total: {total:,}",
        f"* correct: {correct:,}",
        f"* accuracy: {accuracy:.{dec}f}%",
        f"* error: {100 - accuracy:.{dec}f}%",
    ]
    if macro_f1:
        lines.append(f"* macro_f1: {max(accuracy - 0.7, 0):.{dec}f}%")
    return "\n".join(lines) + "\n"


def _epoch_lines(epoch: int, max_epoch: int, style: str, batches: int = 2) -> str:
    out = []
    for b in range(1, batches + 1):
        if style == "coop":
            out.append(
                f"epoch [{epoch}/{max_epoch}][{b}/{batches}]\ttime 0.120 (0.150)\tdata 0.001 (0.010)\t"
                f"eta 0:00:{10 + b:02d}\tloss 1.2345 (1.3456)\tacc 62.5000 (60.1000)\tlr 2.000000e-03"
            )
        else:
            out.append(
                f"epoch [{epoch}/{max_epoch}] batch [{b}/{batches}] time 0.120 (0.150) data 0.001 (0.010) "
                f"loss 1.2345 (1.3456) acc 62.5000 (60.1000) lr 2.0000e-03 eta 0:00:{10 + b:02d}"
            )
    return "\n".join(out) + "\n"


def log_text(
    accuracy: Optional[float],
    style: str = "dassl",
    *,
    trainer: str = "CoOp",
    dataset: str = "Caltech101",
    cfg: str = "vit_b16",
    seed: int = 1,
    max_epoch: int = 3,
    finished: bool = True,
    per_epoch: Optional[dict[str, Sequence[float]]] = None,
    stop_epoch: Optional[int] = None,
    macro_f1: bool = True,
) -> str:
    """Text of a whole log.

    ``per_epoch``: ``{split: [acc at epoch 1, ...]}``, evaluations printed after each epoch (TEST.PER_EPOCH).
    ``finished=False``: the run stops after ``stop_epoch`` (default: half way) with no final result.
    """
    eval_only = style == "eval"
    text = _HEADER.format(
        seed=seed,
        trainer=trainer,
        cfg=cfg,
        dataset=dataset,
        max_epoch=max_epoch,
        eval_only=eval_only,
        output=f"output/{dataset}/seed{seed}",
    )
    if eval_only:
        text += (
            f'Loading weights to prompt_learner from "output/model/prompt_learner/model.pth.tar-{max_epoch}" '
            f"(epoch = {max_epoch})\n"
        )
        if accuracy is not None:
            text += result_block(accuracy, "dassl", macro_f1=macro_f1)
        return text
    text += "No checkpoint found, train from scratch\n"
    last = max_epoch if finished else (stop_epoch if stop_epoch is not None else max(1, max_epoch // 2))
    for e in range(1, last + 1):
        text += _epoch_lines(e, max_epoch, style)
        for split, accs in (per_epoch or {}).items():
            text += result_block(accs[e - 1], style, split=split, macro_f1=macro_f1)
    if not finished:
        return text
    text += f"Checkpoint saved to output/prompt_learner/model.pth.tar-{max_epoch}\n"
    text += "Finished training\n" if style == "coop" else "Finish training\n"
    text += "Deploy the last-epoch model\n"
    if accuracy is not None:
        text += result_block(accuracy, style, macro_f1=macro_f1)
    text += "Elapsed: 0:01:23\n"
    return text


def write_log(run_dir: Union[str, Path], accuracy: Optional[float], style: str = "dassl", **kwargs) -> Path:
    """Write ``run_dir/log.txt`` (creating folders) and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "log.txt"
    path.write_text(log_text(accuracy, style, **kwargs))
    return path
