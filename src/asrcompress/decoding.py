"""CTC decoding, batched over length-sorted utterances: greedy best path, or beam search with a KenLM
n-gram through pyctcdecode. The model runs once per batch; the search runs per utterance on its frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .audio import read_audio
from .io import atomic_path, write_json
from .manifest import read_manifest, resolve_audio
from .search import GREEDY, DecoderSpec, Search, beam_search

MAX_PADDING = 0.1  # at most 10% padded samples per batch (decode.max_padding)


def greedy_ctc(logits: torch.Tensor, frame_lengths: torch.Tensor | Sequence[int], blank: int) -> list[list[int]]:
    """Best path per utterance: argmax per frame, merge repeats, drop blanks.

    ``logits`` is (batch, frames, vocab); frames past each utterance's length are ignored.
    """
    best = logits.argmax(dim=-1)
    results = []
    for row, length in zip(best, frame_lengths):
        path = row[: int(length)]
        if path.numel() == 0:
            results.append([])
            continue
        collapsed = torch.unique_consecutive(path)
        results.append([int(t) for t in collapsed if int(t) != blank])
    return results


def ids_to_text(ids: Sequence[int], tokenizer) -> str:
    """Token ids (already collapsed) to words: the word delimiter becomes a space."""
    return tokenizer.decode(list(ids), group_tokens=False, skip_special_tokens=True).strip()


@dataclasses.dataclass
class DecodeTiming:
    """Cost of decoding one test set. The model runs once for all decoders; each decoder's wall time is
    that forward time plus its own search. Loading the model and reading audio are not counted."""

    n_utterances: int
    audio_s: float
    forward_s: float
    search_s: dict[str, float]
    device: str
    threads: int
    batch_seconds: float

    def wall_s(self, decoder: str) -> float:
        return self.forward_s + self.search_s[decoder]

    def rtf(self, decoder: str) -> float:
        return self.wall_s(decoder) / self.audio_s if self.audio_s else float("nan")

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("search_s")
        record["decoders"] = {name: {"search_s": s, "wall_s": self.wall_s(name), "rtf": self.rtf(name)}
                              for name, s in self.search_s.items()}
        return record


def length_sorted_batches(lengths: Sequence[int], max_samples: int, max_padding: float | None = None) -> list[list[int]]:
    """Indices sorted by length, grouped so each padded batch holds at most ``max_samples`` samples and, with
    ``max_padding``, at most that fraction of padding over its real audio.

    Bounding the padding matters on a CPU: padded samples cost as much as real ones there, and with long
    batches of LibriSpeech-like lengths (2-35 s) they are a fifth of the work.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    real = 0
    for index in order:
        padded = lengths[index] * (len(batches[-1]) + 1) if batches else 0
        fits = bool(batches) and padded <= max_samples
        if fits and max_padding is not None:
            fits = padded <= (1 + max_padding) * (real + lengths[index])
        if fits:
            batches[-1].append(index)
            real += lengths[index]
        else:
            batches.append([index])
            real = lengths[index]
    return batches


class MaskedGroupNorm(torch.nn.Module):
    """The group norm of a wav2vec2-style CNN front end, with statistics over each utterance's own frames.

    wav2vec2-base, HuBERT-base and WavLM-base normalise the first convolution's output over time; in a padded
    batch the zeros would enter those statistics and change every frame of the shorter utterances (Hugging
    Face advises not to batch such models). With the valid frame counts set per batch, padded decoding gives
    the logits of decoding each utterance alone. Later layers are exact anyway: a valid output frame of a
    convolution never reaches into padding, and the encoder gets the attention mask.
    """

    def __init__(self, norm: torch.nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm
        self.valid_frames: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.valid_frames is None:
            return self.norm(hidden)
        batch, channels, length = hidden.shape
        grouped = hidden.float().reshape(batch, self.norm.num_groups, -1, length)
        valid = (torch.arange(length, device=hidden.device)[None] < self.valid_frames.to(hidden.device)[:, None])
        weight = valid[:, None, None, :].float()
        count = weight.sum(-1, keepdim=True) * grouped.shape[2]
        mean = (grouped * weight).sum((-2, -1), keepdim=True) / count
        var = (((grouped - mean) * weight) ** 2).sum((-2, -1), keepdim=True) / count
        normed = ((grouped - mean) / torch.sqrt(var + self.norm.eps)).reshape(batch, channels, length)
        if self.norm.affine:
            normed = normed * self.norm.weight.float()[:, None] + self.norm.bias.float()[:, None]
        return normed.to(hidden.dtype)


def _group_norm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for name, module in model.named_modules()
            if name.endswith("conv_layers.0") and isinstance(getattr(module, "layer_norm", None), torch.nn.GroupNorm)]


