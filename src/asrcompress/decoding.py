"""Greedy CTC decoding, batched over length-sorted utterances."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Sequence

import numpy as np
import torch

from .audio import read_audio
from .io import atomic_path, write_json
from .manifest import read_manifest, resolve_audio


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
    """Cost of decoding one test set; the RTF counts the model forward and the search, not loading."""

    n_utterances: int
    audio_s: float
    wall_s: float
    device: str
    threads: int
    batch_seconds: float

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s if self.audio_s else float("nan")


def length_sorted_batches(lengths: Sequence[int], max_samples: int) -> list[list[int]]:
    """Indices sorted by length, grouped so each padded batch holds at most ``max_samples`` samples."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches and lengths[index] * (len(batches[-1]) + 1) <= max_samples:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


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


@torch.inference_mode()
def transcribe(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device
) -> tuple[list[str], float]:
    """Greedy transcripts in input order, and the wall seconds spent on forward passes and search."""
    model = model.to(device).eval()
    blank = processor.tokenizer.pad_token_id
    dtype = model_dtype(model)
    hypotheses: list[str] = [""] * len(waves)
    wall = 0.0
    for index in length_sorted_batches([len(w) for w in waves], int(batch_seconds * sample_rate)):
        inputs = model_inputs(processor, [waves[i] for i in index], sample_rate)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        inputs["input_values"] = inputs["input_values"].to(dtype)  # half-precision variants take half inputs
        logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float()
        frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
        paths = greedy_ctc(logits.cpu(), frames, blank)
        wall += time.perf_counter() - started
        for i, ids in zip(index, paths):
            hypotheses[i] = ids_to_text(ids, processor.tokenizer)
    return hypotheses, wall


def decode_test_set(
    variant_dir: str, condition_manifest: str, hyps_path: str, timing_path: str, sample_rate: int, batch_seconds: float, threads: int
) -> DecodeTiming:
    """Decode one condition with one variant: per-utterance hypotheses (JSONL) and a timing record."""
    if threads:
        torch.set_num_threads(threads)
    from .compression.store import load_variant  # the store imports the training loop, which imports this module

    from .io import read_json

    device = pick_device(read_json(f"{variant_dir}/card.json").get("cpu_only", False))
    model, processor, card = load_variant(variant_dir, device)
    utterances = read_manifest(condition_manifest)
    waves = [read_audio(resolve_audio(u, condition_manifest), sample_rate) for u in utterances]
    hypotheses, wall = transcribe(model, processor, waves, sample_rate, batch_seconds, device)
    with atomic_path(hyps_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for utt, hyp in zip(utterances, hypotheses):
                handle.write(json.dumps({"id": utt.id, "reference": utt.text, "hypothesis": hyp}) + "\n")
    timing = DecodeTiming(len(utterances), sum(len(w) for w in waves) / sample_rate, wall, device.type, torch.get_num_threads(), batch_seconds)
    write_json(timing_path, {**dataclasses.asdict(timing), "rtf": timing.rtf})
    return timing
