"""Find the runs of an output tree and say which experiment each belongs to.

Layouts (the path parts in front of the ones shown do not matter, so the root can be ``output/`` or any folder
above or inside it):

* base-to-new (CoOp/CoCoOp/MaPLe ``base2new_*.sh``):
  ``base2new/<phase>/<dataset>/shots_<K>/<trainer>/<cfg>/seed<N>/log.txt`` with phase ``train_base`` (its
  final test is on the base classes), ``test_new`` and optionally ``test_base`` (MaPLe's
  ``reproduce_maple.sh``; when present it is preferred over ``train_base`` for the base accuracy).
* cross-dataset and domain generalization evaluations (``xd_test.sh``, CoOp's ``eval.sh``):
  ``evaluation/<trainer>/<cfg>_<K>shots[/<variant>]/<dataset>/seed<N>/log.txt``; the source runs they load are
  in the training layout below (``imagenet/<trainer>/<cfg>_<K>shots/seed<N>``).
* training / few-shot (CoOp's ``main.sh``, ``xd_train.sh``):
  ``<dataset>/<trainer>/<cfg>_<K>shots[/<variant>]/seed<N>/log.txt``, e.g.
  ``caltech101/CoOp/rn50_16shots/nctx16_cscFalse_ctpend/seed1``.
* few-shot, our scripts' variant mirroring base2new: ``fewshot/<dataset>/shots_<K>/<trainer>/<cfg>/seed<N>``.
* zero-shot (CoOp's ``zeroshot.sh``): ``<ZeroshotCLIP|ZSCLIP...>/<cfg>/<dataset>/log.txt`` (no seed folder).

Dassl never overwrites a log: a resumed run writes ``log.txt-<timestamp>`` beside ``log.txt``; the newest file
with a final result is used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .logs import LogInfo, parse_log

__all__ = ["Run", "scan", "classify_run_dir", "find_logs", "SEED_RE", "is_zeroshot"]

SEED_RE = re.compile(r"^seed(\d+)$")
_SHOTS_DIR_RE = re.compile(r"^shots_(\d+)$")
_CFG_SHOTS_RE = re.compile(r"^(.+)_(\d+)shots$")
_LOG_RE = re.compile(r"^log\.txt(-.+)?$")


@dataclass
class Run:
    """One run directory and where it sits in the experiment grid."""

    setting: str  # "base2new" | "evaluation" | "train" | "fewshot" | "zeroshot"
    dataset: str
    trainer: str
    cfg: str
    seed: Optional[int]
    path: Path
    phase: Optional[str] = None  # base2new only: train_base | test_base | test_new
    shots: Optional[int] = None
    log_path: Optional[Path] = None
    log: Optional[LogInfo] = None

    @property
    def where(self) -> str:
        return str(self.path)


def is_zeroshot(trainer: str) -> bool:
    """Zero-shot CLIP learns nothing (size 0) and has no shots."""
    t = trainer.lower()
    return "zeroshot" in t or t in {"zsclip", "clip"}


def find_logs(run_dir: Union[str, Path]) -> list[Path]:
    """All ``log.txt`` / ``log.txt-<timestamp>`` files of a run, oldest first (Dassl's timestamps sort)."""
    d = Path(run_dir)
    try:
        names = [n for n in os.listdir(d) if _LOG_RE.match(n) and (d / n).is_file()]
    except OSError:
        return []
    names.sort(key=lambda n: (n != "log.txt", n))
    return [d / n for n in names]


def _pick_log(run_dir: Path, test_log: Optional[bool]) -> tuple[Optional[Path], Optional[LogInfo]]:
    logs = find_logs(run_dir)
    if not logs:
        return None, None
    parsed = [(p, parse_log(p, test_log=test_log)) for p in logs]
    for p, info in reversed(parsed):
        if info.final is not None:
            return p, info
    return parsed[-1]


def classify_run_dir(path: Path) -> Optional[Run]:
    """Place one run directory in the layouts above; None when it fits none of them."""
    parts = path.parts
    seed_m = SEED_RE.match(parts[-1]) if parts else None
    if seed_m is None:
        if len(parts) >= 3 and is_zeroshot(parts[-3]):
            return Run("zeroshot", dataset=parts[-1], trainer=parts[-3], cfg=parts[-2], seed=None, path=path)
        return None
    seed = int(seed_m.group(1))
    q = list(parts[:-1])

    def last_index(name: str) -> int:
        return len(q) - 1 - q[::-1].index(name)

    if "base2new" in q:
        i = last_index("base2new")
        rest = q[i + 1 :]
        if len(rest) >= 5 and _SHOTS_DIR_RE.match(rest[2]):
            return Run(
                "base2new",
                dataset=rest[1],
                trainer=rest[3],
                cfg="/".join(rest[4:]),
                seed=seed,
                path=path,
                phase=rest[0],
                shots=int(_SHOTS_DIR_RE.match(rest[2]).group(1)),
            )
        return None
    if "evaluation" in q:
        i = last_index("evaluation")
        rest = q[i + 1 :]
        if len(rest) >= 3:
            cfg = "/".join(rest[1:-1])
            m = _CFG_SHOTS_RE.match(rest[1])
            return Run(
                "evaluation",
                dataset=rest[-1],
                trainer=rest[0],
                cfg=cfg,
                seed=seed,
                path=path,
                shots=int(m.group(2)) if m else None,
            )
        return None
    if "fewshot" in q:
        i = last_index("fewshot")
        rest = q[i + 1 :]
        if len(rest) >= 4 and _SHOTS_DIR_RE.match(rest[1]):
            return Run(
                "fewshot",
                dataset=rest[0],
                trainer=rest[2],
                cfg="/".join(rest[3:]),
                seed=seed,
                path=path,
                shots=int(_SHOTS_DIR_RE.match(rest[1]).group(1)),
            )
        return None
    for j in range(len(q) - 1, 1, -1):
        m = _CFG_SHOTS_RE.match(q[j])
        if m:
            return Run(
                "train",
                dataset=q[j - 2],
                trainer=q[j - 1],
                cfg="/".join(q[j:]),
                seed=seed,
                path=path,
                shots=int(m.group(2)),
            )
    return None


def scan(root: Union[str, Path], test_log: Optional[bool] = None) -> tuple[list[Run], list[str]]:
    """Walk ``root`` and return (runs, warnings).

    A run is a ``seed<N>`` folder (or a zero-shot dataset folder) holding a log. Seed folders without any log
    and logs in folders that fit no layout become warnings; nothing raises for a broken tree.
    """
    root = Path(root)
    warnings: list[str] = []
    if not root.is_dir():
        return [], [f"{root}: not a directory"]
    runs: list[Run] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        d = Path(dirpath)
        has_log = any(_LOG_RE.match(f) for f in filenames)
        is_seed = SEED_RE.match(d.name) is not None
        if not has_log and not is_seed:
            continue
        abs_d = d.resolve()
        run = classify_run_dir(abs_d)
        if run is None:
            if has_log:
                warnings.append(
                    f"{d}: log in a folder that fits no known layout (see quantprompt.results.tree); skipped"
                )
            continue
        run.path = d
        if is_seed:
            dirnames[:] = []  # checkpoints etc. below a seed folder are not runs
        run.log_path, run.log = _pick_log(d, test_log)
        runs.append(run)
    return runs, warnings
