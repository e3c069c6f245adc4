"""Read evaluation results out of ``log.txt`` files.

Three producers write the logs we read, and people compare across them, so one parser handles all:

* our engine (``quantprompt.engine``) and current Dassl.pytorch (>= 0.6.1, June 2022)::

      epoch [3/10] batch [5/20] time 0.101 (0.120) data 0.001 (0.002) loss 1.2345 (1.4000) lr 2.0000e-03 ...
      Finish training
      Deploy the last-epoch model
      Evaluate on the *test* set
      => result
      * total: 1,500
      * correct: 1,068
      * accuracy: 71.2%
      * error: 28.8%
      * macro_f1: 70.9%

* Dassl before 0.6.1, i.e. the logs written by the original CoOp / CoCoOp / MaPLe repositories::

      epoch [3/10][5/20]	time 0.101 (0.120)	data ...	eta 0:01:00	loss 1.2345 (1.4000)	lr 2.000000e-03
      Finished training
      Do evaluation on test set
      => result
      * accuracy: 71.20%   (two decimals; ``* macro_f1`` only from Oct 2021)

* eval-only runs (``--eval-only``, e.g. ``base2new/test_new``) that contain no training lines at all.

The *final* result of a run is, as in CoOp's ``parse_test_res.py``, the last ``* <keyword>: X%`` line after
the end-of-training signal ("Finish training" / "Finished training"); for an eval-only log (no training lines)
it is the last result block. Result blocks that appear during training (validation, or per-epoch test
evaluations with ``TEST.PER_EPOCH``) are kept in :attr:`LogInfo.evals` tagged with the epoch of the most
recent ``epoch [e/E]`` marker and with the split named by the preceding "Evaluate on the *<split>* set" line.
Our trainers' one-line per-epoch evaluations (``TEST.PER_EPOCH``)::

      per-epoch evaluation: epoch [3/10] base 80.12% new 70.05%

become one block per split (``base``, ``new``; ``test`` when not training on base classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

__all__ = ["EvalBlock", "LogInfo", "parse_log", "parse_log_text", "END_SIGNALS"]

END_SIGNALS = ("Finish training", "Finished training")

# epoch [3/10] batch [...]  (new Dassl / our engine)   or   epoch [3/10][5/20]  (old Dassl)
_EPOCH_RE = re.compile(r"\bepoch\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]", re.IGNORECASE)
# "Evaluate on the *test* set" (new), "Do evaluation on val set" / "Do evaluation on test set" (old)
_SPLIT_RES = (
    re.compile(r"^Evaluate on the \*?([\w.-]+)\*? set"),
    re.compile(r"^Do evaluation on ([\w.-]+) set"),
)
# * accuracy: 71.2%   * total: 1,500   * average: 70.3%
_METRIC_RE = re.compile(r"^\*\s*([A-Za-z_][\w ]*?)\s*:\s*(\S+?)\s*(%?)\s*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# Extra information some of our own trainers print; all optional.
_TRAINER_RE = re.compile(r"^Loading trainer:\s*(\S+)")
_DATASET_RE = re.compile(r"^Loading dataset:\s*(\S+)")
# Our trainers' per-epoch line (TEST.PER_EPOCH): "per-epoch evaluation: epoch [3/10] base 80.12% new 70.05%"
# (split names: base / new when training on base classes, else test). Also: "... test_new accuracy: 65.3%".
_PER_EPOCH_RE = re.compile(r"^per-epoch evaluation:\s*epoch\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]\s*(.*)$")
_PAIR_RE = re.compile(
    r"\*?([A-Za-z_][\w-]*)\*?(?:\s+(?:accuracy|acc))?\s*[:=]?\s*([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*%"
)


@dataclass
class EvalBlock:
    """One ``=> result`` block (or one compact per-epoch line).

    ``epoch`` is the 1-based epoch of the last ``epoch [e/E]`` marker seen before the block (``None`` before
    any training line); ``final`` is True for blocks after the end-of-training signal or in eval-only logs.
    """

    metrics: dict[str, float]
    split: Optional[str] = None
    epoch: Optional[int] = None
    final: bool = False
    line: int = 0


@dataclass
class LogInfo:
    """What one log.txt says. ``final`` is None when the run has no final result (unfinished or malformed)."""

    path: Optional[str]
    final: Optional[dict[str, float]]
    finished: bool
    eval_only: bool
    evals: list[EvalBlock] = field(default_factory=list)
    max_epoch: Optional[int] = None
    last_epoch: Optional[int] = None
    trainer: Optional[str] = None
    dataset: Optional[str] = None
    problems: list[str] = field(default_factory=list)

    def accuracy(self, keyword: str = "accuracy") -> Optional[float]:
        """The final value of ``keyword`` (CoOp's ``--keyword``), or None."""
        if self.final is None:
            return None
        return self.final.get(keyword)

    def per_epoch(self, split: Optional[str] = None, keyword: str = "accuracy") -> dict[int, float]:
        """``{epoch: value}`` of the evaluations logged during training; the last one per epoch wins.

        ``split=None`` takes every split except ``val``; otherwise only blocks whose split matches exactly.
        """
        out: dict[int, float] = {}
        for block in self.evals:
            if block.epoch is None or block.final or keyword not in block.metrics:
                continue
            if split is None and block.split == "val":
                continue
            if split is not None and block.split != split:
                continue
            out[block.epoch] = block.metrics[keyword]
        return dict(sorted(out.items()))

    def splits(self) -> list[str]:
        """The distinct split names of the per-epoch evaluations, in order of first appearance."""
        seen: list[str] = []
        for block in self.evals:
            if not block.final and block.epoch is not None and block.split and block.split not in seen:
                seen.append(block.split)
        return seen


def _to_number(text: str) -> Optional[float]:
    text = text.replace(",", "")
    if not _NUMBER_RE.match(text):
        return None
    return float(text)


def parse_log_text(text: str, path: Optional[str] = None, test_log: Optional[bool] = None) -> LogInfo:
    """Parse the text of a log. ``test_log`` forces eval-only (True) or training (False) semantics.

    With ``None`` a log is eval-only when it has no ``epoch [e/E]`` training line and no end-of-training
    signal, which is how ``--eval-only`` runs of Dassl, CoOp and our engine look.
    """
    lines = text.splitlines()
    problems: list[str] = []
    has_training_lines = False
    finished = False
    max_epoch: Optional[int] = None
    last_epoch: Optional[int] = None
    trainer = dataset = None
    split: Optional[str] = None
    blocks: list[EvalBlock] = []
    current: Optional[EvalBlock] = None

    def close_block() -> None:
        nonlocal current
        if current is not None:
            if not current.metrics:
                problems.append(f"line {current.line}: '=> result' block without any '* metric: value' line")
            else:
                blocks.append(current)
            current = None

    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line in END_SIGNALS:
            close_block()
            finished = True
            split = None
            continue
        pe = _PER_EPOCH_RE.match(line)
        if pe:
            close_block()
            has_training_lines = True
            epoch, max_epoch = int(pe.group(1)), int(pe.group(2))
            last_epoch = max(last_epoch or 0, epoch)
            pairs = _PAIR_RE.findall(pe.group(3))
            if not pairs:
                problems.append(f"line {lineno}: per-epoch evaluation without 'split value%' pairs")
            for name, value in pairs:
                blocks.append(EvalBlock({"accuracy": float(value)}, split=name, epoch=epoch, line=lineno))
            continue
        m = _EPOCH_RE.search(line)
        if m and not line.startswith("*"):
            close_block()
            has_training_lines = True
            last_epoch, max_epoch = int(m.group(1)), int(m.group(2))
            continue
        matched_split = False
        for rx in _SPLIT_RES:
            s = rx.match(line)
            if s:
                close_block()
                split = s.group(1)
                matched_split = True
                break
        if matched_split:
            continue
        if line.startswith("=> result"):
            close_block()
            current = EvalBlock(
                {}, split=split, epoch=None if finished else last_epoch, final=finished, line=lineno
            )
            continue
        if line.startswith("=> per-class result"):
            continue  # per-class lines are part of the same block; "* average" is kept as perclass metric
        if line.startswith("*") and current is not None:
            mm = _METRIC_RE.match(line)
            if mm is None:
                if not line.startswith("* class:"):
                    problems.append(f"line {lineno}: cannot read {line!r}")
                continue
            name = mm.group(1).strip().replace(" ", "_")
            value = _to_number(mm.group(2))
            if value is None:
                problems.append(f"line {lineno}: {name} value {mm.group(2)!r} is not a number")
                continue
            if name == "average":
                name = "perclass_accuracy"
            current.metrics[name] = value
            continue
        if current is not None and not line.startswith("*"):
            close_block()
        t = _TRAINER_RE.match(line)
        if t:
            trainer = t.group(1)
        d = _DATASET_RE.match(line)
        if d:
            dataset = d.group(1)
    close_block()

    eval_only = (not has_training_lines and not finished) if test_log is None else bool(test_log)
    final: Optional[dict[str, float]] = None
    if eval_only:
        for block in blocks:
            block.final = True
        if blocks:
            final = dict(blocks[-1].metrics)
    else:
        finals = [b for b in blocks if b.final]
        if finals:
            final = dict(finals[-1].metrics)
    if final is not None and "accuracy" not in final:
        problems.append("final result block has no '* accuracy' line")
    return LogInfo(
        path=path,
        final=final,
        finished=finished or eval_only,
        eval_only=eval_only,
        evals=blocks,
        max_epoch=max_epoch,
        last_epoch=last_epoch,
        trainer=trainer,
        dataset=dataset,
        problems=problems,
    )


def parse_log(path: Union[str, Path], test_log: Optional[bool] = None) -> LogInfo:
    """Parse one log file. Unreadable or binary files give a LogInfo with a problem, never an exception."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        return LogInfo(
            path=str(p),
            final=None,
            finished=False,
            eval_only=False,
            problems=[f"cannot read {p}: {err.strerror or err}"],
        )
    if b"\x00" in data:
        return LogInfo(
            path=str(p),
            final=None,
            finished=False,
            eval_only=False,
            problems=[f"{p} is not a text log (binary content)"],
        )
    text = data.decode("utf-8", errors="replace")
    return parse_log_text(text, path=str(p), test_log=test_log)
