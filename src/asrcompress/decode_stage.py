"""The decode stage: load a variant, read a condition's manifest, decode it, write hypotheses and timings.

It sits above the store (``load_variant``) and the export stage (the ONNX Runtime backend), so the CTC library
(``decoding``) stays below both: the training loop and the cost stage import that library, and the store imports
them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Sequence

import torch

from .audio import read_audio
from .compression.store import load_variant
from .decoding import GPU_BATCH_SECONDS, MAX_PADDING, DecodeTiming, decode_waves, make_search
from .device import pick_device, resolve_precision
from .export import onnx_runtime_model
from .io import atomic_path, read_json, write_json
from .manifest import read_manifest, resolve_audio
from .search import GREEDY, DecoderSpec

log = logging.getLogger(__name__)


def write_hypotheses(path: str, utterances: Sequence, hypotheses: Sequence[str]) -> None:
    """JSONL, one record per utterance: id, speaker, reference, hypothesis (and the corpus subset if known)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for utt, hyp in zip(utterances, hypotheses):
                record = {"id": utt.id, "speaker": utt.speaker, "reference": utt.text, "hypothesis": hyp}
                if utt.extra.get("subset"):
                    record["subset"] = utt.extra["subset"]
                handle.write(json.dumps(record) + "\n")


@dataclasses.dataclass(frozen=True)
class TestSetJob:
    """One condition's test set to decode: its manifest, a hypothesis file per decoder, and the timing record."""

    manifest: str
    hyps_paths: dict[str, str]
    timing_path: str

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "TestSetJob":
        return cls(entry["manifest"], dict(entry["hyps_paths"]), entry["timing_path"])


def decode_test_set(
    variant_dir: str, condition_manifest: str, hyps_path: str | dict[str, str], timing_path: str, sample_rate: int,
    batch_seconds: float, threads: int, decoders: Sequence[DecoderSpec] = (GREEDY,), lm_paths: dict[str, str] | None = None,
    max_padding: float | None = MAX_PADDING, *, precision: str = "fp32", gpu_batch_seconds: float = GPU_BATCH_SECONDS,
    compile: bool = False,
) -> DecodeTiming:
    """Decode one condition with one variant and every decoder: hypotheses (JSONL) per decoder, one timing record.

    ``hyps_path`` maps decoder names to files (a single path for a single decoder); ``lm_paths`` maps
    language-model names to their ARPA files.
    """
    hyps_paths = hyps_path if isinstance(hyps_path, dict) else {decoders[0].name: hyps_path}
    job = TestSetJob(condition_manifest, hyps_paths, timing_path)
    return decode_test_sets(variant_dir, [job], sample_rate, batch_seconds, threads, decoders, lm_paths, max_padding,
                            precision=precision, gpu_batch_seconds=gpu_batch_seconds, compile=compile)[0]


def decode_test_sets(
    variant_dir: str, jobs: Sequence[TestSetJob], sample_rate: int, batch_seconds: float, threads: int,
    decoders: Sequence[DecoderSpec] = (GREEDY,), lm_paths: dict[str, str] | None = None,
    max_padding: float | None = MAX_PADDING, *, precision: str = "fp32", gpu_batch_seconds: float = GPU_BATCH_SECONDS,
    compile: bool = False, onnx_dir: str | None = None,
) -> list[DecodeTiming]:
    """Decode several conditions' test sets with one variant, loading the model and the searches once.

    A decode job's fixed cost is mostly importing torch and transformers (about 7 s on a 2-core CPU, measured with
    ``python -X importtime``) and loading the model and LM; decoding many small test sets in one process pays it
    once (``decode.one_job_per: variant``). Each test set gets its own hypotheses and timing record, identical to
    what a job of its own writes. ``onnx_dir`` (``decode.backend: onnxruntime``) is the variant's export folder:
    its graph decodes on the CPU when its export check passed, else the torch variant does (logged).
    """
    for job in jobs:
        missing = [d.name for d in decoders if d.name not in job.hyps_paths]
        if missing:
            raise ValueError(f"no hypothesis file given for decoder(s) {', '.join(missing)} of {job.manifest}")
    if threads:
        torch.set_num_threads(threads)
    # onnxruntime is the CPU package: a variant decoded through ONNX Runtime decodes on the CPU
    device = pick_device(read_json(f"{variant_dir}/card.json").get("cpu_only", False) or onnx_dir is not None)
    resolve_precision(precision, device)  # a bad precision fails before the model and audio are loaded
    model, processor, card = load_variant(variant_dir, device)
    if onnx_dir is not None:
        model = onnx_runtime_model(model, onnx_dir, torch.get_num_threads())
    backend = "onnxruntime" if getattr(model, "runs_unpadded", False) else "torch"
    searches = {d.name: make_search(d, processor, model.config.vocab_size, (lm_paths or {}).get(d.language_model))
                for d in decoders}
    timings = []
    for job in jobs:
        utterances = read_manifest(job.manifest)
        waves = [read_audio(resolve_audio(u, job.manifest), sample_rate) for u in utterances]
        run = decode_waves(model, processor, waves, sample_rate, batch_seconds, device, searches, max_padding,
                           precision=precision, gpu_batch_seconds=gpu_batch_seconds, compile=compile)
        for name, texts in run.hypotheses.items():
            write_hypotheses(job.hyps_paths[name], utterances, texts)
        timing = DecodeTiming(len(utterances), sum(len(w) for w in waves) / sample_rate, run.forward_s, run.search_s,
                              device.type, torch.get_num_threads(), run.batch_seconds, run.precision, run.compiled,
                              backend)
        write_json(job.timing_path, timing.to_json())
        log.info("decoded %s: %d utterances, forward %.2f s", job.manifest, len(utterances), run.forward_s)
        timings.append(timing)
    return timings
