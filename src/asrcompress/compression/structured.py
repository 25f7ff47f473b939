"""Structured pruning that really removes attention heads, FFN units and CNN channels (study 2a/2b, experiment E2).

Peng et al. (ICASSP 2023, HJ-Pruning) and DPHuBERT prune three kinds of structure in wav2vec2-style
models: channels of the convolutional frontend, attention heads and FFN intermediate units. Here:

* ``structured``: one-shot pruning by magnitude importance (L2 or L1 norm of each structure's weights),
  greedy across structure kinds until a parameter or MAC budget is met; optional recovery fine-tuning
  then trains the already smaller model. ``params.prune: [head, ffn]`` is the paper's Transformer-only
  baseline (give the config entry a ``name``).
* ``structured_taylor``: the same with first-order Taylor importance from calibration utterances. It is
  a method of its own because reading the training split is a per-method flag (``needs_data``).
* ``structured_l0``: the paper's method: HardConcrete (L0) gates on the same structures, learned during
  recovery fine-tuning with a Lagrangian budget term whose multipliers are trained by gradient ascent;
  ``finalize`` makes the gates deterministic, folds their values into the weights and removes the closed units.

Every variant is smaller and faster, not masked: rows and columns are cut out of the weight matrices.
The step meta records the kept sizes per layer (``sizes``), which ``restructure`` replays on a fresh
baseline-shaped model so that the saved state dict loads strictly, plus the achieved parameter and MAC
fractions. MACs are counted analytically for a 10 s input (convolutions, projections, attention with its
T^2 terms, FFN), so a budget of "-40% MACs" is met to within one structure.

Surgery rules: a CNN layer keeps at least one channel (with none the model hears nothing). An attention
block or FFN may lose every unit: it is replaced by a module that returns its output bias at every frame,
which is exactly what the block computes with zero units, so the residual stream is unchanged and the
block costs nothing. WavLM computes one relative position bias per head in layer 0 and shares it with all
layers, so its heads cannot be removed per layer: head pruning refuses WavLM (CNN and FFN pruning work).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..cost import conv_lengths, cost_input, count_parameters
from ..decoding import model_inputs
from ..errors import ConfigError
from ..training import TrainHooks
from .methods import STRUCTURE_KINDS as KINDS
from .methods import L0Params, MagnitudeStructuredParams, StructuredParams, TaylorParams
from .registry import Recovery

if TYPE_CHECKING:
    from .context import CompressionContext

REFERENCE_SECONDS = 10.0  # the input length MACs are counted for
GATE = "structured_gate"  # attribute holding an L0 gate on the module that owns the gated units
BUDGET_MODULE = "structured_l0_budget"  # attribute of the top-level model during L0 training

Number = Union[int, float, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Model access


def _base(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    if not all(hasattr(base, name) for name in ("feature_extractor", "feature_projection", "encoder")):
        raise ConfigError("method", f"structured pruning needs a wav2vec2-style model (wav2vec2, HuBERT, WavLM); "
                                    f"got {type(model).__name__}")
    return base


def conv_layers(model: nn.Module) -> list[nn.Module]:
    """The CNN frontend's blocks (conv, optional per-channel norm, activation)."""
    return list(_base(model).feature_extractor.conv_layers)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    layers = list(_base(model).encoder.layers)
    if not all(hasattr(layer, "attention") and hasattr(layer, "feed_forward") for layer in layers):
        raise ConfigError("method", "structured pruning needs Transformer layers with `attention` and `feed_forward` "
                                    f"(not {type(layers[0]).__name__})")
    return layers


def _has_shared_position_bias(attention: nn.Module) -> bool:
    return hasattr(attention, "gru_rel_pos_const")  # WavLM's gated relative position bias


def check_supported(model: nn.Module, kinds: Sequence[str]) -> None:
    """Refuse, naming the config key, what this surgery cannot do exactly."""
    layers = encoder_layers(model)
    if "head" in kinds and any(_has_shared_position_bias(layer.attention) for layer in layers):
        raise ConfigError("params.prune", "WavLM computes a relative position bias per head in layer 0 and shares it "
                                          "with every layer, so heads cannot be removed per layer; prune [conv, ffn]")
    if getattr(getattr(model, "config", None), "add_adapter", False):
        raise ConfigError("method", "structured pruning does not handle adapter layers (config.add_adapter)")


# ----------------------------------------------------------------------------------------------
# Surgery: keep a subset of units, slicing every tensor that holds them


