"""Downsampling: fewer frames through the Transformer (Zaiem et al. 2023, "speeding_inferences").

Three places to lower the frame rate by an integer factor f:

- ``signal``: resample the waveform to 16/f kHz before the CNN, which then yields f times fewer
  frames (and every CNN filter now spans f times more audio);
- ``pool``: average f consecutive frames after the CNN frontend and feature projection, before
  the Transformer encoder and its positional convolution;
- ``conv``: the same place, a learned strided Conv1d (kernel = stride = f) initialised to
  average pooling, so it starts as ``pool`` and recovery fine-tuning learns from there.

The Hugging Face model is held by :class:`DownsampledCTC`, which keeps the CTC interface
(``logits``, ``loss`` with labels, ``config``, ``_get_feat_extract_output_lengths``). Pooling is a
forward pre-hook on the HF encoder, so every module keeps its HF path (``model.wav2vec2.encoder
.layers``) for the methods chained after this one. Loading replays :func:`downsample` as
``restructure`` (no data), then the state dict fills in the learned convolution.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .context import CompressionContext
from .methods import DownsamplingParams
from .depth import transformer_encoder

log = logging.getLogger(__name__)



def ceil_div(value, factor: int):
    """Ceiling division for ints and integer tensors alike."""
    return -((-value) // factor)


def shorten_mask(mask: torch.Tensor | None, factor: int) -> torch.Tensor | None:
    """A frame mask for the pooled frames: a pooled frame is valid when all f frames it averages are.

    With prefix masks this gives floor(n / f) valid frames for n valid input frames, the length
    :meth:`DownsampledCTC._get_feat_extract_output_lengths` reports; a window straddling the end of
    an utterance would mix in padding, so it is masked like padding.
    """
    if mask is None:
        return None
    frames = mask.shape[1] // factor
    windows = mask[:, : frames * factor].reshape(mask.shape[0], frames, factor)
    return windows.bool().all(dim=-1).to(mask.dtype)


class FrameDownsampler(torch.nn.Module):
    """Averages (``pool``) or convolves (``conv``) every ``factor`` frames of (batch, frames, hidden)."""

    def __init__(self, factor: int, hidden_size: int, learned: bool) -> None:
        super().__init__()
        self.factor = factor
        self.conv = torch.nn.Conv1d(hidden_size, hidden_size, factor, stride=factor) if learned else None
        if self.conv is not None:
            with torch.no_grad():  # average pooling: output channel c is the mean of input channel c
                self.conv.weight.copy_(torch.eye(hidden_size).unsqueeze(-1).expand(-1, -1, factor) / factor)
                self.conv.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        channels_first = hidden.transpose(1, 2)
        if self.conv is None:
            shorter = torch.nn.functional.avg_pool1d(channels_first, self.factor, self.factor)
        else:
            shorter = self.conv(channels_first.to(self.conv.weight.dtype)).to(hidden.dtype)
        return shorter.transpose(1, 2)

    def encoder_pre_hook(self, _encoder: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Shorten the encoder's input frames and its frame mask alike (HF calls
        ``encoder(hidden_states, attention_mask=...)``; both forms of either argument are handled)."""
        args, kwargs = list(args), dict(kwargs)
        if args:
            args[0] = self(args[0])
        else:
            kwargs["hidden_states"] = self(kwargs["hidden_states"])
        if "attention_mask" in kwargs:
            kwargs["attention_mask"] = shorten_mask(kwargs["attention_mask"], self.factor)
        elif len(args) > 1:
            args[1] = shorten_mask(args[1], self.factor)
        return tuple(args), kwargs


