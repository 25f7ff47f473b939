"""Benchmark what each compression method buys in compute, size and CPU speed, at a fixed 10 s input.

Two model shapes with random weights (speed does not depend on what the weights learned): a
wav2vec2-base (``transformers.Wav2Vec2Config`` defaults, 12 x 768, vocabulary 32, ~95M parameters)
and the demo model (``config/config.yaml`` models.demo-w2v2.architecture). Each is saved to a
temporary folder as a baseline; every variant is built from it in memory by the pipeline's own
``store.build_variant_model`` (prepare, the method's own training if any, finalize) and measured by
``cost.measure_cost``: GMACs per audio second, median CPU latency of ``--repeats`` forward passes
over the same seeded 10 s noise, batch of one, on ``--threads`` threads.

Methods that need data or training are built WITHOUT it (no recovery fine-tuning): a variant's
speed does not depend on how well it was trained. A method whose prepare reads calibration data
(``needs_data``), or whose build otherwise asks for data, is listed as skipped with the reason.
Methods not registered yet are listed as pending; rerun when they land.

The speed-up is not the ratio of two medians taken minutes apart: on a shared machine the load
changes within seconds. Each variant's passes alternate with fp32's (``--rounds``), and the
speed-up compares the fastest of each, the passes the neighbours disturbed least.

Usage: .venv/bin/python benchmarks/compression_benchmark.py [--threads 2] [--repeats 3] [--rounds 5]
       [--shapes base,demo] [--methods dynamic_int8,static_int8]
Writes benchmarks/results/compression.md and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src")]

from reporting import cpu_name, publish  # noqa: E402
from asrcompress.compression.context import CompressionContext  # noqa: E402
from asrcompress.compression.registry import Variant, get  # noqa: E402
from asrcompress.compression.store import build_variant_model, runtime_model  # noqa: E402
from asrcompress.compression.packing import packed_bytes  # noqa: E402
from asrcompress.cost import count_parameters, cost_input, cpu_forward_ms, measure_cost  # noqa: E402
from asrcompress.device import model_dtype  # noqa: E402
from asrcompress.deploy import OnnxCTCModel, onnx_weight_bytes  # noqa: E402
from asrcompress.errors import PipelineError  # noqa: E402
from asrcompress.models import ModelSpec, build_model, build_processor, save_model_dir  # noqa: E402

RATE = 16000
SEED = 0
DEMO_MODEL = "demo-w2v2"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One variant to measure: a method at a level (a value, or a function of the model's config)."""

    method: str
    level: Any = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None  # tells apart one method with different params (as a config's `name:`)

    @property
    def label(self) -> str:
        return self.name or self.method

    def level_for(self, config: Any) -> Any:
        return self.level(config) if callable(self.level) else self.level


def _half_the_layers(config: Any) -> int:
    return max(1, config.num_hidden_layers // 2)


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("dynamic_int8"),
    Candidate("static_int8"),
    Candidate("ort_int8"),
    Candidate("fp16"),
    Candidate("structured", 0.4, {"budget": "macs"}),
    Candidate("downsampling", 3, {"kind": "signal"}, name="downsampling_signal"),
    Candidate("downsampling", 3, {"kind": "pool"}, name="downsampling_pool"),
    Candidate("downsampling", 3, {"kind": "conv"}, name="downsampling_conv"),
    Candidate("layer_removal", _half_the_layers),
    Candidate("nm_sparsity", "2:4"),
    Candidate("qat", 4),
    Candidate("magnitude", 0.5),  # unstructured zeros: no speed-up expected from dense kernels
)
FP32 = Candidate("none")


@dataclasses.dataclass(frozen=True)
class Target:
    """A speed goal of the issue, checked on each of the candidates it names."""

    description: str
    labels: tuple[str, ...]
    speedup: float


TARGETS = (
    Target("structured pruning, -40% MACs: >= 1.5x faster", ("structured",), 1.5),
    Target("downsampling x3: >= 2x faster", ("downsampling_signal", "downsampling_pool", "downsampling_conv"), 2.0),
    Target("dynamic int8: >= 1.5x faster", ("dynamic_int8",), 1.5),
)


