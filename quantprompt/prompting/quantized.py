"""Quantized prompt models: the base model plus ``quant.quantize_`` on the learned tensors (no model copy).

* qcoop:   ``prompt_learner.ctx``                                          (default 1 bit, the paper's 0.26 KB)
* qcocoop: ``ctx`` + the meta-net's Linear weights *and biases*            (default 1 bit; every stored tensor
           is quantized, matching the paper's CoCoOp size that counts all 35,360 parameters)
* qmaple:  ``ctx``, every compound prompt, ``proj`` and every compound projection, weights and biases
           (default 4 bits, the paper's QMaPLe)
* noisecoop: CoOp with N(0, noise_std^2) added to ``ctx`` in training mode (Fig. 2), via ``quant.add_noise_``.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def quant_options() -> tuple[str, ...]:
    """Options of the q-models that are passed on to ``quant.QuantConfig`` (its field names)."""
    import dataclasses

    from quantprompt.quant import QuantConfig

    return tuple(f.name for f in dataclasses.fields(QuantConfig))

DEFAULT_BITS = {"qcoop": 1, "qcocoop": 1, "qmaple": 4}


def default_targets(name: str, model: nn.Module) -> list[str]:
    """Exact parameter names (relative to the prompt model) quantized by default for each q-model."""
    if name == "qcoop":
        return ["prompt_learner.ctx"]
    learner = model.prompt_learner
    if name == "qcocoop":
        return ["prompt_learner.ctx"] + [
            f"prompt_learner.meta_net.{layer}.{kind}" for layer in ("linear1", "linear2") for kind in ("weight", "bias")
        ]
    if name == "qmaple":
        targets = ["prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias"]
        targets += [f"prompt_learner.compound_prompts_text.{i}" for i in range(len(learner.compound_prompts_text))]
        for i in range(len(learner.compound_prompt_projections)):
            targets += [f"prompt_learner.compound_prompt_projections.{i}.weight",
                        f"prompt_learner.compound_prompt_projections.{i}.bias"]
        return targets
    raise ValueError(f"no quantized form named {name!r}; use qcoop, qcocoop or qmaple")


def apply_quantization(name: str, model: nn.Module, options: dict[str, Any]) -> Any:
    """Attach QPrompt's quantizer to ``model`` (in place) and return the QuantConfig used."""
    from quantprompt import quant

    kwargs = {k: options[k] for k in quant_options() if k in options and options[k] is not None}
    kwargs.setdefault("bits", DEFAULT_BITS[name])
    kwargs.setdefault("targets", default_targets(name, model))
    kwargs["targets"] = list(kwargs["targets"])
    cfg = quant.QuantConfig(**kwargs)
    quant.quantize_(model, cfg)
    model.invalidate_cache()
    return cfg


def apply_noise(model: nn.Module, noise_std: float, targets: list[str] | None = None) -> Any:
    """Gaussian-noise regularised prompts (paper Fig. 2): noise in training mode only."""
    from quantprompt import quant

    cfg = quant.NoiseConfig(std=noise_std, targets=list(targets or ["prompt_learner.ctx"]))
    quant.add_noise_(model, cfg)
    model.invalidate_cache()
    return cfg