def has_group_norm_front_end(model: torch.nn.Module) -> bool:
    return bool(_group_norm_layers(model))


@contextlib.contextmanager
def masked_group_norm(model: torch.nn.Module) -> Iterator[list[tuple[MaskedGroupNorm, torch.nn.Conv1d]]]:
    """While inside, every CNN front end's time-normalising group norm is a :class:`MaskedGroupNorm`.

    Yields each installed norm with the convolution before it (its kernel and stride give the valid frames);
    the original modules are put back on exit, so training and saving never see the wrapper.
    """
    installed = [(module, MaskedGroupNorm(module.layer_norm)) for module in _group_norm_layers(model)]
    try:
        for layer, masked in installed:
            layer.layer_norm = masked
        yield [(masked, layer.conv) for layer, masked in installed]
    finally:
        for layer, masked in installed:
            layer.layer_norm = masked.norm


def set_valid_samples(norms: Sequence[tuple[MaskedGroupNorm, torch.nn.Conv1d]], samples: torch.Tensor) -> None:
    for norm, conv in norms:
        norm.valid_frames = torch.div(samples - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1


def model_inputs(processor, waves: Sequence[np.ndarray], sample_rate: int) -> dict[str, torch.Tensor]:
    """Padded, per-utterance normalised waveforms and their attention mask (training and decoding alike)."""
    inputs = processor.feature_extractor(
        list(waves), sampling_rate=sample_rate, padding=True, return_attention_mask=True, return_tensors="pt"
    )
    return {"input_values": inputs.input_values, "attention_mask": inputs.attention_mask}


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype the model computes in (float32 unless a method changed it)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def pick_device(cpu_only: bool = False) -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() and not cpu_only else torch.device("cpu")


def transcribe(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    search: Search | None = None, max_padding: float | None = MAX_PADDING,
) -> tuple[list[str], float]:
    """Transcripts in input order and the wall seconds spent on forward passes and search."""
    hypotheses, forward_s, search_s = transcribe_all(model, processor, waves, sample_rate, batch_seconds, device, {"": search},
                                                     max_padding)
    return hypotheses[""], forward_s + search_s[""]


@torch.inference_mode()
def transcribe_all(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    searches: dict[str, Search | None], max_padding: float | None = MAX_PADDING,
) -> tuple[dict[str, list[str]], float, dict[str, float]]:
    """Every decoder's transcripts from one forward pass per batch, in input order.

    A search decodes one utterance's log-probabilities; ``None`` is greedy best path over the whole batch.
    Returns the transcripts per decoder, the forward seconds, and each decoder's search seconds.
    """
    model = model.to(device).eval()
    if device.type == "cpu" and has_group_norm_front_end(model):
        # Measured (benchmarks/decode_benchmark.py, wav2vec2-base shape, 2 threads): on a CPU a batched group-norm
        # front end is 18% slower than one utterance at a time, so such models decode unpadded there.
        max_padding = 0.0
    blank = processor.tokenizer.pad_token_id
    dtype = model_dtype(model)
    hypotheses = {name: [""] * len(waves) for name in searches}
    search_s = dict.fromkeys(searches, 0.0)
    forward_s = 0.0
    for index in length_sorted_batches([len(w) for w in waves], int(batch_seconds * sample_rate), max_padding):
        inputs = model_inputs(processor, [waves[i] for i in index], sample_rate)
        samples = inputs["attention_mask"].sum(-1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        inputs["input_values"] = inputs["input_values"].to(dtype)  # half-precision variants take half inputs
        with masked_group_norm(model) as norms:
            # A signal-downsampling wrapper feeds its front end fewer samples than the waveform has.
            set_valid_samples(norms, model.front_end_samples(samples) if hasattr(model, "front_end_samples") else samples)
            logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
        frames = model._get_feat_extract_output_lengths(samples).tolist()
        forward_s += time.perf_counter() - started
        log_probs = None
        for name, search in searches.items():
            started = time.perf_counter()
            if search is None:
                texts = [ids_to_text(ids, processor.tokenizer) for ids in greedy_ctc(logits, frames, blank)]
            else:
                log_probs = torch.log_softmax(logits, dim=-1).numpy() if log_probs is None else log_probs
                texts = [search(log_probs[row, : int(n)]) for row, n in enumerate(frames)]
            search_s[name] += time.perf_counter() - started
            for i, text in zip(index, texts):
                hypotheses[name][i] = text
    return hypotheses, forward_s, search_s


def make_search(decoder: DecoderSpec, processor, vocab_size: int, lm_path: str | None) -> Search | None:
    if decoder.kind == "greedy":
        return None
    return beam_search(decoder, processor.tokenizer, vocab_size, lm_path)


def write_hypotheses(path: str, utterances: Sequence, hypotheses: Sequence[str]) -> None:
    """JSONL, one record per utterance: id, speaker, reference, hypothesis (and the corpus subset if known)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for utt, hyp in zip(utterances, hypotheses):
                record = {"id": utt.id, "speaker": utt.speaker, "reference": utt.text, "hypothesis": hyp}
                if utt.extra.get("subset"):
                    record["subset"] = utt.extra["subset"]
                handle.write(json.dumps(record) + "\n")


def decode_test_set(
    variant_dir: str, condition_manifest: str, hyps_path: str | dict[str, str], timing_path: str, sample_rate: int,
    batch_seconds: float, threads: int, decoders: Sequence[DecoderSpec] = (GREEDY,), lm_paths: dict[str, str] | None = None,
    max_padding: float | None = MAX_PADDING,
) -> DecodeTiming:
    """Decode one condition with one variant and every decoder: hypotheses (JSONL) per decoder, one timing record.

    ``hyps_path`` maps decoder names to files (a single path for a single decoder); ``lm_paths`` maps
    language-model names to their ARPA files.
    """
    hyps_paths = hyps_path if isinstance(hyps_path, dict) else {decoders[0].name: hyps_path}
    missing = [d.name for d in decoders if d.name not in hyps_paths]
    if missing:
        raise ValueError(f"no hypothesis file given for decoder(s) {', '.join(missing)}")
    if threads:
        torch.set_num_threads(threads)
    from .compression.store import load_variant  # the store imports the training loop, which imports this module

    from .io import read_json

    device = pick_device(read_json(f"{variant_dir}/card.json").get("cpu_only", False))
    model, processor, card = load_variant(variant_dir, device)
    utterances = read_manifest(condition_manifest)
    waves = [read_audio(resolve_audio(u, condition_manifest), sample_rate) for u in utterances]
    searches = {d.name: make_search(d, processor, model.config.vocab_size, (lm_paths or {}).get(d.language_model))
                for d in decoders}
    hypotheses, forward_s, search_s = transcribe_all(model, processor, waves, sample_rate, batch_seconds, device, searches,
                                                     max_padding)
    for name, texts in hypotheses.items():
        write_hypotheses(hyps_paths[name], utterances, texts)
    timing = DecodeTiming(len(utterances), sum(len(w) for w in waves) / sample_rate, forward_s, search_s, device.type,
                          torch.get_num_threads(), batch_seconds)
    write_json(timing_path, timing.to_json())
    return timing
