"""What a model costs: parameters, non-zeros, bytes on disk."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import torch


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Tensors inside a state-dict value; quantized Linear layers store (weight, bias) tuples."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    parameters: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.parameters if self.parameters else 0.0


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Weights and biases (float or quantized), excluding integer buffers such as position ids."""
    total = nonzero = 0
    for key, value in model.state_dict().items():
        if key.endswith((".scale", ".zero_point")):  # quantization metadata, not weights
            continue
        for tensor in _tensors(value):
            if tensor.is_quantized:
                tensor = tensor.int_repr()
            elif not tensor.is_floating_point():
                continue
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    return ParameterCount(total, nonzero)


def directory_bytes(path: str | os.PathLike[str], exclude: tuple[str, ...] = ("card.json",)) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name not in exclude)


def packed_bytes(model: torch.nn.Module, steps_meta: list[dict[str, Any]]) -> int:
    """Bytes of the weights in a deployment format (placeholder: dense, at each tensor's dtype)."""
    total = 0
    for value in model.state_dict().values():
        for tensor in _tensors(value):
            total += tensor.numel() * tensor.element_size()
    return total


def measure_cost(model: torch.nn.Module, sample_rate: int, seconds: float = 10.0, threads: int = 1, repeats: int = 3,
                 cpu_only: bool = False) -> dict[str, Any]:
    """Placeholder until the measured version lands."""
    return {"gmacs_per_audio_s": float("nan"), "cpu_latency_ms": float("nan"), "cpu_rtf": float("nan"),
            "gpu_latency_ms": None, "cost_input_s": seconds, "cost_threads": threads}
