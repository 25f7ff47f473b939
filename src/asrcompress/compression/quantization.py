"""Post-training quantization."""

from __future__ import annotations

from typing import Any

import torch

from .registry import Method, register


def dynamic_int8(model: torch.nn.Module, _level: float | None, _params: dict[str, Any]) -> torch.nn.Module:
    """int8 weights, activations quantized on the fly, for every ``nn.Linear`` (CPU kernels)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.to("cpu").eval(), {torch.nn.Linear}, dtype=torch.qint8)


register(
    Method(
        name="dynamic_int8",
        description="PTQ: dynamic int8 quantization of nn.Linear (torch.ao quantize_dynamic)",
        apply=dynamic_int8,
        storage="state_dict",
        restructure=dynamic_int8,
        cpu_only=True,
    )
)
