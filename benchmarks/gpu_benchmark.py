"""GPU decoding benchmark (issue #7): how many times real time the pipeline decodes on one GPU, against the naive
Hugging Face loop, per precision, with torch.compile, and for compressed variants on their GPU kernels.

Models: random weights (speed does not depend on what the weights learned) in two shapes, built from
``Wav2Vec2Config`` with the project's character processor (``models.build_processor``, 32-token CTC vocabulary):

- ``base``: wav2vec2-base (12 x 768, 7-layer conv front end with group norm, post-norm encoder);
- ``large``: wav2vec2-large-lv60 (24 x 1024, conv front end with layer norm, ``do_stable_layer_norm``).

Audio: synthetic utterances (seeded) with LibriSpeech-like durations (lognormal around 7 s, clipped to 2-35 s),
``--hours`` in all (2 by default): noise whose loudness drifts, so the per-utterance normalisation has work to do.

Rows, per shape, each timed around the whole call with the device synchronised (x RT = audio seconds / wall seconds
of normalisation, padding, forward, greedy search and detokenisation; model load and audio generation excluded):

- naive: ``processor(wave)`` then ``model(input_values)``, argmax and ``processor.batch_decode`` per utterance,
  float32, no batching, as the model cards show it; timed on the first ``--naive-utterances`` utterances (200) only,
  its x RT from those (the utterances are drawn independently, so they are a fair sample);
- pipeline: ``decoding.decode_waves`` (what ``decode_stage.decode_test_set`` runs) at fp32, bf16, fp16, and bf16 compiled;
- compressed variants made by the pipeline's own code (``store.build_variant_model`` with the registry's methods,
  then ``store.accelerate``, which is what ``load_variant`` does on CUDA): dynamic int8 (an ONNX Runtime graph, CPU),
  4-bit weight-only (``qat~4`` without recovery: round-to-nearest, torch's int4 tinygemm kernel) and 2:4
  semi-structured sparsity (``nm_sparsity~2:4``, sparse tensor cores). A variant whose kernel fails records an
  error row; the run goes on.

Each pipeline row first decodes the first 16 utterances with the same settings (warm-up: CUDA context, cuDNN
and, for the compiled row, compiling); its time is reported in the notes. Agreement: the share of utterances
whose transcript equals the fp32 pipeline row's, and the WER of the row's transcripts against fp32's. Random
weights make argmax near-ties common, so agreement here is a lower bound of what a trained model shows.

``--tiny``: tiny shapes and 20 s of audio, so it runs on a CPU in well under a minute (tests run it that way). On
a CPU, fp16, compile and the CUDA-only kernels are skipped with a note row; dynamic int8 runs ONNX Runtime's CPU kernels.

Usage: .venv/bin/python benchmarks/gpu_benchmark.py [--models base,large] [--hours 2] [--tiny]
       [--naive-utterances 200] [--gpu-batch-seconds 800] [--out benchmarks/results/gpu.md]
Writes the table (with the command line) to --out and prints it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(Path(__file__).resolve().parent)]

from reporting import cpu_name, publish  # noqa: E402
from asrcompress.compression.context import CompressionContext  # noqa: E402
from asrcompress.compression.registry import Variant  # noqa: E402
from asrcompress.compression.store import accelerate, build_variant_model, runtime_model  # noqa: E402
from asrcompress.decoding import DecodeRun, decode_waves  # noqa: E402
from asrcompress.device import pick_device, synchronize  # noqa: E402
from asrcompress.models import ModelSpec, build_model, build_processor  # noqa: E402
from asrcompress.scoring import count_errors, total  # noqa: E402

RATE = 16000
SEED = 0
WARM_UP_UTTERANCES = 16
CPU_BATCH_SECONDS = 60.0  # decode.batch_seconds' default: what the pipeline uses on a CPU

SHAPES: dict[str, dict[str, Any]] = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                 feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}
TINY_FRONT_END = dict(conv_dim=[16, 32, 48], conv_kernel=[20, 8, 4], conv_stride=[10, 8, 4], num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=4)
TINY_SHAPES: dict[str, dict[str, Any]] = {
    "base": dict(TINY_FRONT_END, num_hidden_layers=2, hidden_size=48, num_attention_heads=2, intermediate_size=96,
                 feat_extract_norm="group", do_stable_layer_norm=False),
    "large": dict(TINY_FRONT_END, num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One pipeline row: a precision, optionally compiled, optionally a compressed variant of the model."""

    label: str
    precision: str = "auto"
    compile: bool = False
    method: str | None = None
    level: Any = None
    cuda_only: str = ""  # why a CPU run skips it (empty: it runs there too)


