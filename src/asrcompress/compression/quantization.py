"""Quantization: post-training (dynamic int8) so far."""

from __future__ import annotations

from typing import Any

import torch

from .registry import Method, register


def dynamic_int8(model: torch.nn.Module, _level: Any, _params: dict[str, Any], _context: Any = None) -> torch.nn.Module:
    """int8 weights, activations quantized on the fly, for every ``nn.Linear`` (CPU kernels)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.to("cpu").eval(), {torch.nn.Linear}, dtype=torch.qint8)


register(
    Method(
        name="dynamic_int8",
        description="PTQ: dynamic int8 quantization of nn.Linear (torch.ao quantize_dynamic)",
        family="quantization",
        finalize=dynamic_int8,
        restructure=dynamic_int8,
        training="never",
        cpu_only=True,
    )
)
