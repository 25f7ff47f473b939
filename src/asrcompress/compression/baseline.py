"""The uncompressed reference, so that every variant goes through the same path."""

from __future__ import annotations

from typing import Any

import torch

from .registry import Method, register


def identity(model: torch.nn.Module, _level: float | None, _params: dict[str, Any]) -> torch.nn.Module:
    return model


register(Method(name="none", description="the fine-tuned baseline, unchanged", apply=identity))
