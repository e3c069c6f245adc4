"""Classification evaluator prints Dassl's result block with the right numbers; compute_accuracy as Dassl."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quantprompt.engine.config import get_cfg_default
from quantprompt.engine.evaluator import Classification, build_evaluator
from quantprompt.engine.metrics import compute_accuracy


def _logits(preds: list[int], n_classes: int) -> torch.Tensor:
    out = torch.zeros(len(preds), n_classes)
    out[torch.arange(len(preds)), torch.tensor(preds)] = 1.0
    return out


def test_result_block_numbers_and_lines(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_cfg_default()
    evaluator = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog", 2: "owl"})
    assert isinstance(evaluator, Classification)
    # 1,200 samples in two batches; 900 correct.
    labels = torch.tensor([0, 1, 2] * 400)
    preds = labels.clone()
    preds[:300] = (preds[:300] + 1) % 3
    evaluator.process(_logits(preds[:700].tolist(), 3), labels[:700])
    evaluator.process(_logits(preds[700:].tolist(), 3), labels[700:])
    capsys.readouterr()
    results = evaluator.evaluate()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "=> result",
        "* total: 1,200",
        "* correct: 900",
        "* accuracy: 75.0%",
        "* error: 25.0%",
        f"* macro_f1: {results['macro_f1']:.1f}%",
    ]
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == 75.0 and results["error_rate"] == 25.0
    # each class: 100 of its 400 predicted as the next class -> precision = recall = 0.75
    assert results["macro_f1"] == pytest.approx(75.0)
    evaluator.reset()
    evaluator.process(_logits([1], 3), torch.tensor([1]))
    assert evaluator.evaluate()["accuracy"] == 100.0


def test_per_class_result_and_confusion_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = Classification(cfg, lab2cname={0: "cat", 1: "dog"})
    evaluator.process(_logits([0, 0, 1, 0], 2), torch.tensor([0, 0, 1, 1]))
    capsys.readouterr()
    results = evaluator.evaluate()
    out = capsys.readouterr().out.splitlines()
    assert out[6:] == [
        "=> per-class result",
        "* class: 0 (cat)\ttotal: 2\tcorrect: 2\tacc: 100.0%",
        "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%",
        "* average: 75.0%",
        f"Confusion matrix is saved to {tmp_path / 'cmat.pt'}",
    ]
    assert results["perclass_accuracy"] == 75.0
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    assert torch.allclose(cmat, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=cmat.dtype))


def test_evaluator_errors() -> None:
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(cfg)
    with pytest.raises(RuntimeError, match="no samples"):
        Classification(get_cfg_default()).evaluate()
    cfg = get_cfg_default()
    cfg.TEST.EVALUATOR = "Retrieval"
    with pytest.raises(ValueError, match=r"\[Retrieval\]"):
        build_evaluator(cfg)


def test_compute_accuracy_topk() -> None:
    output = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 2, 0, 0])
    top1, top2 = compute_accuracy(output, target, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == 50.0 and top2.item() == 75.0
    assert compute_accuracy((output, None), target)[0].item() == 50.0
    with pytest.raises(ValueError, match="more classes"):
        compute_accuracy(output, target, topk=(5,))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_equals_sklearn(seed: int) -> None:
    import numpy as np
    from sklearn.metrics import f1_score

    from quantprompt.engine.evaluator import macro_f1_score

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 12, size=300).tolist()
    y_pred = [t if rng.uniform() < 0.4 else int(rng.integers(0, 15)) for t in y_true]  # some labels never true
    y_pred[:5] = [99] * 5  # and a predicted label outside the true ones
    expected = f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert macro_f1_score([0, 1, 1], [0, 1, 1]) == 1.0
    assert macro_f1_score([0, 0], [1, 1]) == 0.0
