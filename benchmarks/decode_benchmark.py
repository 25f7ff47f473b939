"""Benchmark greedy CTC decoding against the naive Hugging Face loop, and a decode job against its forward passes.

Issue #6's numbers, measured side by side in one run on one model and the same audio:

(a) CPU (``--threads``, 2 by default): ``decoding.transcribe`` (batched greedy) must be at least as fast as
    ``pipeline("automatic-speech-recognition", model=..., tokenizer=..., feature_extractor=...)`` called
    once per utterance;
(b) a decode job (``decode_stage.decode_test_set`` on a saved variant folder and a manifest: model load, audio
    read, forward, search, writing) must take at most 1.3x the pure forward time of its audio plus start-up
    (model load + audio read). Python start-up and imports are reported apart (a fresh subprocess);
(c) GPU: >= 50x the naive loop, measured when CUDA is there (``--device``; auto-picked), else "not measured".

Model: wav2vec2-base shape (``Wav2Vec2Config`` defaults: 7-layer conv frontend with feat_extract_norm
"group", 12 x 768, vocabulary 32 like facebook/wav2vec2-base-960h) with random weights (speed does not
depend on what the weights learned), the project's character processor, saved with ``save_pretrained``
and made a ``none`` variant folder by ``compression.store.compress`` (what the workflow decodes).
Audio: the real LibriSpeech/LibriVox utterances in tests/data/speech (all of them by default).

Timings: the machine is shared and its load changes within seconds. The set is cut into the batches
``transcribe`` makes of it (units); in every round each path decodes each unit in turn, the order rotating, and
a path's time is the sum over units of its fastest round (timeit's rule, applied unit by unit). "pure forward" is
the time inside the model's forward calls during our own passes (forward hooks: same batches, no feature
extraction, no search). The job runs once per round on the whole set, its model load, audio reads and forward
calls timed from inside it (the decode stage's load_variant and read_audio wrapped for the call), so (b) compares
parts of one run.

Also measured: where our time goes (feature extractor, padding, audio reading, attention mask on a padded batch,
inference mode, CTC argmax, tokenizer decode, conv frontend vs transformer, the pipeline's own overhead), and
prototypes of changes to ``decoding.py`` (defined here, timed in the same rounds): padding-bounded batches, batch
of one, and an exact batched forward for group-norm models (conv frontend per utterance, transformer batched with
its mask). Transcripts of every path are compared with the naive loop's: zero padding changes what a group-norm
frontend computes.

Usage: .venv/bin/python benchmarks/decode_benchmark.py [--threads 2] [--rounds 2] [--utterances N]
       [--device auto|cpu|cuda] [--batch-seconds 60] [--max-padding 0.1] [--cprofile]
Writes benchmarks/results/decode.md and prints it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src")]

from reporting import cpu_name, publish  # noqa: E402
from asrcompress.audio import duration_s, read_audio  # noqa: E402
from asrcompress.compression.registry import Variant  # noqa: E402
from asrcompress.compression.store import CARD, compress, load_variant  # noqa: E402
from asrcompress.decode_stage import decode_test_set  # noqa: E402
from asrcompress.decoding import (  # noqa: E402
    greedy_ctc, ids_to_text, length_sorted_batches, model_inputs, transcribe,
)
from asrcompress.device import pick_device, synchronize  # noqa: E402
from asrcompress.deploy import ONNX_FILE, OnnxCTCModel, quantize_dynamic_graph  # noqa: E402
from asrcompress.export import export_variant  # noqa: E402
from asrcompress.io import read_json, write_json  # noqa: E402
from asrcompress.manifest import Utterance, read_manifest, resolve_audio, write_manifest  # noqa: E402
from asrcompress.models import ModelSpec, build_model, build_processor, save_model_dir  # noqa: E402
from asrcompress.scoring import count_errors, total  # noqa: E402

RATE = 16000
SEED = 0
REAL_SPEECH = REPO / "tests" / "data" / "speech" / "transcripts.tsv"
CPU_GOAL = 1.0  # (a) ours / naive speed
JOB_GOAL = 1.3  # (b) job wall / (forward + start-up)
GPU_GOAL = 50.0  # (c)
ORT_GOAL = 1.3  # (d) issue #17: decode.backend onnxruntime / naive speed, identical transcripts
ORT_PATH = "decode.backend onnxruntime (`transcribe` on the exported graph, utterances unpadded side by side)"
ORT_INT8_PATH = "the same graph quantized as `ort_int8` (int8 weights per channel; a different model, not exact)"


# ---------------------------------------------------------------- timing


class ForwardClock:
    """Seconds spent inside ``module``'s forward calls (hooks), optionally keeping the logits."""

    def __init__(self, module: torch.nn.Module, device: torch.device, keep_logits: bool = False):
        self.device, self.keep_logits = device, keep_logits
        self.seconds, self.calls, self.samples, self.logits = 0.0, 0, 0, []
        self._started = 0.0
        self._handles = [module.register_forward_pre_hook(self._pre, with_kwargs=True),
                         module.register_forward_hook(self._post)]

    def _pre(self, module, args, kwargs) -> None:
        values = kwargs.get("input_values", args[0] if args else None)
        self.samples += values.numel() if isinstance(values, torch.Tensor) else 0  # padded samples fed in
        synchronize(self.device)
        self._started = time.perf_counter()

    def _post(self, module, args, output) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._started
        self.calls += 1
        if self.keep_logits:
            self.logits.append(output.logits.detach().float().cpu())

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - started