class DownsampledCTC(torch.nn.Module):
    """A wav2vec2-family ``*ForCTC`` model running at 1/``factor`` of its frame rate."""

    def __init__(self, model: torch.nn.Module, factor: int, kind: str) -> None:
        super().__init__()
        self.model = model
        self.factor = factor
        self.kind = kind
        self.sample_rate = 16000  # for messages only; prepare sets the pipeline's rate
        self.downsample = None
        if kind != "signal":
            self.downsample = FrameDownsampler(factor, model.config.hidden_size, learned=kind == "conv")
            transformer_encoder(model).register_forward_pre_hook(self.downsample.encoder_pre_hook, with_kwargs=True)
        # Training batches whose frames are too few for their labels (a CTC alignment needs
        # labels + repeats frames): counted for the card, warned about once.
        self.ctc_checked = 0
        self.ctc_infeasible = 0

    @property
    def config(self):
        return self.model.config

    @property
    def frame_ms(self) -> float:
        samples = 1
        for stride in self.config.conv_stride:
            samples *= stride
        return 1000.0 * samples * self.factor / self.sample_rate

    def front_end_samples(self, samples: torch.Tensor) -> torch.Tensor:
        """How many of each utterance's samples reach the CNN front end (signal downsampling keeps 1 in factor)."""
        return ceil_div(samples, self.factor) if self.kind == "signal" else samples

    def _get_feat_extract_output_lengths(self, input_lengths, add_adapter: bool | None = None):
        """Logit frames per utterance of ``input_lengths`` samples (at the original rate)."""
        if self.kind == "signal":
            return self.model._get_feat_extract_output_lengths(ceil_div(input_lengths, self.factor), add_adapter)
        return self.model._get_feat_extract_output_lengths(input_lengths, add_adapter) // self.factor

    def freeze_feature_encoder(self) -> None:
        self.model.freeze_feature_encoder()

    def resample(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """The waveform at 1/factor of its rate, and its mask.

        Padding is zeros (the feature extractor's padding value) and torchaudio pads with zeros
        too, so an utterance's ceil(n / f) output samples are the same padded or alone.
        """
        import torchaudio.functional

        shorter = torchaudio.functional.resample(input_values, self.factor, 1)
        if attention_mask is not None:
            lengths = ceil_div(attention_mask.sum(-1), self.factor)
            positions = torch.arange(shorter.shape[-1], device=shorter.device)
            attention_mask = (positions[None, :] < lengths[:, None]).to(attention_mask.dtype)
        return shorter, attention_mask

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any):
        from transformers.modeling_outputs import CausalLMOutput

        samples = attention_mask.sum(-1) if attention_mask is not None else torch.full(
            input_values.shape[:1], input_values.shape[-1], device=input_values.device)
        if self.kind == "signal":
            input_values, attention_mask = self.resample(input_values, attention_mask)
        out = self.model(input_values, attention_mask=attention_mask, **kwargs)
        loss = None
        if labels is not None:
            frames = self._get_feat_extract_output_lengths(samples).to(torch.long)
            loss = self.ctc_loss(out.logits, labels, frames)
        return CausalLMOutput(loss=loss, logits=out.logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def ctc_loss(self, logits: torch.Tensor, labels: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """HF's CTC loss on the shortened frames.

        Infinite losses (too few frames for the labels) are always zeroed, whatever the checkpoint's
        ``ctc_zero_infinity``: at 80 ms frames some utterances cannot be aligned, and one such
        utterance must not turn a batch's gradient into NaN.
        """
        self._count_infeasible(labels, frames)
        config = self.config
        return self.model.loss_function(logits=logits, labels=labels, logit_lengths=frames,
                                        blank_token_id=config.pad_token_id, reduction=config.ctc_loss_reduction,
                                        zero_infinity=True)

    def _count_infeasible(self, labels: torch.Tensor, frames: torch.Tensor) -> None:
        valid = (labels != -100) & (labels != self.config.pad_token_id)
        repeats = (valid[:, 1:] & valid[:, :-1] & (labels[:, 1:] == labels[:, :-1])).sum(-1)
        needed = valid.sum(-1) + repeats
        infeasible = int((frames.to(needed.device) < needed).sum())
        if infeasible and not self.ctc_infeasible:
            log.warning("downsampling %s x%d (%.0f ms frames): %.0f%% of a training batch (%d of %d utterances) has "
                        "fewer frames than its labels need (labels + repeats); their CTC loss is zeroed (the card "
                        "records the fraction over all of training)", self.kind, self.factor, self.frame_ms,
                        100.0 * infeasible / len(labels), infeasible, len(labels))
        self.ctc_checked += len(labels)
        self.ctc_infeasible += infeasible


def downsampled(model: torch.nn.Module) -> DownsampledCTC | None:
    return next((m for m in model.modules() if isinstance(m, DownsampledCTC)), None)


def downsample(model: torch.nn.Module, level: float, params: DownsamplingParams,
               context_or_meta: CompressionContext | dict | None = None) -> torch.nn.Module:
    """Wrap ``model`` to run at 1/level of its frame rate: ``prepare`` (given the context) and
    ``restructure`` (given the step's recorded meta, which it does not need) alike."""
    wrapper = DownsampledCTC(model, int(level), params.kind)
    if isinstance(context_or_meta, CompressionContext):
        wrapper.sample_rate = context_or_meta.sample_rate
        context_or_meta.meta.update(kind=wrapper.kind, factor=wrapper.factor, frame_ms=wrapper.frame_ms)
    return wrapper


def record_alignment(model: torch.nn.Module, _level: Any, _params: DownsamplingParams,
                     context: CompressionContext) -> torch.nn.Module:
    """Card: how many training utterances had too few frames for CTC (their loss was zeroed)."""
    wrapper = downsampled(model)
    if wrapper is not None and wrapper.ctc_checked:
        context.meta.update(ctc_checked=wrapper.ctc_checked, ctc_infeasible=wrapper.ctc_infeasible,
                            ctc_infeasible_fraction=round(wrapper.ctc_infeasible / wrapper.ctc_checked, 4))
    return model