@dataclasses.dataclass
class Row:
    label: str  # the candidate's
    variant: str  # the pipeline's id
    parameters: int
    nonzero: int
    packed_mb: float
    gmacs: float
    latency_ms: float  # measure_cost's: the median of --repeats passes, what a card records
    best_ms: float  # fastest of --rounds passes interleaved with fp32's
    fp32_best_ms: float  # fastest fp32 pass of the same rounds

    def rtf(self, seconds: float) -> float:
        return self.latency_ms / 1000 / seconds

    @property
    def speedup(self) -> float:
        return self.fp32_best_ms / self.best_ms


@dataclasses.dataclass
class ShapeResult:
    spec: ModelSpec
    rows: list[Row]  # fp32 first
    skipped: dict[str, str]  # candidate label -> why it was not measured


class Skipped(Exception):
    """A candidate that cannot be measured here, and why."""


# ---------------------------------------------------------------- models


def _shapes(names: list[str]) -> dict[str, ModelSpec]:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    known = {
        "base": ModelSpec("w2v2-base", "scratch"),  # Wav2Vec2Config defaults; build_model sets vocabulary 32
        "demo": ModelSpec.from_config(DEMO_MODEL, config["models"][DEMO_MODEL]),
    }
    unknown = sorted(set(names) - set(known))
    if unknown:
        sys.exit(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: known[name] for name in names}


def _save_baseline(spec: ModelSpec, folder: Path) -> tuple[Path, Any]:
    torch.manual_seed(SEED)
    processor = build_processor(RATE)
    save_model_dir(build_model(spec, processor).eval(), processor, folder)
    return folder, processor


# ---------------------------------------------------------------- variants

# The real utterances in tests/data calibrate static int8 (speed does not depend on which).
REAL_SPEECH = REPO / "tests" / "data" / "speech" / "transcripts.tsv"
CALIBRATION = ""  # the manifest main() writes from REAL_SPEECH, when it exists


def _write_calibration_manifest(folder: Path) -> str:
    import csv

    import soundfile as sf

    from asrcompress.manifest import Utterance, write_manifest

    if not REAL_SPEECH.exists():
        return ""
    with open(REAL_SPEECH, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    root = REAL_SPEECH.parent.parent
    utterances = [Utterance(r["utt_id"], str(root / r["path"]), sf.info(str(root / r["path"])).duration, "librispeech",
                            r["text"]) for r in rows]
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder / "calibration.jsonl", utterances)
    return str(folder / "calibration.jsonl")



def _variant(candidate: Candidate, model_config: Any) -> Variant:
    """The candidate as the pipeline would parse it from a config entry (level and params checked)."""
    key = f"benchmark[{candidate.label}]"
    try:
        method = get(candidate.method, f"{key}.method")
    except PipelineError as err:
        raise Skipped("not registered yet") from err
    if method.needs_data and not CALIBRATION:
        raise Skipped(f"prepare reads calibration data and {REAL_SPEECH} is missing")
    try:
        level = method.parse_level(candidate.level_for(model_config), f"{key}.levels")
        params = method.resolve_params(candidate.params, f"{key}.params").to_json()
    except PipelineError as err:
        raise Skipped(f"config rejected: {err}") from err
    step = {"method": method.name, "level": level, "params": params, "name": candidate.name}
    return Variant.from_json({"steps": [step], "recovery": None})


def _build(candidate: Candidate, model_config: Any, baseline: Path, processor: Any, threads: int):
    """(variant, model in memory, step metas), as ``store.compress`` builds them, without data."""
    variant = _variant(candidate, model_config)
    context = CompressionContext(processor=processor, sample_rate=RATE, seed=SEED, baseline_dir=baseline,
                                 threads=threads, train_manifest=CALIBRATION or None)
    try:
        model, metas = build_variant_model(baseline, variant, context)
        model = runtime_model(model, variant, context, metas, baseline.parent / "graphs" / variant.id)
    except PipelineError as err:  # a method's own training, or its finalize, asked for data
        raise Skipped(f"building it needs data: {err}") from err
    return variant, model, metas


