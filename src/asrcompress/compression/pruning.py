"""Unstructured pruning."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.utils.prune as prune

from .registry import Method, fraction, register


def prunable_weights(model: torch.nn.Module, include_conv: bool = False) -> list[tuple[torch.nn.Module, str]]:
    """The weight matrices pruning acts on: every ``nn.Linear`` (and optionally every conv)."""
    kinds: tuple[type, ...] = (torch.nn.Linear,) + ((torch.nn.Conv1d,) if include_conv else ())
    return [(module, "weight") for module in model.modules() if isinstance(module, kinds)]


def global_magnitude(model: torch.nn.Module, level: float, params: dict[str, Any], _context: Any) -> torch.nn.Module:
    """Global L1 unstructured pruning: mask the ``level`` fraction of smallest-magnitude weights
    across all prunable matrices together. The masks stay (as forward pre-hooks) through recovery
    fine-tuning, so pruned weights stay zero while the others train."""
    targets = prunable_weights(model, include_conv=bool(params["include_conv"]))
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(level))
    return model


def remove_masks(model: torch.nn.Module, _level: Any, _params: dict[str, Any], _context: Any) -> torch.nn.Module:
    """Make every pruning mask permanent: plain weights with zeros, no hooks."""
    for module in model.modules():
        for name in [k[: -len("_orig")] for k, _ in module.named_parameters(recurse=False) if k.endswith("_orig")]:
            prune.remove(module, name)
    return model


register(
    Method(
        name="magnitude",
        description="global L1 unstructured pruning of nn.Linear weights (masks kept during recovery)",
        family="pruning",
        prepare=global_magnitude,
        finalize=remove_masks,
        level=fraction(0.0, 1.0),
        params={"include_conv": False},
    )
)
