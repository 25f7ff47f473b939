"""Making, saving, loading and costing variants, whatever their methods.

Every variant model keeps the CTC interface decoding relies on: ``model(input_values=...,
attention_mask=...)`` returns an object with ``.logits`` (batch, frames, vocab), and
``model._get_feat_extract_output_lengths(samples)`` gives the frame count per utterance.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..device import model_dtype
from ..deploy import ONNX_FILE, OnnxCTCModel, check_graph, export_onnx, onnx_weight_bytes
from ..cost import cost_input, count_parameters, directory_bytes, measure_cost
from ..errors import ConfigError, PipelineError
from ..io import atomic_directory, read_json, write_json
from ..models import load_pretrained_dir, save_model_dir
from ..training import fingerprint
from .context import CompressionContext
from .packing import packed_bytes
from .registry import Variant, get

log = logging.getLogger(__name__)

CARD = "card.json"
STATE_DICT = "compressed_state_dict.pt"


def _needs_restructure(variant: Variant) -> bool:
    return any(get(s.method).restructure is not None for s in variant.steps)


def build_variant_model(
    baseline_dir: str | os.PathLike[str], variant: Variant, context: CompressionContext,
    model: torch.nn.Module | None = None,
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """The compressed model in memory and each step's metadata: prepare, train, finalize.

    ``model`` is the baseline already loaded (it is changed in place); by default it is read from the folder.
    """
    if model is None:
        model, _ = load_pretrained_dir(baseline_dir)
    model.eval()
    metas: list[dict[str, Any]] = []
    for step in variant.steps:
        context.meta = {}
        model = get(step.method).prepare(model, step.level, step.typed_params, context)
        metas.append(context.meta)
    trainers = [(i, get(s.method)) for i, s in enumerate(variant.steps) if get(s.method).train is not None]
    if trainers:
        index, method = trainers[0]
        context.meta = metas[index]
        model = method.train(model, context, variant.recovery)
    elif variant.recovery is not None:
        context.fine_tune(model, variant.recovery)
    for step, meta in zip(variant.steps, metas):
        context.meta = meta
        model = get(step.method).finalize(model.eval(), step.level, step.typed_params, context)
    return model.eval(), metas


def compress(
    baseline_dir: str | os.PathLike[str],
    variant: Variant,
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    *,
    sample_rate: int = 16000,
    training: dict[str, Any] | None = None,
    train_manifest: str | None = None,
    dev_manifest: str | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    threads: int = 0,
    cost_seconds: float = 10.0,
    cost_repeats: int = 3,
    cost_threads: int | None = None,
) -> dict[str, Any]:
    """Make ``variant`` from the baseline and write its folder with a card of measured costs.

    The folder is assembled beside ``out_dir`` and renamed into place, so a killed job never
    leaves a variant that looks complete. The cost is measured on the model as loaded back from
    that folder, which is what decoding runs.
    """
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    baseline_dir = Path(baseline_dir)
    baseline, processor = load_pretrained_dir(baseline_dir)
    before = count_parameters(baseline)
    context = CompressionContext(
        processor=processor, sample_rate=sample_rate, seed=seed, baseline_dir=baseline_dir, training=dict(training or {}),
        train_manifest=train_manifest, dev_manifest=dev_manifest,
        # One folder per variant: 2:4 and 1:4 masks have equal shapes, so a shared folder could resume the wrong run.
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else Path(f"{out_dir}.checkpoints"), threads=threads,
    )
    baseline_card = baseline_dir / CARD
    context.run_key = fingerprint(variant.to_json(), baseline_card.read_text() if baseline_card.exists() else None)
    started = time.time()
    model, metas = build_variant_model(baseline_dir, variant, context, baseline)
    seconds = time.time() - started
    if not distributed.world().is_main:
        return {}  # the main rank writes the variant and times it
    cpu_only = variant.cpu_only
    with atomic_directory(out_dir) as staging:
        storage = "state_dict" if _needs_restructure(variant) else "pretrained"
        if storage == "pretrained":
            save_model_dir(model, processor, staging)
        else:
            # The variant's config (layers may be gone) and processor; weights in the variant's own layout.
            processor.save_pretrained(str(staging))
            model.config.save_pretrained(str(staging))
            torch.save(model.state_dict(), staging / STATE_DICT)
        card: dict[str, Any] = {
            "variant": variant.id,
            "method": variant.method,
            "level": variant.level,
            "recipe": variant.to_json(),
            "method_versions": variant.versions,
            "param_schemas": variant.param_schemas,
            "steps_meta": metas,
            "storage": storage,
            "cpu_only": cpu_only,
            "baseline_parameters": before.parameters,
            "compress_seconds": round(seconds, 3),
            "training": context.results,
        }
        if variant.runtime == "onnxruntime":
            card["runtime"] = "onnxruntime"
            _write_graph(model, variant, context, metas, staging)
        write_json(staging / CARD, card)
        loaded, _, _ = load_variant(staging)
        graph = isinstance(loaded, OnnxCTCModel)
        torch_model = loaded.reference if graph else loaded
        _check_round_trip(model, torch_model, variant.id)
        counts = count_parameters(torch_model)
        card.update(
            parameters=counts.parameters,
            nonzero_parameters=counts.nonzero,
            sparsity=round(counts.sparsity, 6),
            # An ONNX Runtime variant deploys its graph alone (the torch model beside it gives frame counts and MACs).
            bytes_on_disk=loaded.path.stat().st_size if graph else directory_bytes(staging),
            packed_bytes=onnx_weight_bytes(loaded.path) if graph else packed_bytes(loaded, metas),
            **measure_cost(loaded, sample_rate, seconds=cost_seconds, threads=cost_threads or threads or torch.get_num_threads(),
                           repeats=cost_repeats, cpu_only=cpu_only,
                           accelerate=lambda gpu_model: accelerate(gpu_model, variant, metas)),
        )
        card["size_mb"] = round(card["bytes_on_disk"] / 1e6, 4)
        card["packed_mb"] = round(card["packed_bytes"] / 1e6, 4)
        write_json(staging / CARD, card)
    if context.checkpoint_dir is not None:
        shutil.rmtree(context.checkpoint_dir, ignore_errors=True)  # only a resume needs it
    log.info("variant %s: %d parameters (%d non-zero), %.2f MB on disk, %.2f MB packed, %.3f GMACs/s, CPU RTF %.4f",
             variant.id, card["parameters"], card["nonzero_parameters"], card["size_mb"], card["packed_mb"],
             card["gmacs_per_audio_s"], card["cpu_rtf"])
    return card


def runtime_model(model: torch.nn.Module, variant: Variant, context: CompressionContext, metas: list[dict[str, Any]],
                  folder: Path) -> torch.nn.Module:
    """What runs a variant built in memory (benchmarks): ``model`` itself, or, for a method that converts it to an
    ONNX Runtime graph, that graph (written into ``folder``) behind the CTC interface."""
    if variant.runtime != "onnxruntime":
        return model
    folder.mkdir(parents=True, exist_ok=True)
    _write_graph(model, variant, context, metas, folder)
    return OnnxCTCModel(folder / ONNX_FILE, model, torch.get_num_threads(), variant.id)


def _write_graph(model: torch.nn.Module, variant: Variant, context: CompressionContext, metas: list[dict[str, Any]],
                 staging: Path) -> None:
    """The built model as a float ONNX graph, checked against the model (the int8 graph it becomes cannot be: it
    computes other numbers), then converted by the last step (ONNX Runtime int8, recording into its metadata)
    into ``model.onnx``."""
    context.meta = metas[-1]
    float_path = staging / "model.float.onnx"
    export_onnx(model, float_path, variant.id)
    check_graph(model, float_path, variant.id)
    last = variant.steps[-1]
    get(last.method).onnx_convert(float_path, staging / ONNX_FILE, last.typed_params, context)
    float_path.unlink()


@torch.inference_mode()
def _check_round_trip(built: torch.nn.Module, loaded: torch.nn.Module, variant_id: str) -> None:
    """The saved variant must compute what the built one does: a silent mismatch would corrupt every WER."""
    audio = cost_input(16000, 1.0)
    dtype = model_dtype(built)
    a = built.cpu()(input_values=audio.to(dtype)).logits.float()
    b = loaded.cpu()(input_values=audio.to(dtype)).logits.float()
    if a.shape != b.shape or not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
        raise RuntimeError(f"variant {variant_id}: the saved model does not reproduce the built one "
                           f"(max difference {(a - b).abs().max() if a.shape == b.shape else 'shape'})")


def load_variant(variant_dir: str | os.PathLike[str], device: torch.device | str | None = None):
    """(model, processor, card) of a variant folder written by :func:`compress`.

    On a CUDA ``device`` the model is moved there and each step's ``accelerate`` swaps in GPU kernels.
    """
    model, processor, card = _load_cpu(variant_dir)
    if card.get("runtime") == "onnxruntime":  # its graph is what decodes and what is costed (CPU provider)
        return OnnxCTCModel(Path(variant_dir) / ONNX_FILE, model, torch.get_num_threads(), card["variant"]), processor, card
    if device is not None and torch.device(device).type == "cuda":
        model = accelerate(model.to(device), Variant.from_json(card["recipe"]), card["steps_meta"])
    return model.eval(), processor, card


def accelerate(model: torch.nn.Module, variant: Variant, metas: list[dict[str, Any]]) -> torch.nn.Module:
    """Swap in each step's GPU kernels (int8/int4 torchao, 2:4 semi-structured) on a CUDA model."""
    for step, meta in zip(variant.steps, metas):
        swap = get(step.method).accelerate
        if swap is not None:
            model = swap(model, step.level, step.typed_params, meta)
    return model


