"""Log parsing: our engine / current Dassl, the original CoOp/MaPLe repositories' logs, eval-only, broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantprompt.results.logs import parse_log, parse_log_text
from quantprompt.results.synthetic import log_text
from quantprompt.results.tree import classify_run_dir, find_logs, scan

# A training log as the original CoOp repository wrote it (Dassl before v0.6.1: tab-separated iteration lines,
# "Finished training", "Do evaluation on test set", two decimals), shortened.
COOP_TRAIN_LOG = """\
Setting fixed seed: 1
***************
** Arguments **
***************
backbone:
config_file: configs/trainers/CoOp/rn50_ep50.yaml
dataset_config_file: configs/datasets/caltech101.yaml
eval_only: False
head:
load_epoch: None
model_dir:
no_train: False
opts: ['TRAINER.COOP.N_CTX', '16', 'TRAINER.COOP.CSC', 'False', 'TRAINER.COOP.CLASS_TOKEN_POSITION', 'end', 'DATASET.NUM_SHOTS', '1']
output_dir: output/caltech101/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed1
resume:
root: /data
seed: 1
source_domains: None
target_domains: None
trainer: CoOp
transforms: None
************
** Config **
************
OPTIM:
  MAX_EPOCH: 50
TEST:
  EVALUATOR: Classification
  FINAL_MODEL: last_step