# ---------------------------------------------------------------- data and model


def _utterances(n: int) -> list[Utterance]:
    if not REAL_SPEECH.exists():
        sys.exit(f"{REAL_SPEECH} is missing: the benchmark decodes the real utterances of tests/data")
    with open(REAL_SPEECH, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    root = REAL_SPEECH.parent.parent
    rows = rows[:n] if n else rows
    return [Utterance(r["utt_id"], str(root / r["path"]), duration_s(root / r["path"]), Path(r["path"]).parent.name,
                      r["text"]) for r in rows]


def _variant_folder(tmp: Path, threads: int, device: torch.device) -> Path:
    """A wav2vec2-base shape with random weights, saved, then made the ``none`` variant the way the workflow does."""
    torch.manual_seed(SEED)
    processor = build_processor(RATE)
    save_model_dir(build_model(ModelSpec("w2v2-base", "scratch"), processor).eval(), processor, tmp / "baseline")
    variant = tmp / "variants" / "none"
    compress(tmp / "baseline", Variant.of("none"), variant, seed=SEED, sample_rate=RATE, threads=threads,
             cost_seconds=1.0, cost_repeats=1)
    if device.type == "cpu" and torch.cuda.is_available():  # --device cpu on a GPU machine: keep the job on CPU too
        card = read_json(variant / CARD)
        write_json(variant / CARD, {**card, "cpu_only": True})
    return variant


def _plain(text: str, tokenizer) -> str:
    """A transcript without special tokens (the pipeline keeps <unk>, <s>, </s>; ``ids_to_text`` drops them)."""
    for token in tokenizer.all_special_tokens:
        text = text.replace(token, "")
    return " ".join(text.split())


@dataclasses.dataclass
class Agreement:
    differing: int
    cer: float  # character errors against the naive loop's transcripts


def _agreement(reference: Sequence[str], hypotheses: Sequence[str], tokenizer) -> Agreement:
    ref = [_plain(t, tokenizer) for t in reference]
    hyp = [_plain(t, tokenizer) for t in hypotheses]
    return Agreement(sum(a != b for a, b in zip(ref, hyp)), total(count_errors(a, b) for a, b in zip(ref, hyp)).cer)


# ---------------------------------------------------------------- the measured paths


def naive_loop(pipe, waves: Sequence[np.ndarray]) -> list[str]:
    return [pipe(wave)["text"] for wave in waves]


@dataclasses.dataclass
class JobRun:
    wall_s: float
    load_s: float  # load_variant inside the job
    read_s: float  # audio reads inside the job (nan if they could not be timed there)
    forward_s: float  # the job's model forward calls (hooks on the model it loaded)

    def ratio(self, read_s: float) -> float:
        """(b): job wall / (pure forward + start-up), measured inside this job (``read_s`` if its reads were not)."""
        return self.wall_s / (self.forward_s + self.load_s + (read_s if math.isnan(self.read_s) else self.read_s))


def job(variant: Path, manifest: Path, out: Path, batch_seconds: float, threads: int) -> JobRun:
    """``decode_test_set`` as the workflow runs it, with its model load, audio reads and forward calls timed from
    inside (the decode stage's load_variant and read_audio wrapped for the call, forward hooks on the loaded model)."""
    from asrcompress import decode_stage

    clocks: list[ForwardClock] = []
    spent = {"load": 0.0, "read": 0.0, "reads": 0}
    original_load, original_read = decode_stage.load_variant, decode_stage.read_audio

    def timed_load(*args, **kwargs):
        started = time.perf_counter()
        model, processor, card = original_load(*args, **kwargs)
        spent["load"] += time.perf_counter() - started
        device = kwargs.get("device", args[1] if len(args) > 1 else None)
        clocks.append(ForwardClock(model, torch.device(device or "cpu")))
        return model, processor, card

    def timed_read(*args, **kwargs):
        started = time.perf_counter()
        wave = original_read(*args, **kwargs)
        spent["read"] += time.perf_counter() - started
        spent["reads"] += 1
        return wave

    decode_stage.load_variant, decode_stage.read_audio = timed_load, timed_read
    try:
        _, wall_s = _timed(torch.device("cuda" if torch.cuda.is_available() else "cpu"), lambda: decode_test_set(
            variant_dir=str(variant), condition_manifest=str(manifest), hyps_path=str(out / "hyps.jsonl"),
            timing_path=str(out / "timing.json"), sample_rate=RATE, batch_seconds=batch_seconds, threads=threads))
    finally:
        decode_stage.load_variant, decode_stage.read_audio = original_load, original_read
        for clock in clocks:
            clock.close()
    if not clocks or not spent["reads"]:  # the stage no longer calls what is wrapped: a table of NaNs would hide it
        raise RuntimeError("the decode job's load_variant/read_audio were not intercepted: update benchmark.job()")
    return JobRun(wall_s, spent["load"], spent["read"], sum(clock.seconds for clock in clocks))


def start_up(variant: Path, manifest: Path, device: torch.device) -> tuple[float, float]:
    """What the job does before its first forward pass, timed on its own: load the variant, read the audio."""
    _, load_s = _timed(device, lambda: load_variant(str(variant), device))
    utterances = read_manifest(manifest)
    _, read_s = _timed(device, lambda: [read_audio(resolve_audio(u, manifest), RATE) for u in utterances])
    return load_s, read_s


# ---------------------------------------------------------------- prototypes of decoding.py changes


def _exact_forward(model, inputs: dict[str, torch.Tensor], lengths: Sequence[int],
                   device: torch.device) -> tuple[torch.Tensor, list[int], float]:
    """Logits as batch-of-one passes give them, batched where that is exact: the conv frontend runs on each
    utterance unpadded (a group-norm frontend normalises over time, padding included), the transformer runs
    on the padded frames with their mask. Returns (logits, frames per utterance, frontend seconds)."""
    base = model.base_model
    values = inputs["input_values"].to(device)
    started = time.perf_counter()
    features = [base.feature_extractor(values[row: row + 1, :n]).transpose(1, 2)[0] for row, n in enumerate(lengths)]
    synchronize(device)
    frontend_s = time.perf_counter() - started
    frames = [f.shape[0] for f in features]
    hidden = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
    mask = None
    if min(frames) != max(frames):
        mask = torch.arange(hidden.shape[1], device=device)[None] < torch.tensor(frames, device=device)[:, None]
    hidden, _ = base.feature_projection(hidden)
    hidden = base.encoder(hidden, attention_mask=mask).last_hidden_state
    return model.lm_head(hidden).float().cpu(), frames, frontend_s


def _masked_group_norm_frontend(encoder, values: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """The conv frontend on a padded batch, exact: the group norm of conv layer 0 (the only one that mixes time
    steps) runs on each utterance's own frames (in place, HF's fused kernel); the later convolutions never reach
    padding from a valid output frame. The convolutions stay batched (a GPU wants that)."""
    first = encoder.conv_layers[0]
    norm = first.layer_norm
    hidden = first.conv(values[:, None])  # (batch, channels, frames)
    frames = ((samples - first.conv.kernel_size[0]) // first.conv.stride[0] + 1).tolist()
    for row, n in enumerate(frames):
        hidden[row, :, :n] = torch.nn.functional.group_norm(hidden[row: row + 1, :, :n], norm.num_groups, norm.weight,
                                                            norm.bias, norm.eps)[0]
    hidden = first.activation(hidden)
    for layer in encoder.conv_layers[1:]:
        hidden = layer(hidden)
    return hidden


def _masked_forward(model, inputs: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, list[int], float]:
    """Logits as batches of one give them, fully batched: masked group norm in the frontend, mask in the encoder."""
    base = model.base_model
    values = inputs["input_values"].to(device)
    samples = inputs["attention_mask"].sum(-1)
    started = time.perf_counter()
    features = _masked_group_norm_frontend(base.feature_extractor, values, samples).transpose(1, 2)
    synchronize(device)
    frontend_s = time.perf_counter() - started
    frames = model._get_feat_extract_output_lengths(samples).tolist()
    mask = None
    if min(frames) != max(frames):
        mask = torch.arange(features.shape[1], device=device)[None] < torch.tensor(frames, device=device)[:, None]
    hidden, _ = base.feature_projection(features)
    hidden = base.encoder(hidden, attention_mask=mask).last_hidden_state
    return model.lm_head(hidden).float().cpu(), frames, frontend_s


@dataclasses.dataclass
class Pass:
    hypotheses: list[str]
    seconds: float
    forward_s: float
    frontend_s: float = float("nan")
    batches: int = 0
    padded_samples: int = 0


@torch.inference_mode()
def prototype(model, processor, waves: Sequence[np.ndarray], batches: list[list[int]], device: torch.device,
              exact_frontend: str = "") -> Pass:
    """``transcribe`` with other batches, or with an exact group-norm forward ("per-utterance" frontend or
    "masked" group norm), greedy search the same."""
    blank, tokenizer = processor.tokenizer.pad_token_id, processor.tokenizer
    hypotheses = [""] * len(waves)
    forward_s = frontend_s = 0.0
    padded = 0
    synchronize(device)
    started = time.perf_counter()
    for index in batches:
        inputs = model_inputs(processor, [waves[i] for i in index], RATE)
        padded += inputs["input_values"].numel()
        synchronize(device)
        forward_started = time.perf_counter()
        if exact_frontend:
            logits, frames, seconds = (_masked_forward(model, inputs, device) if exact_frontend == "masked" else
                                       _exact_forward(model, inputs, [len(waves[i]) for i in index], device))
            frontend_s += seconds
        else:
            logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
            frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
        forward_s += time.perf_counter() - forward_started
        for i, ids in zip(index, greedy_ctc(logits, frames, blank)):
            hypotheses[i] = ids_to_text(ids, tokenizer)
    synchronize(device)
    return Pass(hypotheses, time.perf_counter() - started, forward_s, frontend_s if exact_frontend else float("nan"),
                len(batches), padded)


# ---------------------------------------------------------------- the paths, timed unit by unit


def _sorted(lengths: Sequence[int]) -> list[int]:
    return sorted(range(len(lengths)), key=lambda i: (lengths[i], i))


def make_paths(model, processor, pipe, device: torch.device, args: argparse.Namespace,
               onnx_model: OnnxCTCModel | None = None,
               int8_model: OnnxCTCModel | None = None) -> dict[str, Callable[..., Pass]]:
    """Each path decodes a list of waves and says how long it took (and how long its forward calls took)."""
    max_samples = int(args.batch_seconds * RATE)

    def naive(waves: list[np.ndarray], keep_logits: bool) -> Pass:
        clock = ForwardClock(model, device)
        hypotheses, seconds = _timed(device, lambda: naive_loop(pipe, waves))
        clock.close()
        return Pass(hypotheses, seconds, clock.seconds, batches=len(waves), padded_samples=sum(len(w) for w in waves))

    def ours(waves: list[np.ndarray], keep_logits: bool) -> Pass:
        clock = ForwardClock(model, device, keep_logits=keep_logits)
        frontend = ForwardClock(model.base_model.feature_extractor, device)
        (hypotheses, _), seconds = _timed(device, lambda: transcribe(model, processor, waves, RATE, args.batch_seconds,
                                                                     device))
        clock.close()
        frontend.close()
        result = Pass(hypotheses, seconds, clock.seconds, frontend.seconds, clock.calls, clock.samples)
        result.logits = clock.logits  # type: ignore[attr-defined]
        return result

    def proto(batcher: Callable[[list[int]], list[list[int]]], exact: str) -> Callable[..., Pass]:
        return lambda waves, keep_logits: prototype(model, processor, waves, batcher([len(w) for w in waves]), device,
                                                    exact)

    def graph(runner: OnnxCTCModel) -> Callable[..., Pass]:
        def run(waves: list[np.ndarray], keep_logits: bool) -> Pass:
            (hypotheses, _), seconds = _timed(device, lambda: transcribe(runner, processor, waves, RATE,
                                                                         args.batch_seconds, device))
            return Pass(hypotheses, seconds, seconds, batches=1, padded_samples=sum(len(w) for w in waves))

        return run

    paths = {"naive": naive, "ours": ours}
    if onnx_model is not None:
        paths[ORT_PATH] = graph(onnx_model)
    if int8_model is not None:
        paths[ORT_INT8_PATH] = graph(int8_model)
    if not args.no_prototypes:
        bounded = lambda lengths: length_sorted_batches(lengths, max_samples, args.max_padding)  # noqa: E731
        paths[f"bounded padding (<= {args.max_padding:.0%}), plain HF forward"] = proto(bounded, "")
        paths["batch of 1 (no padding)"] = proto(lambda lengths: [[i] for i in _sorted(lengths)], "")
        paths[f"exact group-norm A: conv frontend per utterance, transformer in bounded ({args.max_padding:.0%}) "
              "batches"] = proto(bounded, "per-utterance")
        paths[f"exact group-norm B: batched convs, layer-0 group norm per utterance, bounded ({args.max_padding:.0%}) "
              "batches"] = proto(bounded, "masked")
    return paths


@dataclasses.dataclass
class PathResult:
    """A path over the whole set: per unit the fastest of the rounds, summed."""

    seconds: float
    forward_s: float
    frontend_s: float
    batches: int
    padded_samples: int
    hypotheses: list[str]
    round_s: list[float]  # each round's total, for the spread
    second_s: float  # per unit the second-fastest round, summed: how far the fastest is from the next

    @classmethod
    def of(cls, units: list[list[int]], passes: list[list[Pass]], n: int) -> "PathResult":
        best = [min(unit_passes, key=lambda p: p.seconds) for unit_passes in passes]
        hypotheses = [""] * n
        for unit, result in zip(units, best):
            for i, text in zip(unit, result.hypotheses):
                hypotheses[i] = text
        rounds = len(passes[0])
        second = [sorted(p.seconds for p in unit_passes)[min(1, rounds - 1)] for unit_passes in passes]
        return cls(sum(p.seconds for p in best), sum(p.forward_s for p in best), sum(p.frontend_s for p in best),
                   sum(p.batches for p in best), sum(p.padded_samples for p in best), hypotheses,
                   [sum(unit_passes[r].seconds for unit_passes in passes) for r in range(rounds)], sum(second))


# ---------------------------------------------------------------- profile of our own path


@torch.inference_mode()
def _forward_seconds(model, inputs: dict[str, torch.Tensor], device: torch.device) -> float:
    return _timed(device, lambda: model(**{k: v.to(device) for k, v in inputs.items()}))[1]


def profile_parts(model, processor, waves: Sequence[np.ndarray], batches: list[list[int]], logits: list[torch.Tensor],
                  ) -> dict[str, Any]:
    """Seconds of the parts of ``transcribe`` around the forward pass (feature extraction, search, decoding)."""
    parts: dict[str, Any] = {}
    started = time.perf_counter()
    batch_inputs = [model_inputs(processor, [waves[i] for i in index], RATE) for index in batches]
    parts["features"] = time.perf_counter() - started
    frames = [model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist() for inputs in batch_inputs]
    if [len(f) for f in frames] != [len(batch_logits) for batch_logits in logits]:  # transcribe batches otherwise now
        frames = [[batch_logits.shape[1]] * len(batch_logits) for batch_logits in logits]
    blank = processor.tokenizer.pad_token_id
    started = time.perf_counter()
    paths = [greedy_ctc(batch_logits, batch_frames, blank) for batch_logits, batch_frames in zip(logits, frames)]
    parts["greedy"] = time.perf_counter() - started
    started = time.perf_counter()
    _ = [ids_to_text(ids, processor.tokenizer) for batch_paths in paths for ids in batch_paths]
    parts["tokenizer"] = time.perf_counter() - started
    parts["tokens"] = float(sum(len(ids) for batch_paths in paths for ids in batch_paths))
    return parts


class Switches:
    """Two switches of the forward, each setting alternated with the other once per round (fastest kept):

    - the attention mask on the largest padded batch: HF's advice for group-norm models is to pass none (zero
      padding only), ``model_inputs`` always passes it (transcripts without it are kept for the comparison);
    - ``inference_mode`` (``transcribe``) against ``no_grad`` (the pipeline), on one utterance of median length.
    """

    def __init__(self, model, processor, waves: Sequence[np.ndarray], batches: list[list[int]], device: torch.device):
        self.model, self.processor, self.device = model, processor, device
        self.padded = max((index for index in batches if len(index) > 1), key=len, default=None)
        self.padded_inputs = model_inputs(processor, [waves[i] for i in self.padded], RATE) if self.padded else None
        median = _sorted([len(w) for w in waves])[len(waves) // 2]
        self.single = model_inputs(processor, [waves[median]], RATE)
        self.times: dict[str, list[float]] = {"padded mask": [], "padded no mask": [], "inference_mode": [], "no_grad": []}
        self.unmasked_texts: list[str] = []

    def _forward(self, inputs: dict[str, torch.Tensor], no_grad: bool = False):
        with torch.no_grad() if no_grad else torch.inference_mode():
            return _timed(self.device, lambda: self.model(**{k: v.to(self.device) for k, v in inputs.items()}))

    def run(self) -> None:
        if self.padded_inputs is not None:
            self.times["padded mask"].append(self._forward(self.padded_inputs)[1])
            output, seconds = self._forward({"input_values": self.padded_inputs["input_values"]})
            self.times["padded no mask"].append(seconds)
            if not self.unmasked_texts:
                samples = self.padded_inputs["attention_mask"].sum(-1)
                frames = self.model._get_feat_extract_output_lengths(samples).tolist()
                self.unmasked_texts = [ids_to_text(ids, self.processor.tokenizer) for ids in greedy_ctc(
                    output.logits.float().cpu(), frames, self.processor.tokenizer.pad_token_id)]
        for _ in range(3):
            self.times["inference_mode"].append(self._forward(self.single)[1])
            self.times["no_grad"].append(self._forward(self.single, no_grad=True)[1])

    def parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {name: min(times) for name, times in self.times.items() if times}
        parts["switch audio s"] = self.single["input_values"].numel() / RATE
        if self.padded_inputs is not None:
            parts.update({"padded batch": self.padded, "unmasked texts": self.unmasked_texts,
                          "padded audio s": self.padded_inputs["input_values"].numel() / RATE})
        return parts


def process_start_up() -> float:
    """Seconds for a fresh interpreter to import what the decode script imports (not part of the job's wall)."""
    code = "import asrcompress.decoding, asrcompress.compression.store, transformers, torch"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); {code}"], check=True,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - started


def _cprofile(model, processor, waves, batch_seconds: float, device: torch.device) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(transcribe, model, processor, waves, RATE, batch_seconds, device)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


# ---------------------------------------------------------------- report


def _row(name: str, seconds: float, audio_s: float, naive_s: float | None, note: str) -> str:
    speedup = f"{naive_s / seconds:.2f}x" if naive_s else "-"
    return f"| {name} | {seconds:.2f} | {audio_s:.1f} | {seconds / audio_s:.4f} | {speedup} | {note} |"


def _verdict(value: float, goal: float, noise: float, higher_is_better: bool = True) -> str:
    met = value >= goal if higher_is_better else value <= goal
    verdict = "MET" if met else "NOT MET"
    return f"{verdict} (within noise)" if abs(value / goal - 1) <= noise else verdict


def _spread(times: Sequence[float]) -> str:
    return " / ".join(f"{t:.2f}" for t in times)


def main() -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds; every path runs once per unit per round")
    parser.add_argument("--utterances", type=int, default=0, help="the first N utterances of tests/data (0: all)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-seconds", type=float, default=float(config["decode"]["batch_seconds"]),
                        help="decode.batch_seconds (config/config.yaml)")
    parser.add_argument("--max-padding", type=float, default=0.1, help="padding cap of the bounded-batch prototypes")
    parser.add_argument("--no-prototypes", action="store_true")
    parser.add_argument("--no-onnx", action="store_true", help="leave out the onnxruntime backend (CPU only)")
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions of one transcribe")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "decode.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import transformers
    from transformers import pipeline

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    device = pick_device() if args.device == "auto" else torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but CUDA is not available")
    log = lambda line: print(line, flush=True)  # noqa: E731
    load_before = os.getloadavg()[0]
    import_s = process_start_up()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        manifest = tmp / "test.jsonl"
        write_manifest(manifest, _utterances(args.utterances))
        utterances = read_manifest(manifest)  # the job's order (sorted by id)
        waves = [read_audio(resolve_audio(u, manifest), RATE) for u in utterances]
        lengths = [len(w) for w in waves]
        audio_s = sum(lengths) / RATE
        log(f"{len(waves)} utterances, {audio_s:.1f} s of audio; building the variant folder")
        variant = _variant_folder(tmp, args.threads, device)
        torch.set_num_threads(args.threads)
        model, processor, _ = load_variant(str(variant), device)
        model = model.to(device).eval()
        pipe = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                        feature_extractor=processor.feature_extractor, device=device)
        mc = model.config
        shape = (f"{mc.num_hidden_layers} x {mc.hidden_size}, {len(mc.conv_dim)}-layer conv frontend (feat_extract_norm "
                 f"{mc.feat_extract_norm!r}), vocabulary {mc.vocab_size}, "
                 f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, attention {mc._attn_implementation}")
        onnx_model, int8_model, export = None, None, None
        if device.type == "cpu" and not args.no_onnx:
            log("exporting the variant to ONNX and checking it on the set")
            export = export_variant(variant, str(manifest), tmp / "onnx", RATE, check_utterances=len(waves),
                                    cost_seconds=1.0, cost_repeats=1, threads=args.threads)
            torch.set_num_threads(args.threads)
            onnx_model = OnnxCTCModel(tmp / "onnx" / ONNX_FILE, model, args.threads)
            quantize_dynamic_graph(tmp / "onnx" / ONNX_FILE, tmp / "int8.onnx", per_channel=True)
            int8_model = OnnxCTCModel(tmp / "int8.onnx", model, args.threads)
        paths = make_paths(model, processor, pipe, device, args, onnx_model, int8_model)
        shortest = [waves[min(range(len(waves)), key=lambda i: lengths[i])]]
        for run in paths.values():  # warm-up
            run(shortest, False)

        # Units: the batches `transcribe` makes of the whole set. Every path decodes a unit in turn (order rotating),
        # so the load of a shared machine falls alike on all; per unit the fastest round counts.
        units = length_sorted_batches(lengths, int(args.batch_seconds * RATE))
        passes: dict[str, list[list[Pass]]] = {name: [[] for _ in units] for name in paths}
        jobs: list[JobRun] = []
        load_t, read_t = [], []
        job_out = tmp / "job"
        job_out.mkdir()
        names = list(paths)
        switches = Switches(model, processor, waves, units, device)
        for round_no in range(args.rounds):
            for u, unit in enumerate(units):
                shift = (round_no + u) % len(names)
                for name in names[shift:] + names[:shift]:
                    passes[name][u].append(paths[name]([waves[i] for i in unit], round_no == 0))
            load_s, read_s = start_up(variant, manifest, device)
            load_t.append(load_s)
            read_t.append(read_s)
            jobs.append(job(variant, manifest, job_out, args.batch_seconds, args.threads))
            torch.set_num_threads(args.threads)
            switches.run()
            log(f"round {round_no + 1}: " + ", ".join(f"{name.split(':')[0].split(' (')[0]} "
                                                      f"{sum(p[round_no].seconds for p in passes[name]):.2f} s"
                                                      for name in names)
                + f", job {jobs[-1].wall_s:.2f} s (load {jobs[-1].load_s:.2f}, forward {jobs[-1].forward_s:.2f})")
        job_hyps = {}
        for line in (job_out / "hyps.jsonl").read_text().splitlines():
            record = json.loads(line)
            job_hyps[record["id"]] = record["hypothesis"]
        logits = [passes["ours"][u][0].logits[k] for u in range(len(units))  # type: ignore[attr-defined]
                  for k in range(len(passes["ours"][u][0].logits))]  # type: ignore[attr-defined]
        parts = {**profile_parts(model, processor, waves, units, logits), **switches.parts()}
        log("profile: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items() if isinstance(v, float)))
        if args.cprofile:
            _cprofile(model, processor, waves, args.batch_seconds, device)
    load_after = os.getloadavg()[0]

    # ------------------------------------------------------------ tables
    tokenizer = processor.tokenizer
    results = {name: PathResult.of(units, passes[name], len(waves)) for name in names}
    naive, ours = results["naive"], results["ours"]
    naive_s, ours_s = naive.seconds, ours.seconds
    # Timing noise: the naive loop and the batches of one run the very same forward calls (same shapes, same
    # model), so their forward sums differ by measurement error only; without that prototype, the naive loop's
    # second-fastest rounds against its fastest (per unit, summed).
    batch1 = next((r for name, r in results.items() if name.startswith("batch of 1")), None)
    noise = abs(naive.forward_s / batch1.forward_s - 1) if batch1 else naive.second_s / naive.seconds - 1
    fastest_job = min(jobs, key=lambda j: j.wall_s)
    job_read = fastest_job.read_s if fastest_job.read_s == fastest_job.read_s else min(read_t)
    ratio = fastest_job.ratio(min(read_t))
    agreement = {name: _agreement(naive.hypotheses, result.hypotheses, tokenizer) for name, result in results.items()}
    job_same = sum(job_hyps[u.id] == h for u, h in zip(utterances, ours.hypotheses))
    padded_s = ours.padded_samples / RATE
    startup_s = fastest_job.load_s + job_read
    rows = [
        _row("naive HF pipeline loop (batch 1)", naive_s, audio_s, naive_s,
             f"round totals {_spread(naive.round_s)}; its forward calls {naive.forward_s:.2f} s"),
        _row(f"ours: `transcribe` (batched greedy, {args.batch_seconds:g} s batches, as decoding.py has it)", ours_s,
             audio_s, naive_s,
             f"round totals {_spread(ours.round_s)}; {ours.batches} batches, {padded_s:.1f} s padded audio "
             f"(+{padded_s / audio_s - 1:.0%}); transcripts differing from naive: {agreement['ours'].differing}/"
             f"{len(waves)}, CER vs naive {agreement['ours'].cer:.1%}"),
        _row("ours: job wall (`decode_test_set`: load + read + forward + search + write)", fastest_job.wall_s, audio_s,
             naive_s, f"rounds {_spread([j.wall_s for j in jobs])}; transcripts equal to `transcribe`'s: "
                      f"{job_same}/{len(waves)}"),
        _row("pure forward (model forward calls of `transcribe`, same batches)", ours.forward_s, audio_s, naive_s,
             f"conv frontend {ours.frontend_s:.2f} s ({ours.frontend_s / ours.forward_s:.0%}), transformer + head "
             f"{ours.forward_s - ours.frontend_s:.2f} s; inside the fastest job: {fastest_job.forward_s:.2f} s"),
        *([_row(ORT_PATH, results[ORT_PATH].seconds, audio_s, naive_s,
                f"round totals {_spread(results[ORT_PATH].round_s)}; transcripts differing from naive: "
                f"{agreement[ORT_PATH].differing}/{len(waves)}, CER vs naive {agreement[ORT_PATH].cer:.1%}; export check: "
                f"{export.status}, max logit difference {export.max_logit_diff:.1e}, greedy transcripts equal to torch's "
                f"{export.transcripts_equal}/{export.transcripts_checked}")] if ORT_PATH in results else []),
        _row("start-up (model load + audio read, inside the fastest job)", startup_s, audio_s, None,
             f"`load_variant` {fastest_job.load_s:.2f} s, audio read {job_read:.3f} s; timed on their own: load "
             f"{_spread(load_t)} s, read {_spread(read_t)} s"),
    ]
    cpu = device.type == "cpu"
    speedup = naive_s / ours_s
    batch1_forward = next((r.forward_s for name, r in results.items() if name.startswith("batch of 1")), naive.forward_s)
    targets = [
        "| target | measured | result |",
        "|---|---|---|",
        f"| (a) CPU, {args.threads} threads: ours >= naive loop | {speedup:.2f}x | "
        + (_verdict(speedup, CPU_GOAL, noise) if cpu else "not measured: ran on GPU") + " |",
        f"| (b) job wall <= {JOB_GOAL}x (pure forward + start-up), one job's own parts | {fastest_job.wall_s:.2f} / "
        f"({fastest_job.forward_s:.2f} + {startup_s:.2f}) = {ratio:.3f} (rounds "
        f"{' / '.join(f'{j.ratio(min(read_t)):.3f}' for j in jobs)}) | "
        f"{'MET' if max(j.ratio(min(read_t)) for j in jobs) <= JOB_GOAL else 'NOT MET'} |",
        f"| (b) again, against the forward of the unpadded audio (batches of one, {batch1_forward:.2f} s) | "
        f"{fastest_job.wall_s:.2f} / ({batch1_forward:.2f} + {startup_s:.2f}) = "
        f"{fastest_job.wall_s / (batch1_forward + startup_s):.3f} | "
        f"{_verdict(fastest_job.wall_s / (batch1_forward + startup_s), JOB_GOAL, noise, higher_is_better=False)} (job "
        "and forward from different "
        "passes) |",
        *([f"| (d) CPU, {args.threads} threads: decode.backend onnxruntime >= {ORT_GOAL:g}x naive loop, identical "
            f"transcripts | {naive_s / results[ORT_PATH].seconds:.2f}x, differing "
            f"{agreement[ORT_PATH].differing}/{len(waves)} | "
            + (_verdict(naive_s / results[ORT_PATH].seconds, ORT_GOAL, noise)
               if agreement[ORT_PATH].differing == 0 else "NOT MET (transcripts differ)") + " |"]
          if ORT_PATH in results else []),
        f"| (c) GPU: ours >= {GPU_GOAL:g}x naive loop | "
        + (f"{speedup:.1f}x | {_verdict(speedup, GPU_GOAL, noise)} |" if not cpu else "- | not measured: no GPU |"),
    ]

    waste = ours.forward_s - batch1.forward_s if batch1 else ours.forward_s * (1 - audio_s / padded_s)
    profile = [
        "| part | seconds | share of ours | notes |",
        "|---|---|---|---|",
        f"| forward: conv frontend | {ours.frontend_s:.2f} | {ours.frontend_s / ours_s:.0%} | the 7 conv layers as "
        "`transcribe` runs them (padded batch, its group-norm handling) |",
        f"| forward: transformer + CTC head | {ours.forward_s - ours.frontend_s:.2f} | "
        f"{(ours.forward_s - ours.frontend_s) / ours_s:.0%} | |",
        f"| forward beyond batches of one | {waste:.2f} | {waste / ours_s:.0%} | "
        + (f"ours' forward - the batch-of-one prototype's ({batch1.forward_s:.2f} s, same audio): padding plus how a "
           "batch runs (the frontend's group-norm handling, batched convolutions); " if batch1
           else "estimate: forward x padding share; ")
        + f"padding: {padded_s - audio_s:.1f} s of zeros in {padded_s:.1f} s fed (+{padded_s / audio_s - 1:.0%}) |",
        f"| outside the forward (features, search, loop) | {ours_s - ours.forward_s:.2f} | "
        f"{(ours_s - ours.forward_s) / ours_s:.1%} | ours - its forward calls |",
        f"| feature extractor: normalise + pad | {parts['features']:.3f} | {parts['features'] / ours_s:.2%} | "
        "`model_inputs`, all batches |",
        f"| CTC argmax + collapse | {parts['greedy']:.3f} | {parts['greedy'] / ours_s:.2%} | `greedy_ctc`, "
        f"{parts['tokens']:.0f} tokens emitted (random weights emit far more than a trained model) |",
        f"| tokenizer decode | {parts['tokenizer']:.3f} | {parts['tokenizer'] / ours_s:.2%} | `ids_to_text` |",
        f"| audio read (job start-up) | {job_read:.3f} | {job_read / ours_s:.2%} | soundfile, {len(waves)} files |",
        f"| model load (job start-up) | {fastest_job.load_s:.2f} | {fastest_job.load_s / ours_s:.1%} | `load_variant` "
        "(from_pretrained) |",
        f"| naive loop: pipeline overhead | {naive_s - naive.forward_s:.2f} | - | naive - its own forward calls: "
        f"{(naive_s - naive.forward_s) / len(waves) * 1000:.0f} ms per utterance |",
        f"| inference_mode vs no_grad | {parts['inference_mode'] - parts['no_grad']:+.3f} | - | batch of one: "
        f"{parts['inference_mode']:.3f} s vs {parts['no_grad']:.3f} s on {parts['switch audio s']:.1f} s of audio "
        f"({parts['inference_mode'] / parts['no_grad'] - 1:+.1%}); alternated, fastest kept |",
    ]
    if "padded batch" in parts:
        padded_ids = parts["padded batch"]
        unmasked = _agreement([naive.hypotheses[i] for i in padded_ids], parts["unmasked texts"], tokenizer)
        masked = _agreement([naive.hypotheses[i] for i in padded_ids], [ours.hypotheses[i] for i in padded_ids], tokenizer)
        profile.append(
            f"| attention mask on a padded batch | {parts['padded mask'] - parts['padded no mask']:+.3f} | - | "
            f"{len(padded_ids)} utterances, {parts['padded audio s']:.1f} s padded: with the mask (as `model_inputs`) "
            f"{parts['padded mask']:.2f} s, without (HF's advice for group-norm models) {parts['padded no mask']:.2f} s "
            f"({parts['padded mask'] / parts['padded no mask'] - 1:+.1%}); differing from naive with the mask "
            f"{masked.differing}/{len(padded_ids)} (CER {masked.cer:.1%}), without {unmasked.differing}/{len(padded_ids)} "
            f"(CER {unmasked.cer:.1%}). A batch of one gets no mask in SDPA (HF drops an all-ones mask) |")

    proto_lines = [
        "| prototype | seconds (round totals) | speed-up vs naive | vs ours | forward s | batches | padded audio | "
        "differing from naive | CER vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if name in ("naive", "ours"):
            continue
        forward = f"{result.forward_s:.2f}" + (f" (frontend {result.frontend_s:.2f})" if result.frontend_s == result.frontend_s
                                               else "")
        proto_lines.append(f"| {name} | {result.seconds:.2f} ({_spread(result.round_s)}) | {naive_s / result.seconds:.2f}x "
                           f"| {ours_s / result.seconds:.2f}x | {forward} | {result.batches} | "
                           f"+{result.padded_samples / RATE / audio_s - 1:.0%} | "
                           f"{agreement[name].differing}/{len(waves)} | {agreement[name].cer:.1%} |")

    report = (
        f"Command: `.venv/bin/python benchmarks/decode_benchmark.py {' '.join(sys.argv[1:])}`.\n\n"
        f"Decode benchmark: {len(waves)} real utterances from tests/data/speech ({audio_s:.1f} s, "
        f"{min(lengths) / RATE:.1f} to {max(lengths) / RATE:.1f} s), one wav2vec2-base shape with random weights ({shape}), "
        f"saved as a `none` variant by `store.compress`. Device {device.type}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
        + f"; machine: {cpu_name()} ({os.cpu_count()} cores, shared), threads = {args.threads}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; 1-min load average {load_before:.1f} at the start, {load_after:.1f} at "
        f"the end. Naive = `pipeline(\"automatic-speech-recognition\", model, tokenizer, feature_extractor)` called once "
        f"per utterance on in-memory audio; ours = `decoding.transcribe` on the same audio and model; job = "
        f"`decode_stage.decode_test_set` on the variant folder and a manifest. The set is cut into the {len(units)} batches "
        f"`transcribe` makes of it; in each of {args.rounds} rounds every path decodes each of them in turn (order "
        "rotating), and a path's time is the sum over batches of its fastest round, so the load of the shared machine "
        "falls alike on all. The job runs once per round on the whole set; its start-up and forward are timed from "
        "inside it. RTF = seconds / audio seconds.\n\n"
        "| path | seconds | audio s | RTF | speed-up vs naive | notes |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nProcess start-up (fresh interpreter importing the decode script's modules; not in the job wall): "
        f"{import_s:.2f} s.\n\nTargets of issue #6 (timing noise {noise:.1%}: "
        + ("the forward calls of the naive loop against those of the batch-of-one prototype, the very same computation"
           if batch1 else "the naive loop's second-fastest rounds against its fastest")
        + "; a verdict whose margin is within it is marked within noise; (b) must hold in every round):\n\n"
        + "\n".join(targets)
        + "\n\nWhere our time goes (`transcribe`, fastest rounds; each switch alternates its two settings once per "
        "round (the inference-mode one three times), fastest kept):\n\n"
        + "\n".join(profile)
        + ("\n\nPrototypes of changes to `decoding.py` (defined in this benchmark, timed in the same rounds and units; "
           "differing = transcripts that are not the naive loop's once special tokens are dropped; CER of the "
           "prototype's transcripts against the naive loop's; random weights make argmax near-ties common):\n\n"
           + "\n".join(proto_lines) if len(proto_lines) > 2 else "")
        + "\n"
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()