def _check_versions(variant_dir: Path, card: dict[str, Any]) -> None:
    """A folder made by an older implementation of one of its methods (a card without ``method_versions`` is
    version 1) cannot be read by this one: say so, rather than fail on the state dict's keys."""
    built = card.get("method_versions") or {}
    variant = Variant.from_json(card["recipe"])
    for method, version in variant.versions.items():
        if built.get(method, 1) != version:
            raise PipelineError(f"{variant_dir}: made by version {built.get(method, 1)} of method {method!r}, which is "
                                f"now version {version} (docs/compression.md): delete the folder, or rerun "
                                "snakemake, which rebuilds it")
    for step in variant.steps:  # cards from before the parameter dataclasses hold the same plain dicts
        try:
            step.typed_params
        except ConfigError as error:
            raise PipelineError(f"{variant_dir / CARD}: the recipe's parameters no longer parse: {error}") from None


def _load_cpu(variant_dir: str | os.PathLike[str]):
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Processor

    variant_dir = Path(variant_dir)
    card = read_json(variant_dir / CARD)
    _check_versions(variant_dir, card)
    if card["storage"] == "pretrained":
        model, processor = load_pretrained_dir(variant_dir)
        return model.eval(), processor, card
    processor = Wav2Vec2Processor.from_pretrained(str(variant_dir))
    model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(str(variant_dir))).eval()
    variant = Variant.from_json(card["recipe"])
    for step, meta in zip(variant.steps, card["steps_meta"]):
        restructure = get(step.method).restructure
        if restructure is not None:
            model = restructure(model, step.level, step.typed_params, meta)
    # Our own file, written by compress (a folder of an older method version was refused above).
    state = torch.load(variant_dir / STATE_DICT, map_location="cpu", weights_only=False)
    model.load_state_dict(state, strict=True)
    return model.eval(), processor, card