Collecting env info ...
** System info **
PyTorch version: 1.8.1
Loading trainer: CoOp
Loading dataset: Caltech101
Reading split from /data/caltech-101/split_zhou_Caltech101.json
Creating a 1-shot dataset
Building transform_train
+ random resized crop (size=(224, 224))
---------  ----------
Dataset    Caltech101
# classes  100
# train_x  100
# val      100
# test     2,465
---------  ----------
Loading CLIP (backbone: RN50)
Building custom CLIP
Initializing a generic context
Initial context: "X X X X X X X X X X X X X X X X"
Number of context words (tokens): 16
Turning off gradients in both the image and the text encoder
Loading evaluator: Classification
No checkpoint found, train from scratch
Initializing summary writer for tensorboard with log_dir=output/caltech101/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed1/tensorboard
epoch [1/50][1/3]\ttime 1.893 (1.893)\tdata 0.722 (0.722)\teta 0:04:42\tloss 1.5908 (1.5908)\tacc 65.6250 (65.6250)\tlr 1.000000e-05
epoch [1/50][2/3]\ttime 0.062 (0.978)\tdata 0.000 (0.361)\teta 0:02:25\tloss 1.5859 (1.5884)\tacc 59.3750 (62.5000)\tlr 1.000000e-05
epoch [50/50][3/3]\ttime 0.061 (0.069)\tdata 0.000 (0.006)\teta 0:00:00\tloss 0.2040 (0.2233)\tacc 93.7500 (93.7500)\tlr 9.866358e-07
Checkpoint saved to "output/caltech101/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed1/prompt_learner/model.pth.tar-50"
Finished training
Deploy the last-epoch model
Do evaluation on test set
=> result
* total: 2,465
* correct: 2,268
* accuracy: 92.01%
* error: 7.99%
* macro_f1: 89.44%
Elapsed: 0:05:53
"""

# An eval-only log (base2new/test_new) of the original CoCoOp repository.
COCOOP_TEST_LOG = """\
Setting fixed seed: 1
Loading trainer: CoCoOp
Loading dataset: OxfordPets
Reading split from /data/oxford_pets/split_zhou_OxfordPets.json
Loading preprocessed few-shot data from /data/oxford_pets/split_fewshot/shot_16-seed_1.pkl
SUBSAMPLE NEW CLASSES!
Loading CLIP (backbone: ViT-B/16)
Building custom CLIP
Initial context: "a photo of a"
Number of context words (tokens): 4
Turning off gradients in both the image and the text encoder
Loading evaluator: Classification
Loading weights to prompt_learner from "output/base2new/train_base/oxford_pets/shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed1/prompt_learner/model.pth.tar-10" (epoch = 10)
Do evaluation on test set
=> result
* total: 1,788
* correct: 1,742
* accuracy: 97.43%
* error: 2.57%
* macro_f1: 97.42%
"""

# Current Dassl / our engine, with a validation set each epoch and a per-class report at the end.
DASSL_LOG = """\
Loading trainer: QCoOp
Loading dataset: DescribableTextures
epoch [1/2] batch [1/1] time 0.101 (0.101) data 0.010 (0.010) loss 1.2000 (1.2000) lr 2.0000e-03 eta 0:00:01
Evaluate on the *val* set
=> result
* total: 40
* correct: 20
* accuracy: 50.0%
* error: 50.0%
* macro_f1: 48.1%
epoch [2/2] batch [1/1] time 0.101 (0.101) data 0.010 (0.010) loss 1.0000 (1.0000) lr 1.0000e-03 eta 0:00:00
Evaluate on the *val* set
=> result
* total: 40
* correct: 24
* accuracy: 60.0%
* error: 40.0%
* macro_f1: 58.2%
Storage of learned parameters (packed .qpt): 260 bytes payload + 51 bytes header = 311 bytes
Finish training
Deploy the model with the best val performance
Loading weights to prompt_learner from "output/x/prompt_learner/model-best.pth.tar" (epoch = 2)
Evaluate on the *test* set
=> result
* total: 1,692
* correct: 1,100
* accuracy: 65.0%
* error: 35.0%
* macro_f1: 64.2%
=> per-class result
* class: 0 (banded)\ttotal: 36\tcorrect: 30\tacc: 83.3%
* class: 1 (blotchy)\ttotal: 36\tcorrect: 20\tacc: 55.6%
* average: 69.4%
Elapsed: 0:00:05
"""


def test_original_coop_train_log() -> None:
    info = parse_log_text(COOP_TRAIN_LOG)
    assert info.finished and not info.eval_only
    assert info.final == {
        "total": 2465.0,
        "correct": 2268.0,
        "accuracy": 92.01,
        "error": 7.99,
        "macro_f1": 89.44,
    }
    assert info.accuracy() == 92.01
    assert info.accuracy("macro_f1") == 89.44
    assert (info.last_epoch, info.max_epoch) == (50, 50)
    assert (info.trainer, info.dataset) == ("CoOp", "Caltech101")
    assert info.problems == []


def test_original_cocoop_eval_only_log() -> None:
    info = parse_log_text(COCOOP_TEST_LOG)
    assert info.eval_only and info.finished
    assert info.accuracy() == 97.43
    assert info.final["total"] == 1788.0


def test_current_dassl_log_takes_final_test_not_val() -> None:
    info = parse_log_text(DASSL_LOG)
    assert info.accuracy() == 65.0
    assert info.final["perclass_accuracy"] == 69.4
    assert info.per_epoch("val") == {1: 50.0, 2: 60.0}
    assert info.per_epoch() == {}  # val blocks are not test evaluations
    assert info.problems == []


@pytest.mark.parametrize("style", ["dassl", "coop"])
def test_synthetic_styles_round_trip(style: str) -> None:
    info = parse_log_text(log_text(71.25, style, per_epoch={"test": [60.5, 65.5, 70.5]}))
    assert info.accuracy() == (71.2 if style == "dassl" else 71.25)  # Dassl >= 0.6.2 prints 1 decimal
    assert info.per_epoch("test") == {1: 60.5, 2: 65.5, 3: 70.5}


def test_our_trainers_per_epoch_lines() -> None:
    text = (
        log_text(None, "dassl", max_epoch=2, finished=False, stop_epoch=0)
        + "epoch [1/2] batch [1/1] time 0.1 (0.1) loss 1.0 lr 1e-3 eta 0:00:01\n"
        + "per-epoch evaluation: epoch [1/2] base 80.12% new 70.05%\n"
        + "epoch [2/2] batch [1/1] time 0.1 (0.1) loss 1.0 lr 1e-3 eta 0:00:00\n"
        + "per-epoch evaluation: epoch [2/2] base 81.00% new 69.50%\n"
        + "Finish training\nDeploy the last-epoch model\n"
        + "Evaluate on the *test* set\n=> result\n"
        + "* accuracy: 81.0%\n"
    )
    info = parse_log_text(text)
    assert info.splits() == ["base", "new"]
    assert info.per_epoch("base") == {1: 80.12, 2: 81.0}
    assert info.per_epoch("new") == {1: 70.05, 2: 69.5}
    assert info.accuracy() == 81.0


def test_unfinished_run_has_no_final_result() -> None:
    info = parse_log_text(
        log_text(None, "dassl", max_epoch=10, finished=False, stop_epoch=4, per_epoch={"test": [50.0] * 10})
    )
    assert info.final is None and not info.finished
    assert (info.last_epoch, info.max_epoch) == (4, 10)
    assert info.per_epoch("test") == {1: 50.0, 2: 50.0, 3: 50.0, 4: 50.0}


def test_finished_without_final_test_is_not_a_result() -> None:
    text = log_text(None, "dassl")  # TEST.NO_TEST, or a crash during the final test
    info = parse_log_text(text)
    assert info.finished and info.final is None


def test_malformed_lines_are_reported_not_raised() -> None:
    text = log_text(70.0, "dassl").replace("* accuracy: 70.0%", "* accuracy: seventy%")
    info = parse_log_text(text)
    assert "accuracy" not in (info.final or {})
    assert any("not a number" in p for p in info.problems)
    empty_block = "Finish training\n=> result\nElapsed: 0:00:01\n"
    info = parse_log_text("epoch [1/1] batch [1/1] loss 1\n" + empty_block)
    assert info.final is None and any("without any" in p for p in info.problems)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "log.txt"
    bad.write_bytes(b"\x00\x01\x02garbage")
    info = parse_log(bad)
    assert info.final is None and "binary" in info.problems[0]
    info = parse_log(tmp_path / "nope.txt")
    assert info.final is None and "cannot read" in info.problems[0]


def test_resumed_run_uses_newest_log_with_result(tmp_path: Path) -> None:
    run = tmp_path / "out" / "caltech101" / "CoOp" / "rn50_16shots" / "seed1"
    run.mkdir(parents=True)
    (run / "log.txt").write_text(log_text(None, "dassl", max_epoch=10, finished=False))
    (run / "log.txt-2024-01-02-10-00-00").write_text(log_text(77.7, "coop"))
    assert [p.name for p in find_logs(run)] == ["log.txt", "log.txt-2024-01-02-10-00-00"]
    runs, warnings = scan(tmp_path / "out")
    assert warnings == []
    assert len(runs) == 1 and runs[0].log.accuracy() == 77.7


@pytest.mark.parametrize(
    "rel, expected",
    [
        (
            "o/base2new/train_base/dtd/shots_16/QCoOp/vit_b16_c4/seed2",
            ("base2new", "dtd", "QCoOp", "vit_b16_c4", 2, "train_base", 16),
        ),
        (
            "o/base2new/test_new/dtd/shots_16/QCoOp/vit_b16_c4/seed3",
            ("base2new", "dtd", "QCoOp", "vit_b16_c4", 3, "test_new", 16),
        ),
        (
            "o/evaluation/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/imagenet_a/seed1",
            ("evaluation", "imagenet_a", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1_16shots", 1, None, 16),
        ),
        (
            "o/evaluation/CoOp/rn50_16shots/nctx16_cscFalse_ctpend/sun397/seed1",
            ("evaluation", "sun397", "CoOp", "rn50_16shots/nctx16_cscFalse_ctpend", 1, None, 16),
        ),
        (
            "o/caltech101/CoOp/rn50_ep50_2shots/nctx16_cscFalse_ctpend/seed1",
            ("train", "caltech101", "CoOp", "rn50_ep50_2shots/nctx16_cscFalse_ctpend", 1, None, 2),
        ),
        (
            "o/imagenet/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/seed1",
            ("train", "imagenet", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots", 1, None, 16),
        ),
        ("o/fewshot/eurosat/shots_4/QCoOp/rn50/seed1", ("fewshot", "eurosat", "QCoOp", "rn50", 1, None, 4)),
        (
            "o/ZeroshotCLIP/vit_b16/eurosat",
            ("zeroshot", "eurosat", "ZeroshotCLIP", "vit_b16", None, None, None),
        ),
    ],
)
def test_layouts(rel: str, expected: tuple) -> None:
    run = classify_run_dir(Path("/x") / rel)
    assert run is not None
    assert (run.setting, run.dataset, run.trainer, run.cfg, run.seed, run.phase, run.shots) == expected


def test_unknown_layout_is_none() -> None:
    assert classify_run_dir(Path("/x/some/thing/seed1")) is None
    assert classify_run_dir(Path("/x/some/thing")) is None
