"""Storage of the learned part of a prompt model, the way the paper's tables count it.

Unquantized tensors are stored in fp16 (2 bytes a value, the paper's convention for CoOp 4.1 KB, CoCoOp
70.8 KB, MaPLe 7,096 KB); quantized tensors take their packed payload from ``quant.size_report`` (b-bit
indices + 2^b fp16 centers). Headers are reported apart, as the paper does not count them.
"""

from __future__ import annotations

from torch import nn


def learned_numels(model: nn.Module) -> dict[str, int]:
    """Element count per learned tensor of ``model.prompt_learner`` (parametrized names without suffix)."""
    out: dict[str, int] = {}
    for name, p in model.prompt_learner.named_parameters():
        clean = name.replace("parametrizations.", "").replace(".original", "")
        out[f"prompt_learner.{clean}"] = p.numel()
    return out


def fp16_bytes(model: nn.Module, include_bias: bool = True) -> int:
    """Bytes of all learned tensors stored in fp16; ``include_bias=False`` counts as the paper's MaPLe row."""
    return 2 * sum(n for name, n in learned_numels(model).items() if include_bias or not name.endswith(".bias"))


def storage_bytes(model: nn.Module, include_bias: bool = True) -> int:
    """Payload bytes: quantized tensors as packed by ``quant.export``, the others in fp16. No headers."""
    from quantprompt import quant

    numels = learned_numels(model)
    quantized = {}
    if getattr(model, "quant_config", None) is not None:
        for name, info in quant.size_report(model)["tensors"].items():
            quantized[name] = int(info["payload_bytes"])
    total = 0
    for name, n in numels.items():
        if not include_bias and name.endswith(".bias"):
            continue
        total += quantized.get(name, 2 * n)
    return total
