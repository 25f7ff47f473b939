"""Unstructured pruning."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.utils.prune as prune

from .registry import Method, register


def prunable_weights(model: torch.nn.Module, include_conv: bool = False) -> list[tuple[torch.nn.Module, str]]:
    """The weight matrices pruning acts on: every ``nn.Linear`` (and optionally every conv)."""
    kinds: tuple[type, ...] = (torch.nn.Linear,) + ((torch.nn.Conv1d,) if include_conv else ())
    return [(module, "weight") for module in model.modules() if isinstance(module, kinds)]


def global_magnitude(model: torch.nn.Module, level: float | None, params: dict[str, Any]) -> torch.nn.Module:
    """Global L1 unstructured pruning: zero the ``level`` fraction of smallest-magnitude weights
    across all prunable matrices together, then make the zeros permanent."""
    targets = prunable_weights(model, include_conv=bool(params.get("include_conv", False)))
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(level))
    for module, name in targets:
        prune.remove(module, name)
    return model


register(
    Method(
        name="magnitude",
        description="global L1 unstructured pruning of nn.Linear weights, no retraining",
        apply=global_magnitude,
        takes_level=True,
        level_range=(0.0, 1.0),
    )
)
