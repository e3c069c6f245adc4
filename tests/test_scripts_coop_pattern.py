"""CoOp's own script pattern runs unchanged in our repository with ``TRAINER=QCoCoOp``.

CoOp's ``scripts/cocoop/base2new_train.sh`` is run from its own folder: it ``cd ../..`` to the repository
root and calls ``python train.py --trainer ${TRAINER}`` with ``configs/datasets/${DATASET}.yaml``,
``configs/trainers/${TRAINER}/${CFG}.yaml`` and an ``output/base2new/...`` folder, all relative. The script
below keeps that command line and only fills in its settings (data root, trainer, tiny config, shots). It
runs in a linked copy of our repository layout (train.py, trainers/, datasets/, configs/, quantprompt/), so
its relative ``output/`` lands in a temporary folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COOP_STYLE_SCRIPT = """#!/bin/bash
# CoOp's base-to-new training script: only the settings differ
cd ../..

DATA={data}
TRAINER=QCoCoOp
DATASET=$1
SEED=$2
CFG=tiny
SHOTS=2

DIR=output/base2new/train_base/${{DATASET}}/shots_${{SHOTS}}/${{TRAINER}}/${{CFG}}/seed${{SEED}}
if [ -d "$DIR" ]; then
    echo "The results exist at ${{DIR}}, skipped"
else
    python train.py \\
    --root ${{DATA}} \\
    --seed ${{SEED}} \\
    --trainer ${{TRAINER}} \\
    --dataset-config-file configs/datasets/${{DATASET}}.yaml \\
    --config-file configs/trainers/${{TRAINER}}/${{CFG}}.yaml \\
    --output-dir ${{DIR}} \\
    DATASET.NUM_SHOTS ${{SHOTS}} \\
    DATASET.SUBSAMPLE_CLASSES base
fi
"""


def test_coop_base2new_train_pattern_with_qcocoop(tmp_path: Path) -> None:
    from quantprompt.testing import make_dataset

    data = tmp_path / "data"
    make_dataset(data, "Caltech101", n_classes=4, images_per_class=6, seed=0)
    repo = tmp_path / "repo"
    (repo / "scripts" / "cocoop").mkdir(parents=True)
    for name in ("train.py", "trainers", "datasets", "configs", "quantprompt"):
        (repo / name).symlink_to(REPO / name)
    script = repo / "scripts" / "cocoop" / "base2new_train.sh"
    script.write_text(COOP_STYLE_SCRIPT.format(data=data))
    bin_dir = tmp_path / "bin"  # `python` in the script is this interpreter, as in an activated venv
    bin_dir.mkdir()
    # a launcher, not a symlink: a venv's interpreter reached through a symlink outside the venv finds no
    # pyvenv.cfg and runs as the base interpreter, without the venv's packages
    launcher = bin_dir / "python"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", QUANTPROMPT_BACKEND="engine",
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    res = subprocess.run(["bash", "base2new_train.sh", "caltech101", "1"], cwd=script.parent, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = repo / "output/base2new/train_base/caltech101/shots_2/QCoCoOp/tiny/seed1"
    log = (out / "log.txt").read_text()
    assert re.search(r"^\* accuracy: [\d.]+%$", log, re.M)
    assert re.search(r"# classes\s+2", log)  # the base half of the 4 classes
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()
    assert (out / "prompt_learner" / "model.qpt-2").is_file()

    again = subprocess.run(["bash", "base2new_train.sh", "caltech101", "1"], cwd=script.parent, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "The results exist at output/base2new/train_base/caltech101" in again.stdout
