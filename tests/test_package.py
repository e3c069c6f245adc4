"""Packaging contracts: a light top-level import, and only `quantprompt` installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout + out.stderr


def test_import_quantprompt_does_not_import_torch(tmp_path: Path) -> None:
    log = _run("import quantprompt", tmp_path)
    imported = {line.split("|")[-1].strip() for line in log.splitlines() if line.startswith("import time:")}
    assert "quantprompt" in imported
    heavy = {"torch", "clip", "matplotlib", "transformers", "sklearn", "yacs"} & imported
    assert not heavy, f"import quantprompt pulled in {sorted(heavy)}"


def test_only_quantprompt_is_installed(tmp_path: Path) -> None:
    # From a folder outside the repo, the root-level CoOp-style packages must not be importable:
    # a top-level `datasets` in site-packages would shadow Hugging Face's `datasets`.
    code = (
        "import importlib.util, quantprompt, pathlib;"
        "print(pathlib.Path(quantprompt.__file__).resolve().parent);"
        "print(importlib.util.find_spec('trainers'), importlib.util.find_spec('train'));"
        "s = importlib.util.find_spec('datasets'); print(s.origin if s else None)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert Path(out[0]) == REPO / "quantprompt"
    assert out[1] == "None None"
    assert out[2] == "None" or str(REPO) not in out[2]


def test_lazy_submodule_access() -> None:
    import quantprompt

    assert quantprompt.__version__
    assert importlib.util.find_spec("quantprompt.quant") is not None
    try:
        quantprompt.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute must raise AttributeError")