def _bias_everywhere(bias: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``bias`` at every frame, as a new tensor: an expanded view of a parameter made under no_grad still
    requires grad without a grad_fn, which trips torch's module tracker (the flop counter)."""
    out = torch.zeros_like(like)
    return out if bias is None else out + bias.to(like.dtype)


class EmptyAttention(nn.Module):
    """An attention block with no heads left. With zero heads, attention computes ``out_proj(nothing)``,
    i.e. out_proj's bias at every frame: returning it keeps the residual stream exactly as before."""

    num_heads = 0

    def __init__(self, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return _bias_everywhere(self.bias, hidden_states), None


class EmptyFeedForward(nn.Module):
    """An FFN with no intermediate units left: its output is output_dense's bias at every frame."""

    def __init__(self, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return _bias_everywhere(self.bias, hidden_states)


def _index(keep: Sequence[int] | torch.Tensor, count: int, what: str) -> torch.Tensor:
    index = sorted({int(i) for i in (keep.tolist() if isinstance(keep, torch.Tensor) else keep)})
    if index and (index[0] < 0 or index[-1] >= count):
        raise ValueError(f"{what}: indices {index[0]}..{index[-1]} outside 0..{count - 1}")
    return torch.tensor(index, dtype=torch.long)


def _expand(index: torch.Tensor, group: int) -> torch.Tensor:
    """Unit indices to tensor rows: a head is ``head_dim`` consecutive rows."""
    return (index[:, None] * group + torch.arange(group)).reshape(-1) if group > 1 else index


def _select(module: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    """Keep ``index`` along ``dim`` of parameter ``module.<name>``, as a new Parameter (no optimiser state aliasing)."""
    old = getattr(module, name)
    if old is None:
        return
    new = old.detach().index_select(dim, index.to(old.device)).clone()
    setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))


def _keep_outputs(layer: nn.Linear | nn.Conv1d, index: torch.Tensor) -> None:
    _select(layer, "weight", 0, index)
    _select(layer, "bias", 0, index)
    if isinstance(layer, nn.Linear):
        layer.out_features = len(index)
    else:
        layer.out_channels = len(index)


def _keep_inputs(layer: nn.Linear | nn.Conv1d, index: torch.Tensor) -> None:
    _select(layer, "weight", 1, index)  # Linear (out, in) and Conv1d (out, in, kernel) alike
    if isinstance(layer, nn.Linear):
        layer.in_features = len(index)
    else:
        layer.in_channels = len(index)


def _keep_norm_channels(norm: nn.Module, index: torch.Tensor) -> None:
    if isinstance(norm, nn.LayerNorm):
        norm.normalized_shape = (len(index),)
    elif isinstance(norm, nn.GroupNorm):
        if norm.num_groups != norm.num_channels:  # channels normalised together cannot be dropped exactly
            raise ValueError("only per-channel GroupNorm (num_groups == num_channels) can lose channels")
        norm.num_groups = norm.num_channels = len(index)
    else:
        raise ValueError(f"cannot prune the channels of {type(norm).__name__}")
    _select(norm, "weight", 0, index)
    _select(norm, "bias", 0, index)


def prune_heads(attention: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep the heads ``keep``: q/k/v output rows and out_proj input columns, ``head_dim`` per head.

    Returns the module to put back into the layer: the same module, or an :class:`EmptyAttention`
    when no head is kept. ``embed_dim`` stays the model width (the block's input and output size).
    """
    if isinstance(attention, EmptyAttention):
        if len(keep):
            raise ValueError("an attention block without heads cannot regain them")
        return attention
    if _has_shared_position_bias(attention):
        raise ConfigError("params.prune", "WavLM attention heads share layer 0's relative position bias: not prunable")
    index = _index(keep, attention.num_heads, "heads")
    if len(index) == 0:
        return EmptyAttention(attention.out_proj.bias)
    rows = _expand(index, attention.head_dim)
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
        _keep_outputs(projection, rows)
    _keep_inputs(attention.out_proj, rows)
    attention.num_heads = len(index)  # the forward infers heads from the shapes; keep the bookkeeping right
    return attention


def prune_ffn(feed_forward: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep the intermediate units ``keep`` (intermediate_dense rows, output_dense columns); an
    :class:`EmptyFeedForward` when none is kept."""
    if isinstance(feed_forward, EmptyFeedForward):
        if len(keep):
            raise ValueError("an FFN without units cannot regain them")
        return feed_forward
    index = _index(keep, feed_forward.intermediate_dense.out_features, "FFN units")
    if len(index) == 0:
        return EmptyFeedForward(feed_forward.output_dense.bias)
    _keep_outputs(feed_forward.intermediate_dense, index)
    _keep_inputs(feed_forward.output_dense, index)
    return feed_forward


def prune_conv_channels(model: nn.Module, layer: int, keep: Sequence[int]) -> None:
    """Keep output channels ``keep`` of CNN block ``layer``: its conv rows and norm parameters, and the
    reader's inputs (the next conv's input channels, or for the last block the feature projection's
    LayerNorm and Linear input)."""
    blocks = conv_layers(model)
    block = blocks[layer]
    index = _index(keep, block.conv.out_channels, f"channels of conv layer {layer}")
    if len(index) == 0:
        raise ValueError(f"conv layer {layer} must keep at least one channel: with none the model hears nothing")
    _keep_outputs(block.conv, index)
    block.out_conv_dim = len(index)
    if getattr(block, "layer_norm", None) is not None:
        _keep_norm_channels(block.layer_norm, index)
    if layer + 1 < len(blocks):
        _keep_inputs(blocks[layer + 1].conv, index)
        blocks[layer + 1].in_conv_dim = len(index)
    else:
        projection = _base(model).feature_projection
        if getattr(projection, "layer_norm", None) is not None:
            _keep_norm_channels(projection.layer_norm, index)
        _keep_inputs(projection.projection, index)


Keep = Mapping[tuple[str, int], Sequence[int]]  # (kind, layer) -> kept unit indices; absent: untouched


def apply_keep(model: nn.Module, keep: Keep) -> None:
    """Remove every unit not listed in ``keep``."""
    for (kind, layer), indices in sorted(keep.items()):
        if kind == "conv":
            prune_conv_channels(model, layer, indices)
        elif kind == "head":
            block = encoder_layers(model)[layer]
            block.attention = prune_heads(block.attention, indices)
        elif kind == "ffn":
            block = encoder_layers(model)[layer]
            block.feed_forward = prune_ffn(block.feed_forward, indices)
        else:
            raise ValueError(f"unknown structure kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# Structures: which tensor slices belong to each unit (for importance and for folding gate values)


@dataclasses.dataclass(frozen=True, eq=False)
class Slice:
    """Part of one tensor owned by the units of a structure: units run along ``dim`` in blocks of ``group``."""

    tensor: torch.Tensor
    dim: int
    group: int = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
    """The units of one kind in one layer.

    ``producers`` compute the units and vanish with them (rows, biases, per-channel norms); ``reader`` is
    the module whose input carries them (out_proj, output_dense, the next conv, the feature projection's
    Linear). An L0 gate multiplies the reader's input, so its value folds exactly into the reader's
    input columns. ``owner`` is the module that holds the gate.
    """

    kind: str
    layer: int
    count: int
    producers: tuple[Slice, ...]
    reader: nn.Module
    owner: nn.Module
    group: int = 1

    @property
    def slices(self) -> tuple[Slice, ...]:
        return self.producers + (Slice(self.reader.weight, 1, self.group),)


def _weights(*modules: nn.Module | None, dim: int = 0, group: int = 1) -> tuple[Slice, ...]:
    tensors = [t for m in modules if m is not None for t in (m.weight, m.bias) if t is not None]
    return tuple(Slice(t, dim, group) for t in tensors)


def structures(model: nn.Module, kinds: Sequence[str]) -> list[Structure]:
    """Every prunable structure of the given kinds that still has units."""
    found: list[Structure] = []
    if "conv" in kinds:
        blocks = conv_layers(model)
        projection = _base(model).feature_projection
        for i, block in enumerate(blocks):
            last = i + 1 == len(blocks)
            producers = _weights(block.conv, getattr(block, "layer_norm", None),
                                 getattr(projection, "layer_norm", None) if last else None)
            reader = projection.projection if last else blocks[i + 1].conv
            found.append(Structure("conv", i, block.conv.out_channels, producers, reader, block))
    for i, layer in enumerate(encoder_layers(model)):
        attention, feed_forward = layer.attention, layer.feed_forward
        if "head" in kinds and not isinstance(attention, EmptyAttention):
            producers = _weights(attention.q_proj, attention.k_proj, attention.v_proj, group=attention.head_dim)
            found.append(Structure("head", i, attention.num_heads, producers, attention.out_proj, attention,
                                   attention.head_dim))
        if "ffn" in kinds and not isinstance(feed_forward, EmptyFeedForward):
            dense = feed_forward.intermediate_dense
            found.append(Structure("ffn", i, dense.out_features, _weights(dense), feed_forward.output_dense,
                                   feed_forward))
    return found


def unit_importance(structure: Structure, measure: str) -> np.ndarray:
    """Per-unit importance over every tensor slice the unit owns: ``l2`` (norm), ``l1`` (sum of |w|) or
    ``taylor`` (sum of |w * grad|, the first-order estimate of the loss change; needs gradients)."""
    total = torch.zeros(structure.count, dtype=torch.float64)
    for piece in structure.slices:
        weights = piece.tensor.detach()
        if measure == "l2":
            values = weights.square()
        elif measure == "l1":
            values = weights.abs()
        elif measure == "taylor":
            grad = piece.tensor.grad
            values = (weights * grad).abs() if grad is not None else torch.zeros_like(weights)
        else:
            raise ValueError(f"unknown importance {measure!r}")
        total += values.movedim(piece.dim, 0).reshape(structure.count, -1).sum(1).double().cpu()
    return (total.sqrt() if measure == "l2" else total).numpy()


def calibration_gradients(model: nn.Module, waves: Sequence[np.ndarray], processor, sample_rate: int) -> None:
    """Leave in ``.grad`` the gradient of the model's frame cross-entropy against its own greedy labels.

    Calibration utterances come without transcripts; the model's own decisions are the reference, so
    |w * grad| measures how much removing a unit would change what the model outputs.
    """
    model.eval()
    model.zero_grad(set_to_none=True)
    for wave in waves:  # one at a time: no padding, bounded memory
        inputs = model_inputs(processor, [wave], sample_rate)
        logits = model(**inputs).logits[0]
        torch.nn.functional.cross_entropy(logits, logits.detach().argmax(-1), reduction="sum").backward()


# ----------------------------------------------------------------------------------------------
# Cost: parameters and MACs as a function of kept sizes


@dataclasses.dataclass
class Sizes:
    """Units kept per layer. Entries are ints, or tensors (expected counts under L0 gates)."""

    conv: list[Any]
    head: list[Any]
    ffn: list[Any]

    def of(self, kind: str) -> list[Any]:
        return getattr(self, kind)

    def copy(self) -> "Sizes":
        return Sizes(list(self.conv), list(self.head), list(self.ffn))

    def without_one(self, kind: str, layer: int) -> "Sizes":
        smaller = self.copy()
        smaller.of(kind)[layer] -= 1
        return smaller

    def to_json(self) -> dict[str, list[int]]:
        return {kind: [int(v) for v in self.of(kind)] for kind in KINDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int]]) -> "Sizes":
        return cls(*(list(map(int, data[kind])) for kind in KINDS))


def sizes_of(model: nn.Module) -> Sizes:
    layers = encoder_layers(model)
    return Sizes(
        [block.conv.out_channels for block in conv_layers(model)],
        [int(layer.attention.num_heads) for layer in layers],
        [0 if isinstance(layer.feed_forward, EmptyFeedForward) else layer.feed_forward.intermediate_dense.out_features
         for layer in layers],
    )


def _affine(norm: nn.Module | None) -> bool:
    return norm is not None and getattr(norm, "weight", None) is not None


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Parameters and multiply-accumulates of one forward pass over ``samples`` samples, from kept sizes.

    MACs count every matrix product: convolutions, the feature projection, q/k/v/out projections, the
    attention's QK^T and AV products (the T^2 terms), the FFN, the positional convolution and the CTC
    head; norms, activations and softmax are not counted. The formulas work on tensors too, so the L0
    budget (expected sizes) and the one-shot selection (whole units) use the same cost.
    """

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    lengths: tuple[int, ...]  # frames after each conv layer
    conv_bias: bool
    conv_norm: tuple[bool, ...]  # a per-channel affine norm (2 parameters per channel) after conv i
    projection_norm: bool
    hidden: int
    head_dim: int
    qkv_bias: bool
    ffn_bias: bool
    samples: int
    fixed_params: int = 0  # parameters no structure owns (positional conv, CTC head, output biases...)
    fixed_macs: int = 0

    @classmethod
    def of(cls, model: nn.Module, samples: int) -> "CostModel":
        """The cost of ``model`` (without L0 gates attached: they would count as fixed parameters)."""
        base = _base(model)
        blocks = conv_layers(model)
        config = model.config
        kernels = tuple(int(b.conv.kernel_size[0]) for b in blocks)
        strides = tuple(int(b.conv.stride[0]) for b in blocks)
        lengths = conv_lengths(samples, kernels, strides)
        layers = encoder_layers(model)
        attentions = [layer.attention for layer in layers if not isinstance(layer.attention, EmptyAttention)]
        ffns = [layer.feed_forward for layer in layers if not isinstance(layer.feed_forward, EmptyFeedForward)]
        hidden = base.feature_projection.projection.out_features
        frames = lengths[-1]
        fixed_macs = 0
        positional = getattr(base.encoder, "pos_conv_embed", None)
        if positional is not None:
            conv = positional.conv
            fixed_macs += frames * conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0]
        head = getattr(model, "lm_head", None)
        if isinstance(head, nn.Linear):
            fixed_macs += frames * head.in_features * head.out_features
        partial = cls(
            kernels=kernels, strides=strides, lengths=lengths,
            conv_bias=blocks[0].conv.bias is not None,
            conv_norm=tuple(_affine(getattr(b, "layer_norm", None)) for b in blocks),
            projection_norm=_affine(getattr(base.feature_projection, "layer_norm", None)),
            hidden=hidden, head_dim=config.hidden_size // config.num_attention_heads,
            qkv_bias=not attentions or attentions[0].q_proj.bias is not None,
            ffn_bias=not ffns or ffns[0].intermediate_dense.bias is not None,
            samples=samples, fixed_macs=fixed_macs,
        )
        fixed_params = count_parameters(model).parameters - int(partial.params(sizes_of(model)))
        return dataclasses.replace(partial, fixed_params=fixed_params)

    def params(self, sizes: Sizes) -> Number:
        channels = [1, *sizes.conv]
        total: Number = self.fixed_params
        for i, kernel in enumerate(self.kernels):
            per_channel = int(self.conv_bias) + 2 * int(self.conv_norm[i])
            total = total + channels[i + 1] * (channels[i] * kernel + per_channel)
        total = total + channels[-1] * (self.hidden + 2 * int(self.projection_norm))
        per_head = self.head_dim * (4 * self.hidden + 3 * int(self.qkv_bias))  # q, k, v rows + out_proj columns
        for heads in sizes.head:
            total = total + heads * per_head
        for units in sizes.ffn:
            total = total + units * (2 * self.hidden + int(self.ffn_bias))
        return total

    def macs(self, sizes: Sizes) -> Number:
        channels = [1, *sizes.conv]
        total: Number = self.fixed_macs
        for i, (kernel, frames) in enumerate(zip(self.kernels, self.lengths)):
            total = total + frames * channels[i + 1] * channels[i] * kernel
        frames = self.lengths[-1]
        total = total + frames * channels[-1] * self.hidden
        per_head = self.head_dim * (4 * frames * self.hidden + 2 * frames * frames)  # projections + QK^T + AV
        for heads in sizes.head:
            total = total + heads * per_head
        for units in sizes.ffn:
            total = total + units * 2 * frames * self.hidden
        return total

    def cost(self, sizes: Sizes, budget: str) -> Number:
        return self.params(sizes) if budget == "params" else self.macs(sizes)


def reference_samples(sample_rate: int) -> int:
    return int(round(REFERENCE_SECONDS * sample_rate))


# ----------------------------------------------------------------------------------------------
# Greedy global selection under a budget


def _group(structure: Structure) -> tuple[str, int]:
    """Units whose magnitudes are comparable: heads of every layer share a shape, FFN units too; CNN
    channels differ in fan-in and kernel from layer to layer, so each CNN layer is a group of its own."""
    return (structure.kind, structure.layer if structure.kind == "conv" else -1)


def plan_removal(found: Sequence[Structure], scores: Sequence[np.ndarray], sizes: Sizes, costs: CostModel,
                 budget: str, level: float) -> dict[tuple[str, int], list[int]]:
    """Kept units per (kind, layer) after removing at least ``level`` of the model's ``budget``.

    Importance is normalised per group of comparable units (:func:`_group`) and divided by the unit's
    cost relative to its group: score = (importance / group mean) / (unit cost / group mean cost). This
    is importance per unit cost under the prior that a group's importance is proportional to its cost;
    without that prior a raw importance-per-cost ranking removes every (expensive) head before any FFN
    unit, and the first CNN layers to a single channel, because a linear importance cannot see that the
    last units of a layer matter more than the first. So the budget decides how much is removed and the
    importance which units; how much each group loses follows how its importance is spread (the learned
    ``structured_l0`` is the method that trades cost against accuracy). Units go in increasing score
    order; the exact cost of the remaining sizes is recomputed after each (a channel's cost depends on its
    neighbours), stopping at the first unit that meets the budget: the overshoot is less than one
    structure. A CNN layer keeps its most important channel.
    """
    full = float(costs.cost(sizes, budget))
    unit_costs = [full - float(costs.cost(sizes.without_one(s.kind, s.layer), budget)) for s in found]
    kind_ids, layers, units, values = [], [], [], []
    for group in sorted({_group(s) for s in found}):
        members = [j for j, s in enumerate(found) if _group(s) == group]
        importance = np.concatenate([scores[j] for j in members])
        mean_importance = float(importance.mean()) or 1.0
        mean_cost = float(np.mean(np.concatenate([np.full(found[j].count, unit_costs[j]) for j in members])))
        for j in members:
            structure, score = found[j], scores[j] / mean_importance * mean_cost / max(unit_costs[j], 1e-12)
            candidates = np.arange(structure.count)
            if structure.kind == "conv":
                candidates = candidates[candidates != int(np.argmax(scores[j]))]
            kind_ids.append(np.full(len(candidates), KINDS.index(structure.kind)))
            layers.append(np.full(len(candidates), structure.layer))
            units.append(candidates)
            values.append(score[candidates])
    kind_ids, layers, units, values = (np.concatenate(a) if a else np.zeros(0)
                                       for a in (kind_ids, layers, units, values))
    order = np.lexsort((units, layers, kind_ids, values))  # by score; ties in a fixed order
    target = level * full
    current = sizes.copy()
    removed: dict[tuple[str, int], set[int]] = defaultdict(set)
    for position in order:
        kind, layer = KINDS[int(kind_ids[position])], int(layers[position])
        current.of(kind)[layer] -= 1
        removed[(kind, layer)].add(int(units[position]))
        if full - float(costs.cost(current, budget)) >= target:
            break
    else:
        reachable = 1 - float(costs.cost(current, budget)) / full
        raise ConfigError("levels", f"removing every prunable {'/'.join(sorted({s.kind for s in found}))} unit saves "
                                    f"only {reachable:.1%} of the {budget}, less than the level {level:g}")
    return {key: [i for i in range(sizes.of(key[0])[key[1]]) if i not in gone] for key, gone in removed.items()}


# ----------------------------------------------------------------------------------------------
# Meta: what was kept and what it costs


def record(meta: dict[str, Any], model: nn.Module, costs: CostModel, baseline: Sizes, params: StructuredParams,
           kept_heads: list[list[int]]) -> None:
    """Kept sizes (what ``restructure`` replays), kept head indices, and achieved cost fractions."""
    sizes = sizes_of(model)
    before_params, before_macs = int(costs.params(baseline)), int(costs.macs(baseline))
    after_params, after_macs = int(costs.params(sizes)), int(costs.macs(sizes))
    meta.update(
        budget=params.budget, prune=list(params.prune), reference_seconds=REFERENCE_SECONDS,
        sizes=sizes.to_json(), baseline_sizes=baseline.to_json(), kept_heads=kept_heads,
        params=after_params, baseline_params=before_params, params_removed=round(1 - after_params / before_params, 6),
        macs=after_macs, baseline_macs=before_macs, macs_removed=round(1 - after_macs / before_macs, 6),
    )


def _kept_heads(baseline: Sizes, keep: Keep) -> list[list[int]]:
    return [list(keep.get(("head", i), range(n))) for i, n in enumerate(baseline.head)]


def rebuild(model: nn.Module, _level: Any, _params: StructuredParams, meta: dict[str, Any]) -> nn.Module:
    """Cut a fresh baseline-shaped model to the recorded sizes (the weights come from the state dict)."""
    sizes, full = Sizes.from_json(meta["sizes"]), sizes_of(model)
    keep = {(kind, layer): list(range(n)) for kind in KINDS for layer, n in enumerate(sizes.of(kind))
            if n != full.of(kind)[layer]}
    apply_keep(model, keep)
    return model


# ----------------------------------------------------------------------------------------------
# One-shot methods: structured (magnitude) and structured_taylor


def prune_by_importance(model: nn.Module, level: float, params: MagnitudeStructuredParams | TaylorParams,
                        ctx: "CompressionContext", measure: str | None = None) -> nn.Module:
    kinds = tuple(params.prune)
    measure = measure or params.importance
    check_supported(model, kinds)
    costs = CostModel.of(model, reference_samples(ctx.sample_rate))
    baseline = sizes_of(model)
    found = structures(model, kinds)
    if measure == "taylor":
        waves = ctx.calibration_waves(int(params.calibration_utterances))
        calibration_gradients(model, waves, ctx.processor, ctx.sample_rate)
    scores = [unit_importance(s, measure) for s in found]
    model.zero_grad(set_to_none=True)
    keep = plan_removal(found, scores, baseline, costs, params.budget, float(level))
    apply_keep(model, keep)
    record(ctx.meta, model, costs, baseline, params, _kept_heads(baseline, keep))
    ctx.meta["importance"] = measure
    return model


def prune_by_taylor(model: nn.Module, level: float, params: TaylorParams, ctx: "CompressionContext") -> nn.Module:
    return prune_by_importance(model, level, params, ctx, measure="taylor")


# ----------------------------------------------------------------------------------------------
# structured_l0: HardConcrete gates and a Lagrangian budget, learned during recovery fine-tuning


class HardConcrete(nn.Module):
    """L0 gates over ``count`` units (Louizos et al. 2018), as used by HJ-Pruning and DPHuBERT.

    Training: one stretched, clamped concrete sample per forward pass (exact zeros and ones, gradients
    to ``log_alpha``). Eval: deterministic; the round(expected number kept) units with the largest
    ``log_alpha`` take Louizos' test-time value clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1), the others
    0. ``finalize`` folds exactly these values into the weights, so the pruned model computes what the
    gated model computes in eval mode.
    """

    BETA, LEFT, RIGHT = 2.0 / 3.0, -0.1, 1.1  # temperature and stretch, as in CoFi and DPHuBERT

    def __init__(self, count: int, init_drop: float) -> None:
        super().__init__()
        mean = math.log(1 - init_drop) - math.log(init_drop)
        self.log_alpha = nn.Parameter(torch.empty(count).normal_(mean, 0.01))

    def keep_probability(self) -> torch.Tensor:
        """P(gate != 0) per unit: summed, the expected number of kept units (the L0 norm)."""
        return torch.sigmoid(self.log_alpha - self.BETA * math.log(-self.LEFT / self.RIGHT))

    def deterministic(self) -> torch.Tensor:
        value = (torch.sigmoid(self.log_alpha) * (self.RIGHT - self.LEFT) + self.LEFT).clamp(0.0, 1.0)
        kept = int(round(float(self.keep_probability().sum())))
        mask = torch.zeros_like(value)
        mask[torch.argsort(self.log_alpha, descending=True)[:kept]] = 1.0
        return value * mask

    def forward(self) -> torch.Tensor:
        if not self.training:
            return self.deterministic()
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.BETA)
        return (s * (self.RIGHT - self.LEFT) + self.LEFT).clamp(0.0, 1.0)


# DPHuBERT's initial drop rates: heads and channels start open, FFN units half-open.
INIT_DROP = {"conv": 0.01, "head": 0.01, "ffn": 0.5}


def _gate_hook(gate: HardConcrete, group: int, channel_dim: int) -> Callable[[nn.Module, tuple], tuple]:
    """Scale the reader's input along the unit dimension by the gate (a head spans ``group`` features)."""

    def hook(_module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        z = gate().to(x.dtype)
        if group > 1:
            z = z.repeat_interleave(group)
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        return (x * z.view(shape), *args[1:])

    return hook


class L0Budget(nn.Module):
    """The Lagrange multipliers of the budget term, and how to compute the expected cost.

    ``lambda1`` and ``lambda2`` are trained by gradient *ascent*: a hook negates their gradients, so the
    shared optimiser's descent step raises the penalty while the gates lower it. They live in the model
    (as this module) so training checkpoints hold them; finalize removes the module.
    """

    def __init__(self, costs: CostModel, baseline: Sizes, budget: str, kinds: Sequence[str]) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))
        for multiplier in (self.lambda1, self.lambda2):
            multiplier.register_hook(torch.neg)
        self.costs, self.baseline, self.budget, self.kinds = costs, baseline, budget, tuple(kinds)

    def expected_removed(self, model: nn.Module) -> torch.Tensor:
        """Expected fraction of the budget removed under the gates' keep probabilities."""
        sizes = self.baseline.copy()
        for structure, gate in gates(model, self.kinds):
            sizes.of(structure.kind)[structure.layer] = gate.keep_probability().sum()
        full = float(self.costs.cost(self.baseline, self.budget))
        return 1 - self.costs.cost(sizes, self.budget) / full

    def penalty(self, model: nn.Module, target: float) -> torch.Tensor:
        gap = self.expected_removed(model) - target
        return self.lambda1 * gap + self.lambda2 * gap**2

    def values(self, model: nn.Module) -> dict[str, float]:
        return {"expected_removed": float(self.expected_removed(model)), "lambda1": float(self.lambda1),
                "lambda2": float(self.lambda2)}


def gates(model: nn.Module, kinds: Sequence[str] = KINDS) -> list[tuple[Structure, HardConcrete]]:
    return [(s, getattr(s.owner, GATE)) for s in structures(model, kinds) if hasattr(s.owner, GATE)]


def add_gates(model: nn.Module, level: float, params: L0Params, ctx: "CompressionContext") -> nn.Module:
    """Gate every unit of the chosen kinds; the cost model is taken before the gates exist."""
    kinds = tuple(params.prune)
    check_supported(model, kinds)
    costs = CostModel.of(model, reference_samples(ctx.sample_rate))
    baseline = sizes_of(model)
    for structure in structures(model, kinds):
        weight = structure.reader.weight
        gate = HardConcrete(structure.count, INIT_DROP[structure.kind]).to(weight.device)
        setattr(structure.owner, GATE, gate)
        channel_dim = 1 if isinstance(structure.reader, nn.Conv1d) else -1
        gate.handle = structure.reader.register_forward_pre_hook(_gate_hook(gate, structure.group, channel_dim))
    budget = L0Budget(costs, baseline, params.budget, kinds)
    setattr(model, BUDGET_MODULE, budget)
    ctx.meta["l0"] = {"target": float(level), "reg_learning_rate": float(params.reg_learning_rate),
                      "target_ramp": float(params.target_ramp),
                      "initial_expected_removed": round(float(budget.expected_removed(model)), 6)}
    return model


def target_schedule(level: float, ramp: float, steps: int) -> Callable[[int], float]:
    """The target fraction at each step: a linear ramp from 0 over ``ramp`` of the steps, as DPHuBERT."""
    ramp_steps = ramp * steps

    def target(step: int) -> float:
        return level if ramp_steps < 1 else level * min(1.0, (step + 1) / ramp_steps)

    return target


def learn_gates(model: nn.Module, ctx: "CompressionContext", recovery: Recovery | None) -> nn.Module:
    """Recovery fine-tuning with the gates and the Lagrangian budget term in the loss."""
    if recovery is None:
        raise ConfigError("recovery.steps", "structured_l0 learns its gates while fine-tuning: "
                                            "give recovery: {steps: N}")
    settings = ctx.meta["l0"]
    budget: L0Budget = getattr(model, BUDGET_MODULE)
    target = target_schedule(settings["target"], settings["target_ramp"], recovery.steps)
    rate = settings["reg_learning_rate"]
    gate_parameters = [gate.log_alpha for _, gate in gates(model, budget.kinds)]
    hooks = TrainHooks(
        extra_loss=lambda m, step: budget.penalty(m, target(step)),
        param_groups=[{"params": gate_parameters, "lr": rate, "weight_decay": 0.0},
                      {"params": [budget.lambda1, budget.lambda2], "lr": rate, "weight_decay": 0.0}],
        log_values=budget.values,
    )
    ctx.fine_tune(model, recovery, hooks=hooks)
    settings.update({f"final_{k}": round(v, 6) for k, v in budget.values(model).items()})
    return model


@torch.no_grad()
def _probe_logits(model: nn.Module) -> torch.Tensor:
    audio = cost_input(16000, 1.0)
    return model(input_values=audio.to(next(model.parameters()).device)).logits.float().cpu()


@torch.no_grad()
def remove_gates(model: nn.Module, level: float, params: L0Params, ctx: "CompressionContext") -> nn.Module:
    """Deterministic gates folded into the readers' input columns, then the closed units removed."""
    model.eval()
    budget: L0Budget = getattr(model, BUDGET_MODULE)
    gated = _probe_logits(model)
    keep: dict[tuple[str, int], list[int]] = {}
    for structure, gate in gates(model, budget.kinds):
        z = gate.deterministic()
        kept = torch.nonzero(z).flatten().tolist()
        if structure.kind == "conv" and not kept:
            # a CNN layer keeps one channel; its columns fold to 0, so it is as silent as in the gated model
            kept = [int(torch.argmax(gate.log_alpha))]
        weight = structure.reader.weight
        shape = [1] * weight.dim()
        shape[1] = -1
        weight.mul_(z.repeat_interleave(structure.group).view(shape).to(weight.dtype))
        keep[(structure.kind, structure.layer)] = kept
        gate.handle.remove()
        delattr(structure.owner, GATE)
    delattr(model, BUDGET_MODULE)
    apply_keep(model, keep)
    record(ctx.meta, model, budget.costs, budget.baseline, params, _kept_heads(budget.baseline, keep))
    # LayerNorm over CNN channels (and the feature projection's) renormalises the kept channels, so removing
    # channels is not exact there; say by how much the logits moved.
    ctx.meta["l0"]["finalize_max_logit_change"] = round(float((_probe_logits(model) - gated).abs().max()), 6)
    return model
