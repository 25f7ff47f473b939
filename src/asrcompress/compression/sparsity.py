"""N:M semi-structured sparsity (E3, USM-Lite): N non-zero weights in every M consecutive inputs.

``nm_sparsity~2of4`` keeps the 2 largest-magnitude weights of every group of 4 along each row's
input dimension. The masks are fixed when the step is prepared and kept (prune's forward pre-hook)
through recovery fine-tuning, so "sparsity-aware fine-tuning" trains only the kept weights
(studies.md gives USM-Lite no mask-update schedule, so none is assumed).

On CUDA, loading the variant swaps each 2:4-compatible ``nn.Linear`` for a semi-structured sparse
kernel (``torch.sparse.to_sparse_semi_structured``), which stores half the values plus 2-bit indices
and multiplies on the sparse tensor cores.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .methods import TargetParams
from .packing import nm_patterns_of, record_nm_pattern
from .pruning import keep_mask, prunable_weights
from .registry import nm_pattern, step_key

log = logging.getLogger(__name__)

# The sparse tensor cores take half precision (cuSPARSELt: fp16/bf16/int8/fp8; CUTLASS's fp32 path
# runs in tf32). fp16 keeps more mantissa than bf16; the layer casts back, the rest stays as it was.
SPARSE_KERNEL_DTYPE = torch.float16


def parse_pattern(level: Any, key: str) -> tuple[int, int]:
    """(N, M) of a level such as ``"2:4"`` (checked as the config check does)."""
    n, m = nm_pattern().parse(level, key).split(":")
    return int(n), int(m)


def input_width(weight: torch.Tensor) -> int:
    """Length of the axis a weight reduces over: ``in_features``, or a conv's (in/groups) x kernel."""
    return weight[0].numel()


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """1 at the ``n`` largest |w| of every ``m`` consecutive entries along the input axis, else 0.

    A convolution's (in/groups, kernel) slice per output channel is flattened first: that is the
    row the convolution reduces over as a matrix product. Ties are broken by ``topk``, so every
    group keeps exactly ``n`` entries even where weights are equal (or already zero).
    """
    groups = weight.detach().abs().reshape(-1, m)
    keep = groups.topk(n, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, keep, 1.0)
    return mask.reshape(weight.shape)


def _step_key(level: Any) -> str:
    """Where the config error points: the entry, named by its variant id (prepare has no index)."""
    return f"compression[{step_key('nm_sparsity', str(level))}]"


def _targets(model: torch.nn.Module, m: int, params: TargetParams, key: str) -> list[tuple[str, torch.nn.Module]]:
    """The weights to sparsify; every one's input width must split into groups of M."""
    targets = prunable_weights(model, bool(params.include_conv), params.exclude)
    if not targets:
        raise ConfigError(f"{key}.params.exclude", f"no weight left to sparsify (exclude={list(params.exclude)!r})")
    ragged = [f"{name} (input width {input_width(module.weight)})" for name, module in targets
              if input_width(module.weight) % m]
    if ragged:
        raise ConfigError(f"{key}.levels", f"N:M pattern needs input widths divisible by M={m}, but "
                                           f"{', '.join(ragged)} are not; exclude them (params.exclude) "
                                           "or choose another M")
    return targets


def nm_prepare(model: torch.nn.Module, level: Any, params: TargetParams, context: Any) -> torch.nn.Module:
    """Mask every targeted weight to the N:M pattern and record the pattern per state-dict key."""
    key = _step_key(level)
    n, m = parse_pattern(level, f"{key}.levels")
    patterns: dict[str, str] = {}
    for name, module in _targets(model, m, params, key):
        # The effective weight: a weight pruned by an earlier step ranks its zeros last.
        keep_mask(module, nm_mask(module.weight, n, m))
        patterns[f"{name}.weight"] = f"{n}:{m}"
    record_nm_pattern(context.meta, patterns)  # read by packing.packed_bytes and by accelerate
    return model


# ----------------------------------------------------------------------------------------------
# GPU kernels


def fits_2of4(weight: torch.Tensor) -> bool:
    """At most 2 non-zeros in every 4 consecutive inputs: what the sparse tensor cores store
    (2:4 itself, and also 1:4, 1:2, 2:8...)."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.detach().reshape(-1, 4) != 0).sum(dim=1) <= 2).all())


class SemiStructuredLinear(torch.nn.Module):
    """An ``nn.Linear`` whose weight is a 2:4 semi-structured sparse tensor in half precision.

    Inputs are cast to the kernel's dtype and outputs back, so a float32 model keeps float32
    everywhere else (layer norms, attention softmax, the conv frontend). The packed weight is a
    plain attribute, not a parameter: ``model.to(...)`` (decoding calls it) and ``model_dtype``
    leave it alone: the packed tensor is made for one device and dtype.
    """

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype = SPARSE_KERNEL_DTYPE) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        dense = linear.weight.detach().to(dtype).contiguous()
        # Raises RuntimeError where the backend's shape or device constraints are not met.
        self.weight = torch.sparse.to_sparse_semi_structured(dense)
        self.bias = linear.bias.detach().to(dtype) if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype).contiguous(), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, semi-structured 2:4"


def semi_structured(model: torch.nn.Module, _level: Any, _params: TargetParams,
                    meta: dict[str, Any]) -> torch.nn.Module:
    """On CUDA, swap each N:M-sparse ``nn.Linear`` that fits 2:4 for :class:`SemiStructuredLinear`.

    Skipped (left dense, logged): modules a later step replaced (quantized layers), weights that do
    not fit 2:4 (e.g. 3:4, 4:8) and shapes the backend refuses (cuSPARSELt wants both dimensions
    multiples of 16 in fp16; CUTLASS 32 rows x 64 columns).
    """
    if not torch.cuda.is_available():
        return model
    converted: list[str] = []
    skipped: list[str] = []
    for key in nm_patterns_of(meta):
        name = key.removesuffix(".weight")
        module = model.get_submodule(name)
        plain = type(module) is torch.nn.Linear and type(module.weight) is torch.nn.Parameter  # not a torchao tensor
        if not plain or not module.weight.is_cuda or not module.weight.is_floating_point():
            skipped.append(f"{name} ({type(module).__name__} on {module.weight.device})"
                           if hasattr(module, "weight") else f"{name} ({type(module).__name__})")
            continue
        if not fits_2of4(module.weight):
            skipped.append(f"{name} (more than 2 non-zeros in a group of 4)")
            continue
        try:
            model.set_submodule(name, SemiStructuredLinear(module))
        except RuntimeError as err:
            skipped.append(f"{name} ({str(err).splitlines()[0]})")
            continue
        converted.append(name)
    log.info("semi-structured 2:4 kernels for %d of %d layers%s", len(converted), len(converted) + len(skipped),
             f"; left dense: {'; '.join(skipped)}" if skipped else "")
    return model