SETTINGS = (
    Setting("dense", "fp32"),
    Setting("dense", "bf16"),
    Setting("dense", "fp16", cuda_only="fp16 autocast runs on a GPU only"),
    Setting("dense, torch.compile", "bf16", compile=True, cuda_only="decode.compile applies on CUDA only"),
    Setting("dynamic int8 (ONNX Runtime, CPU)", "auto", method="dynamic_int8"),
    Setting("4-bit weight-only (qat~4 RTN, int4 tinygemm)", "auto", method="qat", level=4,
            cuda_only="tinygemm is a CUDA kernel (on a CPU the weights stay dense float)"),
    Setting("2:4 semi-structured (nm_sparsity~2:4)", "auto", method="nm_sparsity", level="2:4",
            cuda_only="the semi-structured sparse kernels are CUDA-only"),
)


@dataclasses.dataclass
class Row:
    model: str
    variant: str
    precision: str
    batch: str
    xrt: float | None = None
    speedup: float | None = None
    peak_gb: float | None = None
    identical: float | None = None
    wer_vs_fp32: float | None = None
    notes: str = ""

    def markdown(self) -> str:
        def number(value: float | None, fmt: str, suffix: str = "") -> str:
            return "-" if value is None else format(value, fmt) + suffix

        cells = [self.model, self.variant, self.precision, self.batch, number(self.xrt, ".0f"),
                 number(self.speedup, ".1f", "x"), number(self.peak_gb, ".2f"), number(self.identical, ".0%"),
                 number(self.wer_vs_fp32, ".1%"), self.notes]
        return "| " + " | ".join(cells) + " |"


