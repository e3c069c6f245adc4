"""Whether CLIP may stay in fp16 on the CPU: the switch that lets the test suite run CoOp's ``PREC fp16``.

CoOp's configs default to ``PREC fp16``, which on a GPU means CLIP's weights in half precision. On a CPU torch
computes half too, but slowly and without a speed-up, so by default ``fp16`` requested on a CPU is promoted to
fp32 with a warning (users of a CPU get a working, faster run and are told). Tests need the precision users run
on GPUs to execute on every commit, on CI machines without one: ``QUANTPROMPT_CPU_HALF=1`` keeps fp16 on the
CPU, silently. Any other value than ``0``, ``1`` or unset is an error naming it.
"""

from __future__ import annotations

import os

__all__ = ["ENV_CPU_HALF", "cpu_half_enabled"]

#: environment variable: ``1`` keeps ``precision="fp16"`` in fp16 on the CPU (tests), ``0`` / unset promotes it
ENV_CPU_HALF = "QUANTPROMPT_CPU_HALF"


def cpu_half_enabled() -> bool:
    """``QUANTPROMPT_CPU_HALF`` read now (not at import, so a test's ``monkeypatch.setenv`` takes effect)."""
    value = os.environ.get(ENV_CPU_HALF, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(f"{ENV_CPU_HALF}={value!r} must be 1 (keep fp16 on the CPU, for tests) or 0 / unset "
                     f"(promote fp16 to fp32 on the CPU, with a warning)")
