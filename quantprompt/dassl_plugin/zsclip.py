"""Zero-shot CLIP with CoOp's hand-written per-dataset templates (nothing is learned)."""

from __future__ import annotations

from typing import Any

import torch

from . import config as tcfg
from .base import PromptTrainer, validate_cfg


class ZeroshotCLIP(PromptTrainer):
    """Evaluation only. ``train()`` has nothing to learn: it evaluates, so base-to-new scripts run unchanged."""

    METHOD = "zsclip"
    NODE = None

    def check_cfg(self, cfg: Any) -> None:
        validate_cfg(cfg, None, quantized=False)

    def model_options(self) -> dict[str, Any]:
        return {"precision": "fp16", "dataset": str(tcfg.get(self.cfg, "DATASET.NAME", ""))}

    def build_model(self) -> None:
        self.classnames = list(self.dm.dataset.classnames)
        self.options = self.model_options()
        self.clip_model = self.load_clip()
        self.model = self.build_prompt_model(self.clip_model, self.classnames)
        self.model.to(self.device)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def load_model(self, directory: str, epoch: Any = None) -> None:
        if directory:
            print(f"Note: ZeroshotCLIP learns nothing; --model-dir {directory} is ignored")

    def train(self) -> None:  # type: ignore[override]
        print("ZeroshotCLIP has nothing to train: evaluating")
        self.test()