def log(message: str) -> None:
    print(f"[gpu_benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data and models


def durations(total_s: float, rng: np.random.Generator) -> list[float]:
    """LibriSpeech-like utterance lengths (lognormal, median 7 s, 2-35 s) adding up to about ``total_s``."""
    lengths: list[float] = []
    while sum(lengths) < total_s:
        lengths.append(float(np.clip(rng.lognormal(np.log(7.0), 0.6), 2.0, 35.0)))
    return lengths


def synthetic_waves(total_s: float, seed: int) -> list[np.ndarray]:
    """Noise with a slowly drifting loudness and an offset per utterance (the normalisation has work to do)."""
    rng = np.random.default_rng(seed)
    waves = []
    for seconds in durations(total_s, rng):
        n = int(seconds * RATE)
        envelope = 0.05 + 0.1 * np.abs(np.sin(np.linspace(0, rng.uniform(2, 20), n, dtype=np.float32)))
        offset = rng.uniform(-0.01, 0.01)
        waves.append((rng.standard_normal(n, dtype=np.float32) * envelope + offset).astype(np.float32))
    return waves


def dense_model(shape: dict[str, Any], processor) -> torch.nn.Module:
    torch.manual_seed(SEED)
    spec = ModelSpec("benchmark", "scratch", architecture=dict(shape, mask_time_prob=0.0))
    return build_model(spec, processor).eval()


def describe(model: torch.nn.Module) -> str:
    config = model.config
    return (f"{config.num_hidden_layers} x {config.hidden_size}, {config.feat_extract_norm}-norm front end, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")


def compressed(model: torch.nn.Module, processor, setting: Setting, device: torch.device, tmp: Path) -> torch.nn.Module:
    """The variant as ``load_variant`` gives it on ``device``: the registry's prepare/finalize on a CPU copy of the
    dense model, then, on CUDA, each step's ``accelerate`` (its GPU kernels)."""
    variant = Variant.of(setting.method, setting.level)
    context = CompressionContext(processor=processor, sample_rate=RATE, seed=SEED, baseline_dir=tmp)
    built, metas = build_variant_model(tmp, variant, context, copy.deepcopy(model).cpu())
    built = runtime_model(built, variant, context, metas, tmp / "graphs" / variant.id).to(device)
    return accelerate(built, variant, metas) if device.type == "cuda" else built


# ---------------------------------------------------------------- the measured paths


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """(result, wall seconds, peak GPU memory GB) of ``work``, the device synchronised on both sides."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    result = work()
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return result, seconds, peak


def plain(text: str, tokenizer) -> str:
    """A transcript without special tokens and extra spaces (``batch_decode`` keeps <unk>, <s>, </s>)."""
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return " ".join(text.split())


@torch.no_grad()
def naive_loop(model: torch.nn.Module, processor, waves: Sequence[np.ndarray], device: torch.device) -> list[str]:
    """The model cards' recipe, one utterance at a time: processor, model, argmax, batch_decode."""
    texts = []
    for wave in waves:
        input_values = processor(wave, sampling_rate=RATE, return_tensors="pt").input_values
        logits = model(input_values.to(device)).logits
        texts.append(plain(processor.batch_decode(torch.argmax(logits, dim=-1))[0], processor.tokenizer))
    return texts


def pipeline(model, processor, waves: Sequence[np.ndarray], device: torch.device, setting: Setting,
             gpu_batch_seconds: float) -> DecodeRun:
    return decode_waves(model, processor, waves, RATE, CPU_BATCH_SECONDS, device, {"greedy": None},
                        precision=setting.precision, gpu_batch_seconds=gpu_batch_seconds, compile=setting.compile)


def agreement(reference: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """(share of identical transcripts, WER of ``hypotheses`` against ``reference``)."""
    same = sum(a == b for a, b in zip(reference, hypotheses)) / max(1, len(reference))
    return same, total(count_errors(a, b) for a, b in zip(reference, hypotheses)).wer


# ---------------------------------------------------------------- one model shape


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_naive(model, processor, waves: Sequence[np.ndarray], device: torch.device, label: str,
                  count: int) -> tuple[Row, list[str]]:
    subset = waves[:count]
    subset_s = sum(len(w) for w in subset) / RATE
    naive_loop(model, processor, subset[:2], device)  # warm-up
    texts, seconds, peak = timed(device, lambda: naive_loop(model, processor, subset, device))
    row = Row(label, "naive HF loop (batch 1, no tricks)", "float32", "1 utterance", subset_s / seconds, 1.0, peak,
              notes=f"timed on the first {len(subset)} utterances ({subset_s:.0f} s of audio), x RT from those")
    return row, texts


def measure_setting(model, processor, waves: Sequence[np.ndarray], device: torch.device, setting: Setting, row: Row,
                    args: argparse.Namespace, tmp: Path) -> list[str] | None:
    """Fill ``row`` with the setting's x RT, precision and peak memory; returns its transcripts (None on an error)."""
    audio_s = sum(len(w) for w in waves) / RATE
    candidate = None
    try:
        candidate = compressed(model, processor, setting, device, tmp) if setting.method else model
        _, warm_s, _ = timed(device, lambda: pipeline(candidate, processor, waves[:WARM_UP_UTTERANCES], device, setting,
                                                      args.gpu_batch_seconds))
        run, seconds, row.peak_gb = timed(device, lambda: pipeline(candidate, processor, waves, device, setting,
                                                                    args.gpu_batch_seconds))
    except Exception as err:  # one failing kernel must not cost the other rows
        row.notes = f"error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        return None
    finally:
        candidate = None  # a variant's copy goes before the next is built
        release(device)
    row.precision, row.xrt = run.precision, audio_s / seconds
    warm_up = f"{len(waves[:WARM_UP_UTTERANCES])} utterances{', compiling' if setting.compile else ''}"
    row.notes = f"warm-up ({warm_up}) {warm_s:.2f} s; {seconds:.2f} s for {audio_s:.0f} s of audio"
    if setting.compile and not run.compiled:
        row.notes += "; compile failed, ran eagerly (see the log)"
    return [plain(t, processor.tokenizer) for t in run.hypotheses["greedy"]]


def measure_shape(name: str, shape: dict[str, Any], waves: list[np.ndarray], device: torch.device,
                  args: argparse.Namespace, tmp: Path) -> list[Row]:
    """The naive row, then every setting's row, agreement against the dense fp32 row (``SETTINGS[0]``)."""
    processor = build_processor(RATE)
    model = dense_model(shape, processor)
    label = f"{name} ({describe(model)})"
    batch = f"{args.gpu_batch_seconds:g}" if device.type == "cuda" else f"{CPU_BATCH_SECONDS:g} (CPU)"
    model = model.to(device)
    naive, naive_texts = measure_naive(model, processor, waves, device, label, args.naive_utterances)
    log(f"{name}: naive {naive.xrt:.1f}x real time")
    rows, transcripts = [naive], []
    for setting in SETTINGS:
        row = Row(label, setting.label, setting.precision, batch)
        if setting.cuda_only and device.type != "cuda":
            row.notes = f"not measured: {setting.cuda_only}"
        transcripts.append(None if row.notes else measure_setting(model, processor, waves, device, setting, row, args,
                                                                   tmp))
        if row.xrt is not None:
            row.speedup = row.xrt / naive.xrt
        rows.append(row)
        log(f"{name}: {setting.label} {setting.precision}: "
            + (f"{row.xrt:.0f}x real time" if row.xrt is not None else row.notes))
    reference = transcripts[0]
    if reference is not None:
        naive.identical, naive.wer_vs_fp32 = agreement(reference[: len(naive_texts)], naive_texts)
        for row, texts in zip(rows[1:], transcripts):
            if texts is not None:
                row.identical, row.wer_vs_fp32 = agreement(reference, texts)
    del model
    release(device)
    return rows


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="base,large", help="shapes, comma-separated: base, large")
    parser.add_argument("--hours", type=float, default=2.0, help="synthetic audio per shape")
    parser.add_argument("--naive-utterances", type=int, default=200, help="utterances the naive loop is timed on")
    parser.add_argument("--gpu-batch-seconds", type=float, default=800.0, help="decode.gpu_batch_seconds")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, 20 s of audio: a CPU smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu.md")
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(SHAPES)
    if unknown:
        parser.error(f"unknown model shape(s) {', '.join(sorted(unknown))}; known: {', '.join(SHAPES)}")
    return args


def _relative(path: str) -> str:
    """``path`` as typed from the current folder when it lies below it (a command line others can rerun)."""
    resolved = Path(path).absolute()
    return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else path


def main(argv: Sequence[str] | None = None) -> None:
    import tempfile

    import transformers

    args = parse_args(argv)
    command = " ".join(shlex.quote(part) for part in [_relative(sys.executable), _relative(sys.argv[0]),
                                                      *(sys.argv[1:] if argv is None else argv)])
    device = pick_device()
    audio_s = 20.0 if args.tiny else args.hours * 3600
    waves = synthetic_waves(audio_s, SEED)
    shapes = TINY_SHAPES if args.tiny else SHAPES
    log(f"{len(waves)} utterances, {sum(len(w) for w in waves) / RATE:.0f} s of audio, device {device}")
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.extend(measure_shape(name, shapes[name], waves, device, args, Path(tmp)))
    elapsed = time.perf_counter() - started
    machine = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda"
               else f"CPU only ({cpu_name()}, {torch.get_num_threads()} threads)")
    report = "\n".join([
        "# GPU decoding benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{len(waves)} synthetic utterances, {sum(len(w) for w in waves) / RATE:.0f} s of audio "
        f"(lognormal lengths around 7 s, 2-35 s){', tiny shapes' if args.tiny else ''}; whole run {elapsed:.0f} s.",
        "",
        "x RT = audio seconds / wall seconds of normalisation, padding, forward, greedy search and detokenisation, "
        "the device synchronised; the naive loop is timed on its first utterances only (see its note). Precision: "
        "the dtype the forward computed in (autocast's, or the variant's own). Identical: share of transcripts "
        "equal to the dense fp32 pipeline row's (for the naive row: on its utterances); WER vs fp32: of the row's "
        "transcripts against those. Random weights make argmax near-ties common, so agreement is a lower bound.",
        "",
        "| model shape | variant | precision | batch seconds | x RT | speed-up vs naive | peak GPU memory GB | "
        "identical to fp32 | WER vs fp32 | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(row.markdown() for row in rows),
        "",
    ])
    publish(report, args.out)


if __name__ == "__main__":
    main()
