"""Depth reduction: fewer Transformer layers (Zaiem et al. 2023; LayerDrop, Fan et al. 2020).

Both methods delete whole encoder layers and lower ``config.num_hidden_layers`` to match, so
the variant is an ordinary Hugging Face model: ``save_pretrained``/``from_pretrained`` rebuild it
with no ``restructure`` step. The encoder's other parts stay: the positional convolution, and the
stable-layer-norm encoder's final layer norm, which then normalises the last *kept* layer's output
(what Zaiem et al. do when they cut WavLM-large's top layers).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import ConfigError
from .context import CompressionContext
from .methods import LayerRemovalParams
from .registry import Params, step_key

log = logging.getLogger(__name__)

_PROBE = "_asrcompress_layerdrop_probe"  # attribute on the encoder while recovery runs with LayerDrop


def transformer_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The Transformer encoder of a wav2vec2-family CTC model, inside any wrapper.

    Found by shape rather than attribute path, so it works for wav2vec2, HuBERT, WavLM and
    data2vec-audio alike and inside the downsampling wrapper (the adapter also has ``layers`` but
    no positional convolution).
    """
    found = [m for m in model.modules()
             if isinstance(getattr(m, "layers", None), torch.nn.ModuleList) and hasattr(m, "pos_conv_embed")]
    if len(found) != 1:
        raise TypeError(f"{type(model).__name__}: expected one Transformer encoder (layers + pos_conv_embed), "
                        f"found {len(found)}")
    return found[0]


def layer_count(model: torch.nn.Module) -> int:
    return len(transformer_encoder(model).layers)


def keep_layers(model: torch.nn.Module, kept: list[int]) -> torch.nn.Module:
    """Keep only the encoder layers at ``kept`` (ascending), in place; the config follows."""
    encoder = transformer_encoder(model)
    layers = list(encoder.layers)
    chosen = [layers[i] for i in kept]
    # WavLM: only layer 0 owns the relative-position embedding; the other layers reuse the bias it
    # computes. Handing it to the new first layer keeps the computation, and gives the state dict
    # the layout a fresh WavLM of len(kept) layers has, so from_pretrained loads it.
    first = getattr(layers[0], "attention", None)
    if hasattr(first, "rel_attn_embed") and not hasattr(chosen[0].attention, "rel_attn_embed"):
        chosen[0].attention.rel_attn_embed = first.rel_attn_embed
    encoder.layers = torch.nn.ModuleList(chosen)
    model.config.num_hidden_layers = len(kept)
    return model


# ----------------------------------------------------------------------------------------------
# layer_removal: keep the first (or last) k layers


def kept_by_position(total: int, count: int, keep: str) -> list[int]:
    return list(range(count)) if keep == "first" else list(range(total - count, total))


def remove_layers(model: torch.nn.Module, level: float, params: LayerRemovalParams,
                  context: CompressionContext) -> torch.nn.Module:
    total, count = layer_count(model), int(level)
    if count > total:
        raise ConfigError(step_key("layer_removal", level),
                          f"keeps {count} Transformer layers but the model has only {total}")
    kept = kept_by_position(total, count, params.keep)
    context.meta.update(layers_before=total, kept_layers=kept)
    return keep_layers(model, kept)


# ----------------------------------------------------------------------------------------------
# layerdrop: recovery with LayerDrop at rate p, then keep every other layer (at p = 0.5)


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` of ``total`` layer indices, evenly spread, starting at 0.

    This is Fan et al.'s "every other" pruning: at rate p = 1/n it drops the layers whose 1-based
    depth is a multiple of n (0, 2, 4, ... kept at p = 0.5; 3, 7, 11 dropped of 12 at p = 0.25).
    """
    return [j * total // count for j in range(count)]


def layers_kept(total: int, rate: float) -> int:
    """round(total * (1 - rate)), halves rounded up (Python's round would round 2.5 down)."""
    return int(total * (1.0 - rate) + 0.5)


class _DropProbe:
    """Counts encoder passes and layer passes in training mode, to record the LayerDrop rate that
    recovery actually ran with (HF applies ``config.layerdrop`` inside the encoder's forward)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.encoder_passes = 0
        self.layer_passes = 0
        self.layers = len(encoder.layers)
        self.handles = [encoder.register_forward_pre_hook(self._count_encoder)]
        self.handles += [layer.register_forward_pre_hook(self._count_layer) for layer in encoder.layers]

    def _count_encoder(self, module: torch.nn.Module, _args: Any) -> None:
        self.encoder_passes += module.training

    def _count_layer(self, module: torch.nn.Module, _args: Any) -> None:
        self.layer_passes += module.training

    def remove(self) -> float | None:
        for handle in self.handles:
            handle.remove()
        possible = self.encoder_passes * self.layers
        return round(1.0 - self.layer_passes / possible, 4) if possible else None


def start_layerdrop(model: torch.nn.Module, level: float, _params: Params,
                    context: CompressionContext) -> torch.nn.Module:
    """Train with LayerDrop at ``level`` (HF's own, in the encoder's forward, training mode only)."""
    total = layer_count(model)
    if layers_kept(total, level) < 1:
        raise ConfigError(step_key("layerdrop", level), f"keeps no layer of the model's {total}")
    context.meta.update(layers_before=total, layerdrop_before=model.config.layerdrop)
    model.config.layerdrop = float(level)
    encoder = transformer_encoder(model)
    setattr(encoder, _PROBE, _DropProbe(encoder))
    return model


def prune_evenly(model: torch.nn.Module, level: float, _params: Params,
                 context: CompressionContext) -> torch.nn.Module:
    """Restore the baseline's LayerDrop setting, record the rate seen in training, keep evenly spaced layers."""
    encoder = transformer_encoder(model)
    probe = getattr(encoder, _PROBE, None)
    if probe is not None:
        delattr(encoder, _PROBE)
        context.meta["observed_drop_rate"] = probe.remove()  # None when no recovery ran
    model.config.layerdrop = context.meta.get("layerdrop_before", model.config.layerdrop)
    total = layer_count(model)
    kept = evenly_spaced(total, layers_kept(total, level))
    context.meta["kept_layers"] = kept
    log.info("layerdrop %.2f: keeping layers %s of %d", level, kept, total)
    return keep_layers(model, kept)


