"""Mixed precision for the training forward pass (``train.precision``)."""

from __future__ import annotations

import contextlib

import torch

from recforge.errors import ConfigError


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context to run a training forward pass (model and loss) in.

    ``fp32``: nothing changes. ``bf16``: ``torch.autocast`` with bfloat16, so matrix products run
    in bfloat16 while reductions, the BCE loss (``binary_cross_entropy_with_logits`` is on
    autocast's float32 list) and the optimiser's float32 master weights stay float32
    (Micikevicius et al. 2018, "Mixed Precision Training", ICLR; bfloat16 has float32's exponent
    range, so no loss scaling is needed, unlike float16). Evaluation never runs under it: reported
    metrics are float32 scores.

    Args:
        device: where the model runs (autocast is per device type: cpu or cuda).
        precision: ``fp32`` or ``bf16``.

    Raises:
        ConfigError: for another precision, or bf16 on a CUDA device without bfloat16 support.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ConfigError(f"train.precision must be fp32 or bf16, got {precision!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
