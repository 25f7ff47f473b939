"""CTC decoding, batched over length-sorted utterances: greedy best path, or beam search with a KenLM
n-gram through pyctcdecode. The model runs once per batch; the search runs per utterance on its frames.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Sequence

import numpy as np
import torch

from .audio import read_audio
from .search import GREEDY, DecoderSpec, Search, beam_search
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


def transcribe(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    search: Search | None = None,
) -> tuple[list[str], float]:
    """Transcripts in input order and the wall seconds spent on forward passes and search."""
    hypotheses, forward_s, search_s = transcribe_all(model, processor, waves, sample_rate, batch_seconds, device, {"": search})
    return hypotheses[""], forward_s + search_s[""]


@torch.inference_mode()
def transcribe_all(
    model, processor, waves: Sequence[np.ndarray], sample_rate: int, batch_seconds: float, device: torch.device,
    searches: dict[str, Search | None],
) -> tuple[dict[str, list[str]], float, dict[str, float]]:
    """Every decoder's transcripts from one forward pass per batch, in input order.

    A search decodes one utterance's log-probabilities; ``None`` is greedy best path over the whole batch.
    Returns the transcripts per decoder, the forward seconds, and each decoder's search seconds.
    """
    model = model.to(device).eval()
    blank = processor.tokenizer.pad_token_id
    dtype = model_dtype(model)
    hypotheses = {name: [""] * len(waves) for name in searches}
    search_s = dict.fromkeys(searches, 0.0)
    forward_s = 0.0
    for index in length_sorted_batches([len(w) for w in waves], int(batch_seconds * sample_rate)):
        inputs = model_inputs(processor, [waves[i] for i in index], sample_rate)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        inputs["input_values"] = inputs["input_values"].to(dtype)  # half-precision variants take half inputs
        logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
        frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
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
    hypotheses, forward_s, search_s = transcribe_all(model, processor, waves, sample_rate, batch_seconds, device, searches)
    for name, texts in hypotheses.items():
        write_hypotheses(hyps_paths[name], utterances, texts)
    timing = DecodeTiming(len(utterances), sum(len(w) for w in waves) / sample_rate, forward_s, search_s, device.type,
                          torch.get_num_threads(), batch_seconds)
    write_json(timing_path, timing.to_json())
    return timing