def _cost(model: torch.nn.Module, variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    cpu_only = any(get(step.method).cpu_only for step in variant.steps)
    return measure_cost(model, RATE, seconds=args.seconds, threads=args.threads, repeats=args.repeats,
                        cpu_only=cpu_only)


def _interleaved_best_ms(fp32: torch.nn.Module, model: torch.nn.Module,
                         args: argparse.Namespace) -> tuple[float, float]:
    """Fastest fp32 and fastest variant pass over ``--rounds`` rounds of one pass each, alternating.

    The machine is shared and its load changes within seconds: alternating puts both models under
    the same neighbours, and the fastest pass is the one they disturbed least (timeit's rule).
    Both models were warmed up by measure_cost (the variant just before, fp32 in its own row).
    """
    audio = cost_input(RATE, args.seconds)
    fp32_times, times = [], []
    for _ in range(args.rounds):
        fp32_times += cpu_forward_ms(fp32, audio.to(model_dtype(fp32)), args.threads, 1, warmup=False)
        times += cpu_forward_ms(model, audio.to(model_dtype(model)), args.threads, 1, warmup=False)
    return min(fp32_times), min(times)


def _benchmark_shape(spec: ModelSpec, folder: Path, args: argparse.Namespace,
                     log: Callable[[str], None]) -> ShapeResult:
    """fp32, then every candidate: measure_cost, then passes interleaved with fp32's for the speed-up."""
    baseline, processor = _save_baseline(spec, folder)
    fp32_variant, fp32_model, fp32_metas = _build(FP32, None, baseline, processor, args.threads)
    model_config = fp32_model.config  # levels that depend on the shape (half the layers)

    def row(candidate: Candidate, variant: Variant, model: torch.nn.Module, metas: list[dict[str, Any]]) -> Row:
        cost = _cost(model, variant, args)
        fp32_best, best = _interleaved_best_ms(fp32_model, model, args)
        graph = isinstance(model, OnnxCTCModel)  # an ONNX Runtime int8 variant: its graph's weights are what it stores
        counts = count_parameters(model.reference if graph else model)
        packed = onnx_weight_bytes(model.path) if graph else packed_bytes(model, metas)
        return Row(candidate.label, variant.id, counts.parameters, counts.nonzero, packed / 1e6,
                   cost["gmacs_per_audio_s"], cost["cpu_latency_ms"], best, fp32_best)

    rows = [row(FP32, fp32_variant, fp32_model, fp32_metas)]
    skipped: dict[str, str] = {}
    for candidate in [c for c in CANDIDATES if not args.methods or c.label in args.methods.split(",")]:
        try:
            variant, model, metas = _build(candidate, model_config, baseline, processor, args.threads)
        except Skipped as reason:
            skipped[candidate.label] = str(reason)
            log(f"{spec.name} {candidate.label}: skipped ({reason})")
            continue
        rows.append(row(candidate, variant, model, metas))
        log(f"{spec.name} {variant.id}: median {rows[-1].latency_ms:.0f} ms, best {rows[-1].best_ms:.0f} ms "
            f"(fp32 best {rows[-1].fp32_best_ms:.0f} ms)")
        del model
        gc.collect()
    return ShapeResult(spec, rows, skipped)


# ---------------------------------------------------------------- report


def _table(result: ShapeResult, seconds: float) -> str:
    lines = ["| variant | params | non-zero | packed MB | GMACs/s | CPU latency ms | RTF | best ms | fp32 best ms "
             "| speed-up vs fp32 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        lines.append(f"| {row.variant} | {row.parameters / 1e6:.2f}M | {row.nonzero / 1e6:.2f}M | {row.packed_mb:.1f} "
                     f"| {row.gmacs:.3f} | {row.latency_ms:.0f} | {row.rtf(seconds):.3f} | {row.best_ms:.0f} "
                     f"| {row.fp32_best_ms:.0f} | {row.speedup:.2f}x |")
    return "\n".join(lines)


def _verdict(speedup: float, goal: float, noise: float) -> str:
    """PASS or FAIL, flagged when the margin to the goal is within this run's timing noise."""
    verdict = "PASS" if speedup >= goal else "FAIL"
    return f"{verdict} (within noise)" if abs(speedup / goal - 1) <= noise else verdict


def _targets(results: dict[str, ShapeResult]) -> str:
    lines = ["| target | shape | variant | MACs vs fp32 | speed-up | result |", "|---|---|---|---|---|---|"]
    for target in TARGETS:
        for shape, result in results.items():
            fp32 = result.rows[0]
            noise = abs(fp32.speedup - 1)  # fp32 against itself
            measured = {row.label: row for row in result.rows}
            for label in target.labels:
                row = measured.get(label)
                if row is None:
                    lines.append(f"| {target.description} | {shape} | {label} | - | - | not measured "
                                 f"({result.skipped.get(label, 'not run')}) |")
                    continue
                lines.append(f"| {target.description} | {shape} | {row.variant} | {row.gmacs / fp32.gmacs - 1:+.0%} "
                             f"| {row.speedup:.2f}x | {_verdict(row.speedup, target.speedup, noise)} |")
    return "\n".join(lines)


def _skipped(results: dict[str, ShapeResult]) -> str:
    shapes: dict[tuple[str, str], list[str]] = {}
    for shape, result in results.items():
        for label, reason in result.skipped.items():
            shapes.setdefault((label, reason), []).append(shape)
    if not shapes:
        return ""
    return "Not measured:\n\n" + "\n".join(f"- {label} ({', '.join(where)}): {reason}"
                                             for (label, reason), where in shapes.items()) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="passes behind measure_cost's median latency")
    parser.add_argument("--rounds", type=int, default=5, help="passes alternating with fp32's, for the speed-up")
    parser.add_argument("--seconds", type=float, default=10.0, help="input length of every forward pass")
    parser.add_argument("--shapes", default="base,demo", help="comma-separated: base, demo")
    parser.add_argument("--methods", default="", help="comma-separated candidate labels (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "compression.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao.quantization's move to torchao
    torch.set_num_threads(args.threads)
    import transformers

    load_before = os.getloadavg()[0]
    results: dict[str, ShapeResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        global CALIBRATION
        CALIBRATION = _write_calibration_manifest(Path(tmp) / "calibration")
        for shape, spec in _shapes(args.shapes.split(",")).items():
            results[shape] = _benchmark_shape(spec, Path(tmp) / shape, args, lambda line: print(line, flush=True))
    load_after = os.getloadavg()[0]
    sections = []
    for shape, result in results.items():
        fp32_best = [row.fp32_best_ms for row in result.rows]
        sections.append(f"### {shape}: {result.rows[0].parameters / 1e6:.1f}M parameters (fp32 best pass over the "
                        f"run: {min(fp32_best):.0f} to {max(fp32_best):.0f} ms)\n\n{_table(result, args.seconds)}")
    report = (
        f"Compression benchmark: one forward pass over {args.seconds:g} s of seeded noise at {RATE} Hz, batch of 1, "
        f"random weights, variants built in memory by `store.build_variant_model` without recovery training. "
        f"Machine: {cpu_name()} ({os.cpu_count()} cores, shared), torch {torch.__version__}, transformers "
        f"{transformers.__version__}, threads = {args.threads}; 1-min load average {load_before:.1f} at the start, "
        f"{load_after:.1f} at the end. CPU latency ms = `measure_cost`'s median of {args.repeats} passes after a "
        f"warm-up (what a variant's card records); RTF = that / input length. best ms = the fastest of {args.rounds} "
        "passes alternating with fp32's, fp32 best ms = fp32's fastest of the same rounds; speed-up = fp32 best / "
        "best, so the neighbours of a shared machine slow both alike. "
        "GMACs/s = MACs per audio second (int8 layers included; zeros of sparse weights count: dense kernels run "
        "them). packed MB = `packing.packed_bytes` (N:M and low-bit weights packed, unstructured zeros dense). "
        "base = `Wav2Vec2Config()` defaults with a 32-symbol vocabulary; "
        f"demo = config/config.yaml models.{DEMO_MODEL}.\n\n"
        + "\n\n".join(sections)
        + "\n\nTargets of the issue (CPU speed-up, best interleaved passes). The `none` row above times fp32 "
        "against itself: its distance from 1.00x is this run's timing noise, and a verdict whose margin to the "
        "goal is within it is marked (within noise).\n\n"
        + _targets(results)
        + "\n\n"
        + _skipped(results)
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()
