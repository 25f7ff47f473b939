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
