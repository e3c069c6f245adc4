"""The classification evaluator, printing Dassl's result block that CoOp's log parsers read::

    => result
    * total: 1,000
    * correct: 712
    * accuracy: 71.2%
    * error: 28.8%
    * macro_f1: 70.9%
"""

from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Any, Optional, Sequence

from quantprompt.engine.registry import Registry
from quantprompt.engine.utils import check_availability, mkdir_if_missing

__all__ = ["EVALUATOR_REGISTRY", "Classification", "EvaluatorBase", "build_evaluator"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")


class EvaluatorBase:
    """Accumulates (model output, ground truth) batches with ``process`` and summarizes them in ``evaluate``."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: Any, gt: Any) -> None:
        raise NotImplementedError

    def evaluate(self) -> OrderedDict[str, float]:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error and macro-F1 (percent), plus per-class accuracy when ``TEST.PER_CLASS_RESULT``."""

    def __init__(self, cfg: Any, lab2cname: Optional[dict[int, str]] = None, **kwargs: Any) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res: Optional[defaultdict[int, list[int]]] = None
        if cfg.TEST.PER_CLASS_RESULT:
            if lab2cname is None:
                raise ValueError("TEST.PER_CLASS_RESULT=True needs lab2cname (label -> class name) for the evaluator")
            self._per_class_res = defaultdict(list)
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        if self._per_class_res is not None:
            self._per_class_res = defaultdict(list)

    def process(self, mo: Any, gt: Any) -> None:
        """``mo``: logits (batch x classes); ``gt``: labels (batch)."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.detach().cpu().tolist())
        self._y_pred.extend(pred.detach().cpu().tolist())
        if self._per_class_res is not None:
            for label, match in zip(gt.detach().cpu().tolist(), matches.detach().cpu().tolist()):
                self._per_class_res[int(label)].append(int(match))

    def evaluate(self) -> OrderedDict[str, float]:
        """Print the result block and return {"accuracy", "error_rate", "macro_f1"[, "perclass_accuracy"]}."""
        import numpy as np

        if self._total == 0:
            raise RuntimeError("the evaluator saw no samples: the evaluation data loader is empty")
        results: OrderedDict[str, float] = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc  # the first value is what trainer.test() returns
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            assert self._lab2cname is not None
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {total:,}\t"
                    f"correct: {correct:,}\t"
                    f"acc: {class_acc:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT:
            import torch
            from sklearn.metrics import confusion_matrix

            cmat = confusion_matrix(self._y_true, self._y_pred, normalize="true")
            mkdir_if_missing(self.cfg.OUTPUT_DIR)
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(torch.from_numpy(cmat), save_path)  # a tensor, not a pickled numpy array
            print(f"Confusion matrix is saved to {save_path}")

        return results


def macro_f1_score(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Macro F1 over the labels present in ``y_true``, as ``sklearn.metrics.f1_score(y_true, y_pred,
    average="macro", labels=np.unique(y_true))`` (equal to it; tests/test_engine_evaluator.py checks).

    Computed here because importing ``sklearn.metrics`` costs every evaluating process about 1.4 s, about a
    tenth of a demo run (``python bench/demo.py``): F1 per label is 2 TP / (2 TP + FP + FN), 0 when TP is 0.
    """
    import numpy as np

    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    labels = np.unique(true)
    tp = np.array([np.sum((true == lab) & (pred == lab)) for lab in labels], dtype=np.float64)
    fp = np.array([np.sum((true != lab) & (pred == lab)) for lab in labels], dtype=np.float64)
    fn = np.array([np.sum((true == lab) & (pred != lab)) for lab in labels], dtype=np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def build_evaluator(cfg: Any, **kwargs: Any) -> EvaluatorBase:
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR``."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
