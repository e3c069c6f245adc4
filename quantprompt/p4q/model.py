"""The P4Q model: a post-training-quantized CLIP student with CoOp prompts and a low-bit image-feature adapter,
plus the full-precision teacher that shares its weights.

* student image features: quantized ``visual`` (no gradient: it is frozen) -> :class:`Adapter` (learned);
* student text features: CoOp's :class:`PromptLearner` prompts through :class:`TextEncoder` built on the
  quantized text tower (so any improvement of ``TextEncoder`` reaches P4Q too);
* logits: ``exp(logit_scale) * cos(image, text)``, as every prompt model;
* teacher: the untouched full-precision CLIP, zero-shot with the dataset's hand-written template (default) or
  a trained full-precision CoOp context (``teacher_ctx``).

``zero_shot=True`` is the PTQ baseline P4Q improves on: the same quantized CLIP with the teacher's hand-written
prompts (through the quantized text tower) and no adapter; nothing in it is learned.

Everything learned or calibrated lives in ``model.prompt_learner``: ``ctx``, ``adapter.*`` (both quantized with
``quant.quantize_``, so CAC and the packed .qpt apply) and ``act_ranges.*`` (the activation quantizers' scale and
zero point), so a checkpoint of the prompt learner restores the whole student.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from quantprompt.prompting.base import PromptModel
from quantprompt.prompting.coop import PromptLearner
from quantprompt.prompting.text import TextEncoder, tokenize
from quantprompt.prompting.zeroshot import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE

from .adapter import Adapter
from .calibration import CALIBRATORS, calibrate
from .fakequant import ActQuant
from .ptq import FP_ENCODERS, fake_quant_rows, quantized_clip

__all__ = ["P4Q", "P4QLearner", "check_options"]


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} must be an integer from {lo} to {hi}")
    return value


def check_options(weight_bits: int, act_bits: int, fp_encoder: str, adapter_bits: int, prompt_bits: int) -> None:
    """The model-level checks (the trainer checks the same values earlier, under their config keys)."""
    _int_in("weight_bits", weight_bits, 2, 8)
    _int_in("act_bits", act_bits, 2, 8)
    _int_in("adapter_bits", adapter_bits, 1, 8)
    _int_in("prompt_bits", prompt_bits, 1, 8)
    if fp_encoder not in FP_ENCODERS:
        raise ValueError(f"fp_encoder={fp_encoder!r} is not one of {', '.join(FP_ENCODERS)}")


def act_key(layer: str) -> str:
    """ModuleDict key of a layer's activation quantizer ('.' is not allowed in module names)."""
    return layer.replace(".", "__")


