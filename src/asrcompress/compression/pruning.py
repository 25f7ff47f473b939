"""Unstructured pruning, and the weight selection and masks that N:M sparsity shares with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as prune

if TYPE_CHECKING:
    from .methods import TargetParams



def prunable_weights(model: torch.nn.Module, include_conv: bool = False,
                     exclude: list[str] | tuple[str, ...] = ()) -> list[tuple[str, torch.nn.Module]]:
    """(module name, module) of every weight matrix pruning acts on: each ``nn.Linear`` (and with
    ``include_conv`` each ``nn.Conv1d``) whose name contains none of the ``exclude`` substrings.

    Weight-normalised convolutions (wav2vec2's positional embedding) are left dense: their weight
    is recomputed from ``g`` and ``v`` at every forward, so a mask on it could not be kept.
    """
    kinds: tuple[type, ...] = (torch.nn.Linear,) + ((torch.nn.Conv1d,) if include_conv else ())
    return [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, kinds) and not any(part in name for part in exclude)
        and not parametrize.is_parametrized(module, "weight")
    ]


def keep_mask(module: torch.nn.Module, mask: torch.Tensor) -> None:
    """Zero ``module.weight`` where ``mask`` is 0 and keep it zero through training.

    ``prune`` keeps ``weight_orig`` as the trained parameter and recomputes ``weight = weight_orig *
    weight_mask`` in a forward pre-hook, so masked weights get no gradient and stay zero. A weight
    pruned by an earlier step keeps its mask too: the masks multiply (``custom_from_mask`` cannot
    combine a dense mask with an existing pruning container).
    """
    mask = mask.to(device=module.weight.device, dtype=module.weight.dtype)
    if hasattr(module, "weight_mask") and prune.is_pruned(module):
        module.weight_mask.mul_(mask)
        with torch.no_grad():
            module.weight = module.weight_orig * module.weight_mask  # what the hook computes at the next forward
    else:
        prune.custom_from_mask(module, "weight", mask)


def global_magnitude(model: torch.nn.Module, level: float, params: TargetParams, _context: Any) -> torch.nn.Module:
    """Global L1 unstructured pruning: mask the ``level`` fraction of smallest-magnitude weights
    across all prunable matrices together. The masks stay (as forward pre-hooks) through recovery
    fine-tuning, so pruned weights stay zero while the others train."""
    targets = prunable_weights(model, bool(params.include_conv), params.exclude)
    prune.global_unstructured([(module, "weight") for _, module in targets], pruning_method=prune.L1Unstructured,
                              amount=float(level))
    return model


def remove_masks(model: torch.nn.Module, _level: Any, _params: TargetParams, _context: Any) -> torch.nn.Module:
    """Make every pruning mask permanent: plain weights with zeros, no hooks."""
    for module in model.modules():
        for name in [k[: -len("_orig")] for k, _ in module.named_parameters(recurse=False) if k.endswith("_orig")]:
            prune.remove(module, name)
    return model


