"""The export stage: a variant folder to its ONNX graph, checked against the torch variant, and its record.

A variant that cannot export gets a record naming the operator (status ``failed``) and no graph; the job
still succeeds, so the rest of the DAG runs, and a decode that asked for ONNX Runtime decodes it with torch.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import torch

from .audio import read_audio
from .compression.store import load_variant
from .cost import cost_input, cpu_forward_ms
from .device import model_dtype
from .deploy import (
    EXPORT_RECORD, ONNX_FILE, OPSET, ExportCheck, ExportError, OnnxCTCModel, compare_transcripts, export_onnx,
    logit_difference, ort_forward_ms,
)
from .io import atomic_directory, read_json, write_json
from .manifest import read_manifest, resolve_audio

log = logging.getLogger(__name__)


def export_variant(
    variant_dir: str | os.PathLike[str], check_manifest: str, out_dir: str | os.PathLike[str], sample_rate: int, *,
    opset: int = OPSET, check_utterances: int = 200, logits_atol: float = 1e-3, cost_seconds: float = 10.0,
    cost_repeats: int = 3, cost_threads: int = 1, threads: int = 1,
) -> ExportCheck:
    """Export the variant, compare its logits on the fixed cost input and its greedy transcripts on the first
    ``check_utterances`` of ``check_manifest`` with the torch variant's, time both on the cost input, and
    write ``out_dir`` (the graph when it exported, and ``export.json``) in one rename."""
    torch.set_num_threads(threads)
    model, processor, card = load_variant(variant_dir)
    name = card["variant"]
    audio = cost_input(sample_rate, cost_seconds)
    with atomic_directory(out_dir) as staging:
        if isinstance(model, OnnxCTCModel):  # an int8 variant is a graph already (checked when made): its latency
            check = ExportCheck("native", name, ort_latency_ms=ort_forward_ms(model, audio, cost_threads, cost_repeats),
                                onnx_bytes=model.path.stat().st_size)
        else:
            check = _export_and_check(model, processor, name, staging / ONNX_FILE, check_manifest, sample_rate, audio,
                                      opset, check_utterances, logits_atol, cost_repeats, cost_threads, threads)
        write_json(staging / EXPORT_RECORD, check.to_json())
    log.info("variant %s: ONNX %s%s", name, check.status, f" (operator {check.op})" if check.op else "")
    return check


def _export_and_check(model: torch.nn.Module, processor, name: str, path: Path, manifest: str, sample_rate: int,
                      audio: torch.Tensor, opset: int, check_utterances: int, logits_atol: float, repeats: int,
                      cost_threads: int, threads: int) -> ExportCheck:
    try:
        return _check(model, processor, name, path, manifest, sample_rate, audio, opset, check_utterances, logits_atol,
                      repeats, cost_threads, threads)
    except Exception as err:  # the exporter and onnxruntime raise many types; each means: this variant does not run
        path.unlink(missing_ok=True)
        failure = ExportError.of(name, err)
        log.warning("%s", failure)
        return ExportCheck("failed", name, op=failure.op, detail=failure.detail)


def _check(model: torch.nn.Module, processor, name: str, path: Path, manifest: str, sample_rate: int,
           audio: torch.Tensor, opset: int, check_utterances: int, logits_atol: float, repeats: int,
           cost_threads: int, threads: int) -> ExportCheck:
    export_onnx(model, path, name, opset)
    graph = OnnxCTCModel(path, model, threads, name)
    audio = audio.to(model_dtype(model))
    diff = logit_difference(model, graph, audio)
    utterances = sorted(read_manifest(manifest), key=lambda u: u.id)[:check_utterances]
    waves = [read_audio(resolve_audio(u, manifest), sample_rate) for u in utterances]
    equal = compare_transcripts(model, graph, processor, waves, sample_rate)
    status = "ok" if diff <= logits_atol and equal == len(waves) else "mismatch"
    torch_ms = statistics.median(cpu_forward_ms(model, audio, cost_threads, repeats))
    ort_ms = ort_forward_ms(graph, audio, cost_threads, repeats)
    graph.close()
    return ExportCheck(status, name, max_logit_diff=diff, logits_atol=logits_atol, transcripts_equal=equal,
                       transcripts_checked=len(waves), ort_latency_ms=ort_ms, torch_latency_ms=torch_ms,
                       onnx_bytes=path.stat().st_size)


def read_export(export_dir: str | os.PathLike[str]) -> ExportCheck:
    return ExportCheck.from_json(read_json(Path(export_dir) / EXPORT_RECORD))


def onnx_runtime_model(model: torch.nn.Module, export_dir: str | os.PathLike[str], threads: int) -> torch.nn.Module:
    """The variant's ONNX graph behind the CTC interface when its export check passed, else the torch model
    (logged): ``decode.backend: onnxruntime`` never fails a decode for a variant that does not export."""
    if isinstance(model, OnnxCTCModel):
        return model
    check = read_export(export_dir)
    if not check.usable:
        log.warning("variant %s: ONNX export %s%s: decoding with torch", check.variant, check.status,
                    f" (operator {check.op})" if check.op else "")
        return model
    return OnnxCTCModel(Path(export_dir) / ONNX_FILE, model, threads, check.variant)