class P4QLearner(PromptLearner):
    """CoOp's prompt learner + the adapter + the activation quantizers (shared with the student's layers)."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: Optional[int],
                 ctx_init: Optional[str], csc: bool, class_token_position: str, adapter: Adapter,
                 act_quants: dict[str, ActQuant], token_bits: Optional[int]) -> None:
        super().__init__(clip_model, classnames, n_ctx, ctx_init, csc, class_token_position)
        self.adapter = adapter
        self.act_ranges = nn.ModuleDict({act_key(k): v for k, v in act_quants.items()})
        if token_bits is not None:  # the fixed token embeddings come from the quantized embedding table
            with torch.no_grad():
                self.token_prefix.copy_(fake_quant_rows(self.token_prefix, token_bits))
                self.token_suffix.copy_(fake_quant_rows(self.token_suffix, token_bits))


class P4Q(PromptModel):
    """``model(images) -> student logits``; ``model.teacher_logits(images)``; ``model.calibrate(batches)``."""

    name = "p4q"

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        n_ctx: Optional[int] = None,
        ctx_init: Optional[str] = None,
        csc: bool = False,
        class_token_position: str = "end",
        precision: str = "fp32",
        weight_bits: int = 8,
        act_bits: int = 8,
        act_range: str = "auto",
        per_channel: bool = True,
        fp_encoder: str = "none",
        adapter_ratio: int = 4,
        adapter_alpha: float = 0.2,
        adapter_bits: int = 4,
        prompt_bits: int = 8,
        dataset: Optional[str] = None,
        teacher_ctx: Optional[Tensor] = None,
        zero_shot: bool = False,
    ) -> None:
        from .backend import resolve_act_range

        check_options(weight_bits, act_bits, fp_encoder, adapter_bits, prompt_bits)
        #: the activation grid, "full" or "reduced" ("auto": the one this machine's int8 kernel computes exactly)
        self.act_range = resolve_act_range(act_range, act_bits)
        #: what ``prompting.build('p4q', ...)`` needs to rebuild this model (the export stores it, with the
        #: resolved activation grid, so a file calibrated here runs on the same grid everywhere)
        self.build_options: dict[str, Any] = dict(
            n_ctx=n_ctx, ctx_init=ctx_init, csc=bool(csc), class_token_position=class_token_position,
            precision=precision, weight_bits=weight_bits, act_bits=act_bits, act_range=self.act_range,
            per_channel=bool(per_channel),
            fp_encoder=fp_encoder, adapter_ratio=adapter_ratio, adapter_alpha=float(adapter_alpha),
            adapter_bits=adapter_bits, prompt_bits=prompt_bits, dataset=dataset, zero_shot=bool(zero_shot))
        super().__init__(clip_model, precision)
        self.weight_bits, self.act_bits, self.per_channel = weight_bits, act_bits, bool(per_channel)
        self.fp_encoder = fp_encoder
        student, acts = quantized_clip(clip_model, weight_bits, act_bits, bool(per_channel), fp_encoder,
                                       reduce_range=self.act_range == "reduced")
        self.image_encoder = student.visual
        self.text_encoder = TextEncoder(student)
        if fp_encoder != "text":  # TextEncoder took the parametrized value once: keep it as a moving buffer
            value = student.text_projection.detach().clone()
            del self.text_encoder.text_projection
            self.text_encoder.register_buffer("text_projection", value, persistent=False)
        self.act_quants = acts  # plain dict: the modules are registered in the student and the learner
        self._student = [student]
        embed_dim = int(clip_model.text_projection.shape[1])
        adapter = Adapter(embed_dim, adapter_ratio, adapter_alpha)
        self.prompt_learner = P4QLearner(
            clip_model, classnames, n_ctx, ctx_init, csc, class_token_position, adapter, acts,
            None if fp_encoder == "text" else weight_bits)
        self.freeze_clip()
        self.adapter_bits, self.prompt_bits = adapter_bits, prompt_bits
        self.quant_config = self._quantize_learned()
        self.teacher_template = CUSTOM_TEMPLATES.get(dataset or "", DEFAULT_TEMPLATE)
        self._teacher_learner: list[PromptLearner] = []
        if teacher_ctx is not None:
            self._teacher_learner.append(self._build_teacher_learner(teacher_ctx, classnames,
                                                                     class_token_position))
        self._teacher_text: Optional[Tensor] = None
        self.calibrated = False
        #: the PTQ baseline: hand-written prompts, no adapter, nothing learned (see the module doc)
        self.zero_shot = bool(zero_shot)
        if self.zero_shot:
            for param in self.prompt_learner.parameters():
                param.requires_grad_(False)

    # -- construction helpers ----------------------------------------------------------------------------
    def _quantize_learned(self) -> Any:
        """The adapter's weights and the prompt context, through QPrompt's quantizer (CAC, packed .qpt)."""
        from quantprompt import quant

        adapter = quant.QuantConfig(bits=self.adapter_bits, targets=[
            "prompt_learner.adapter.fc1.weight", "prompt_learner.adapter.fc2.weight"], per_row=False)
        quant.quantize_(self, adapter)
        quant.quantize_(self, quant.QuantConfig(bits=self.prompt_bits, targets=["prompt_learner.ctx"]))
        self.invalidate_cache()
        return adapter

    def _build_teacher_learner(self, ctx: Tensor, classnames: Sequence[str], position: str) -> PromptLearner:
        if not isinstance(ctx, Tensor) or ctx.dim() not in (2, 3):
            raise ValueError("teacher_ctx must be a CoOp context tensor (n_ctx, width) or (n_cls, n_ctx, width)")
        width = int(self.clip_model.ln_final.weight.shape[0])
        if ctx.shape[-1] != width:
            raise ValueError(f"teacher_ctx has width {ctx.shape[-1]}, this CLIP's text width is {width}")
        fork = torch.random.fork_rng(devices=[])
        with fork:  # the teacher's placeholder init must not shift the run's random stream
            learner = PromptLearner(self.clip_model, classnames, int(ctx.shape[-2]), None, ctx.dim() == 3, position)
        if ctx.dim() == 3 and ctx.shape[0] != learner.n_cls:
            raise ValueError(f"teacher_ctx is class-specific for {ctx.shape[0]} classes, not {learner.n_cls}")
        learner.ctx.requires_grad_(False)
        with torch.no_grad():
            learner.ctx.copy_(ctx.to(learner.ctx.dtype))
        return learner

    # -- calibration ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, image_batches: Iterable[Tensor], method: str = "minmax", text_chunk: int = 256
                  ) -> dict[str, tuple[float, float]]:
        """Fix every activation range from ``image_batches`` (a few training batches, preprocessed) and the
        initial prompts of all classes; deterministic for the same batches."""
        if method not in CALIBRATORS:
            raise ValueError(f"calibrator {method!r} is not one of {', '.join(CALIBRATORS)}")
        device = next(self.prompt_learner.parameters()).device
        batches = list(image_batches)
        if self.fp_encoder != "image" and not batches:
            raise ValueError("calibration needs at least one batch of training images")

        def run() -> None:
            if self.fp_encoder != "image":
                for images in batches:
                    self.image_encoder(images.to(device).type(self.dtype))
            if self.fp_encoder != "text":
                prompts, tokens = self._prompts()
                for start in range(0, prompts.shape[0], text_chunk):
                    self.text_encoder(prompts[start:start + text_chunk], tokens[start:start + text_chunk])

        ranges = calibrate(self.act_quants, run, method)
        self.calibrated = True
        self.invalidate_cache()
        return ranges

    def set_activation_mode(self, mode: str) -> None:
        """"quant" (calibrated ranges, as after ``calibrate``), "off" (full-precision activations)."""
        for q in self.act_quants.values():
            q.mode = mode
        self.invalidate_cache()

    # -- student -------------------------------------------------------------------------------------------
    def _text_dependencies(self):
        yield from super()._text_dependencies()
        yield from self.text_encoder.buffers()

    def _prompts(self) -> tuple[Tensor, Tensor]:
        """(prompt embeddings, tokens) of all classes: the learned CoOp prompts, or with ``zero_shot`` the
        teacher's hand-written ones with token embeddings from the quantized table."""
        if not self.zero_shot:
            return self.prompt_learner(), self.prompt_learner.tokenized_prompts
        from quantprompt.prompting.text import embed_tokens

        names = self.prompt_learner.classnames
        tokens = tokenize([self.teacher_template.format(c) for c in names]).to(self.logit_scale.device)
        embedded = embed_tokens(self.clip_model, tokens)
        if self.fp_encoder != "text":
            embedded = fake_quant_rows(embedded, self.weight_bits)
        return embedded, tokens

    def _text_features(self) -> Tensor:
        return self.text_encoder(*self._prompts())

    def encode_image(self, images: Tensor) -> Tensor:
        """Quantized image encoder (frozen, no graph) followed by the adapter (learned; none with
        ``zero_shot``)."""
        with torch.no_grad():
            feats = self.image_encoder(images.type(self.dtype))
        return feats.float() if self.zero_shot else self.prompt_learner.adapter(feats.float())

    def forward(self, images: Tensor) -> Tensor:
        image_features = self.encode_image(images)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = self.text_features().float()
        return self.logit_scale.exp().float() * image_features @ text_features.t()

    # -- teacher -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_text_features(self) -> Tensor:
        """Normalised full-precision text features of the teacher (computed once, on the model's device)."""
        device = self.logit_scale.device
        if self._teacher_text is None or self._teacher_text.device != device:
            clip = self.clip_model
            if self._teacher_learner:
                learner = self._teacher_learner[0].to(device)
                feats = TextEncoder(clip)(learner(), learner.tokenized_prompts)
            else:
                names = self.prompt_learner.classnames
                tokens = tokenize([self.teacher_template.format(c) for c in names]).to(device)
                feats = clip.encode_text(tokens)
            feats = feats.float()
            self._teacher_text = feats / feats.norm(dim=-1, keepdim=True)
        return self._teacher_text

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        """Full-precision CLIP's cosine logits (same weights as the student, never quantized)."""
        feats = self.clip_model.visual(images.type(self.dtype)).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp().float() * feats @ self.teacher_text_features().t()
