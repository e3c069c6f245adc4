"""quantprompt binds to OpenAI's installed ``clip``, whatever ``clip`` is first on sys.path or already imported,
and never changes what the host's own ``import clip`` gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantprompt.clip import _openai

REPO = Path(__file__).resolve().parents[1]

HOST_CLIP = {  # MaPLe's kind of edited copy: CLIP needs design_details, and nothing else may be used by us
    "__init__.py": "from . import clip, model  # noqa: F401\nHOST = True\n",
    "clip.py": "def tokenize(*a, **k):\n    raise RuntimeError('host clip.tokenize used')\n",
    "model.py": "class CLIP:\n    def __init__(self, embed_dim, design_details):\n        pass\n",
}

PROBE = """
import sys
import clip as host  # the host's folder, first on sys.path, imported before quantprompt
from quantprompt import clip as qclip, prompting
model, preprocess = qclip.load("tiny-vit")
learner = prompting.build("qcoop", model, ["cat", "dog"], n_ctx=2, bits=1)
print(sys.modules["clip"] is host, getattr(sys.modules["clip"], "HOST", False))
print(type(model).__module__, tuple(qclip.tokenize(["a cat"]).shape))
"""


def test_host_clip_folder_is_neither_used_nor_replaced(tmp_path: Path) -> None:
    for name, text in HOST_CLIP.items():
        (tmp_path / "clip").mkdir(exist_ok=True)
        (tmp_path / "clip" / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]), PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines() == ["True True", f"{_openai.PRIVATE_NAME}.model (1, 77)"]


def test_openai_clip_is_the_installed_distribution() -> None:
    module = _openai.openai_clip()
    assert module.__name__ == _openai.PRIVATE_NAME
    assert Path(module.model.__file__).parent == _openai.openai_clip_dir()
    assert _openai.openai_clip() is module  # loaded once per process
    assert "ViT-B/16" in module.clip._MODELS


def test_missing_distribution_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_openai, "DISTRIBUTIONS", ("no-such-clip-distribution",))
    with pytest.raises(ImportError, match=r"pip install clip-anytorch"):
        _openai.openai_clip_dir()
