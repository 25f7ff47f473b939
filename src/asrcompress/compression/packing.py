"""Packed size: the bytes a deployment format would hold, given what each compression step recorded.

Steps record per weight what they store: :func:`record_weight_bits` (QAT: bits per value, one scale per
output channel) and :func:`record_nm_pattern` (N:M sparsity). Those records live in the step's ``meta`` and so
in the card's ``steps_meta``; this module is the one that writes and reads them, so the card keys
(``weight_bits``, ``scale_bits``, ``nm_pattern``) are named here only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Mapping

import torch

from ..cost import state_tensors
from .registry import nm_pattern

WEIGHT_BITS = "weight_bits"
SCALE_BITS = "scale_bits"
NM_PATTERN = "nm_pattern"

QPARAM_BITS = 32 + 8  # per tensor or channel of a torch quantized tensor: fp32 scale + int8 zero point (ONNX layout)
DEFAULT_SCALE_BITS = 16  # one fp16 scale per output channel for weights a step stores at fewer bits (QAT)


@dataclasses.dataclass(frozen=True)
class PackedLayout:
    """How one weight is stored: bits per kept value (None: its dtype's), its scales, its N:M pattern."""

    value_bits: int | None = None
    scale_bits: int = DEFAULT_SCALE_BITS
    nm: tuple[int, int] | None = None


def record_weight_bits(meta: dict[str, Any], bits_of: Mapping[str, int]) -> None:
    """Record that the weights ``bits_of`` names are stored at those bits per value, one scale of
    ``meta["scale_bits"]`` (default 16) per output channel."""
    meta[WEIGHT_BITS] = dict(bits_of)


def record_nm_pattern(meta: dict[str, Any], patterns: Mapping[str, str]) -> None:
    """Record each named weight's N:M pattern (``"2:4"``)."""
    meta[NM_PATTERN] = dict(patterns)


def weight_bits_of(meta: Mapping[str, Any]) -> dict[str, int]:
    """The weights a step stored at fewer bits, by state-dict key (empty for other steps)."""
    return {key: int(bits) for key, bits in (meta.get(WEIGHT_BITS) or {}).items()}


def nm_patterns_of(meta: Mapping[str, Any]) -> dict[str, str]:
    """The weights a step made N:M sparse, by state-dict key, with their patterns (empty for other steps)."""
    return dict(meta.get(NM_PATTERN) or {})


def _named_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """State-dict tensors under the names step metas use."""
    for key, value in model.state_dict(keep_vars=True).items():
        yield from ((key, tensor) for tensor in state_tensors(value))


def _resolve(key: str, names: set[str]) -> str:
    """The tensor a step's key names. A later step may wrap the model (downsampling holds it as ``model``),
    so a key recorded before is found as the one name ending in ``.<key>``. A key naming no tensor is an
    error: the saving it records would silently go uncounted."""
    if key in names:
        return key
    matches = [name for name in names if name.endswith("." + key)]
    if len(matches) != 1:
        raise ValueError(f"step metadata names weight {key!r}, which the model "
                         f"{'has several of' if matches else 'does not have'}")
    return matches[0]


def _layouts(steps_meta: list[dict[str, Any]], names: set[str]) -> dict[str, PackedLayout]:
    """Per weight, what the steps recorded (``weight_bits``, ``scale_bits``, ``nm_pattern``)."""
    layouts: dict[str, PackedLayout] = {}
    for index, meta in enumerate(steps_meta):
        scale_bits = int(meta.get(SCALE_BITS, DEFAULT_SCALE_BITS))
        for key, bits in weight_bits_of(meta).items():
            name = _resolve(key, names)
            layouts[name] = dataclasses.replace(layouts.get(name, PackedLayout()), value_bits=int(bits),
                                                scale_bits=scale_bits)
        for key, pattern in nm_patterns_of(meta).items():
            n, m = map(int, nm_pattern().parse(pattern, f"steps_meta[{index}].{NM_PATTERN}.{key}").split(":"))
            name = _resolve(key, names)
            layouts[name] = dataclasses.replace(layouts.get(name, PackedLayout()), nm=(n, m))
    return layouts


def nm_kept_values(shape: tuple[int, ...], n: int, m: int) -> int:
    """Values an N:M format keeps: N per group of M consecutive inputs of each output row (a short last
    group keeps at most N).

    >>> nm_kept_values((8, 16), 2, 4)  # 2 of every 4: half
    64
    >>> nm_kept_values((3, 10), 2, 4)  # per row two full groups, and a last group of 2 keeps both
    18
    """
    rows = shape[0] if shape else 1
    columns = math.prod(shape) // rows if rows else 0
    full, rest = divmod(columns, m)
    return rows * (full * n + min(n, rest))


def packed_tensor_bits(tensor: torch.Tensor, layout: PackedLayout = PackedLayout()) -> int:
    """Bits of one tensor in the deployment format; see :func:`packed_bytes`."""
    values = tensor.numel()
    bits = 0
    if tensor.is_quantized:  # a later int8 conversion stores what it stores, whatever bit grid QAT left
        layout = dataclasses.replace(layout, value_bits=None)
    if layout.nm is not None:
        n, m = layout.nm
        values = nm_kept_values(tuple(tensor.shape), n, m)
        bits += values * math.ceil(math.log2(m))  # the position of each kept value in its group
    bits += values * (layout.value_bits or tensor.element_size() * 8)  # qint8: 1 byte, fp16: 2, fp32: 4
    if layout.value_bits is not None:
        bits += (tensor.shape[0] if tensor.dim() else 1) * layout.scale_bits
    elif tensor.is_quantized:
        per_channel = tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        bits += (tensor.q_per_channel_scales().numel() if per_channel else 1) * QPARAM_BITS
    return bits


def packed_bytes(model: torch.nn.Module, steps_meta: list[dict[str, Any]]) -> int:
    """Bytes of the weights in a deployment format, which the card reports beside the bytes on disk.

    * every float tensor at its dtype's bits; torch quantized tensors at 8 bits (32 for qint32) plus an
      fp32 scale and an int8 zero point per tensor or per channel;
    * weights a step lists in ``meta["weight_bits"]`` at those bits per value plus one scale of
      ``meta["scale_bits"]`` (default 16) per output channel (QAT stores floats until deployment),
      unless a later step converted them to a torch quantized tensor, which counts as such;
    * weights in ``meta["nm_pattern"]`` ("N:M"): only the N kept values per group of M, plus
      ceil(log2 M) index bits per kept value: NVIDIA's 2:4 convention (2 bits per kept value, 4 per
      group) generalised. N:M and ``weight_bits`` combine (2:4 at 4 bits: 4 + 2 bits per kept value);
    * unstructured zeros (magnitude pruning) are stored dense: no sparse format (CSR, bitmask) is
      counted, so unstructured pruning alone leaves this number unchanged;
    * each tensor once (tied weights share storage); integer and boolean buffers (position ids, boolean
      masks) and the activation scale and zero point of torch's quantized layers (5 bytes a layer) are
      left out. Float buffers count: a finalized variant holds none but its weights.
    """
    named = list(_named_tensors(model))
    layouts = _layouts(steps_meta, {name for name, _ in named})
    seen: set[tuple[int, torch.dtype, tuple[int, ...]]] = set()
    total_bits = 0
    for name, tensor in named:
        if not (tensor.is_quantized or tensor.is_floating_point()):
            continue
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if identity in seen:
            continue
        seen.add(identity)
        total_bits += math.ceil(packed_tensor_bits(tensor.detach(), layouts.get(name, PackedLayout())) / 8) * 8
    return total_bits // 8
