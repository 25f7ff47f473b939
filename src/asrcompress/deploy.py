"""ONNX deployment of variants: export, ONNX Runtime sessions, its int8 quantization and the export check.

The five studies compress models for small devices, where the runtime is rarely PyTorch eager. A variant is
exported with torch's TorchScript-based ONNX exporter (one input, ``input_values`` (batch, samples); one
output, ``logits`` (batch, frames, vocab); batch and length dynamic) and run by ONNX Runtime's CPU provider.
:class:`OnnxCTCModel` gives an ONNX graph the CTC interface decoding relies on, so the decode stage and the
cost card treat it as any variant.

What cannot export, and why (the export check records the op): a model holding torch.ao quantized modules
(``quantized::linear_dynamic`` has no ONNX form; no method makes them since the int8 methods moved to ONNX Runtime),
bfloat16 weights (no CPU kernels in ONNX Runtime) and the fbank student (``STFT`` of complex type). The int8
methods (``dynamic_int8``, ``static_int8``, ``ort_int8``) are ONNX graphs already: the chain's float model
exported here, then quantized by ONNX Runtime (:func:`quantize_dynamic_graph`, :func:`quantize_static_graph`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .decoding import transcribe
from .device import model_dtype
from .errors import PipelineError

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXPORT_RECORD = "export.json"
OPSET = 17  # LayerNormalization is an ONNX op from 17: the exporter then emits one node per layer norm
EXPORT_SAMPLES = 16000  # the traced example's length; every axis but the vocabulary is dynamic


class ExportError(PipelineError):
    """A variant that ONNX export or ONNX Runtime cannot take; ``op`` names the operator that stopped it."""

    def __init__(self, variant: str, op: str, detail: str) -> None:
        self.variant, self.op, self.detail = variant, op, detail
        super().__init__(f"variant {variant}: cannot run as ONNX: operator {op} ({detail})")

    @classmethod
    def of(cls, variant: str, error: BaseException) -> "ExportError":
        """The exporter's or the runtime's ``error``, with the operator it names and its first line."""
        if isinstance(error, ExportError):
            return error
        return cls(variant, failing_op(error), str(error).splitlines()[0] if str(error) else type(error).__name__)


_OP_PATTERNS = (
    re.compile(r"\b(\w+) does not currently support"),  # "STFT does not currently support complex types"
    re.compile(r"operator '([\w:.]+)'"),  # torch exporter: "Exporting the operator 'quantized::linear_dynamic' ..."
    re.compile(r"implementation for (\w+\(\d+\))"),  # ONNX Runtime: "Could not find an implementation for Conv(11)"
    re.compile(r"\b((?:aten|quantized|prim|torchaudio|onnx)::\w+)"),
    re.compile(r"Op type not registered '(\w+)'"),
)


def failing_op(error: BaseException) -> str:
    """The operator an exporter or runtime error names; the exception type when it names none.

    >>> failing_op(RuntimeError("Exporting the operator 'quantized::linear_dynamic' to ONNX opset 17 is not supported"))
    'quantized::linear_dynamic'
    >>> failing_op(ValueError("Could not find an implementation for Conv(11) node with name ''"))
    'Conv(11)'
    >>> failing_op(RuntimeError("STFT does not currently support complex types [Caused by ... onnx::Slice]"))
    'STFT'
    >>> failing_op(KeyError("x"))
    'KeyError'
    """
    text = str(error)
    for pattern in _OP_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return type(error).__name__


class _LogitsOf(torch.nn.Module):
    """The variant's forward as the graph has it: waveform in, logits out (no loss, no hidden states)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


@contextlib.contextmanager
def _exporter_log_discarded() -> Iterator[None]:
    """The exporter's C++ logger writes the whole TorchScript graph to stdout when an op has no ONNX form (torch
    2.9 turns that logger on for every export); the export record keeps the op instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(model: torch.nn.Module, path: str | Path, variant: str, opset: int = OPSET) -> None:
    """Write ``model`` as an ONNX graph at ``path``; an :class:`ExportError` names the op that cannot export."""
    dtype = model_dtype(model)
    if dtype == torch.bfloat16:  # the exporter fails on it with a message naming no op (torch 2.9)
        raise ExportError(variant, "bfloat16 weights", "ONNX Runtime's CPU provider has no bfloat16 Conv or MatMul")
    example = torch.randn(1, EXPORT_SAMPLES, generator=torch.Generator().manual_seed(0)).to(dtype)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _exporter_log_discarded():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes: the check catches them
            torch.onnx.export(
                _LogitsOf(model).eval(), (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["input_values"], output_names=["logits"], do_constant_folding=True,
                dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch", 1: "frames"}},
            )
    except Exception as err:  # the exporter raises many types; each one means this variant does not export
        Path(path).unlink(missing_ok=True)
        raise ExportError.of(variant, err) from err
    _strip_doc_strings(path)


def _strip_doc_strings(path: str | Path) -> None:
    """The exporter writes each node's Python source location into the graph: not part of the model, and about
    half the file of a small one."""
    import onnx

    graph = onnx.load(str(path))
    for node in graph.graph.node:
        node.doc_string = ""
    onnx.save(graph, str(path))


def session(path: str | Path, threads: int, variant: str = "?"):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, every graph optimisation on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are the exporter's, not the run's
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own pybind types
        raise ExportError.of(variant, err) from err


def _without_root_warnings(run) -> None:
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))  # "please run pre-processing" (shape inference), on the root
    try:
        run()
    finally:
        logging.disable(previous)


def quantize_dynamic_graph(float_path: str | Path, out_path: str | Path, per_channel: bool) -> None:
    """ONNX Runtime's dynamic int8 quantization: int8 weights (per tensor or per output channel) of every
    MatMul/Gemm with a constant weight (the Transformer's and the head's linear layers), activations quantized per
    call (uint8). Convolutions stay float: ONNX Runtime's dynamic ConvInteger is slower on x86 than its float Conv."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _without_root_warnings(lambda: quantize_dynamic(
        str(float_path), str(out_path), weight_type=QuantType.QInt8, per_channel=per_channel,
        op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": True}))


def quantize_static_graph(float_path: str | Path, out_path: str | Path, calibration: Sequence[np.ndarray]) -> None:
    """ONNX Runtime's static int8 quantization (QDQ graph): the same MatMul/Gemm weights, int8 per output channel;
    their uint8 activations get fixed ranges, the min/max over ``calibration`` (model inputs, batch of one each).
    ``reduce_range``: 7-bit weights, so the u8s8 products of x86 CPUs without VNNI cannot saturate (torch's x86
    qconfig did the same)."""
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            values = next(self.inputs, None)
            return None if values is None else {"input_values": values.astype(np.float32)}

    _without_root_warnings(lambda: quantize_static(
        str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, extra_options={"MatMulConstBOnly": True}))


class OnnxCTCModel(torch.nn.Module):
    """An ONNX graph behind the CTC interface of a variant: ``model(input_values=...)`` returns ``.logits``.

    ``reference`` is the torch variant the graph was exported from: it gives the frame count per utterance,
    the config and the MACs, and is never run. Each utterance of a batch runs unpadded (its samples from
    ``sample_lengths``), so a batch gives what batches of one give, whatever the front end's norm. With
    several threads, the utterances of a batch run side by side on one one-thread session (ONNX Runtime's
    ``run`` is thread-safe): on wav2vec2-base, 2 cores, that gave 3% more throughput than one session using
    both threads (measured during issue 17); a batch of one runs on a session with all the threads.
    """

    runs_unpadded = True

    def __init__(self, path: str | Path, reference: torch.nn.Module, threads: int = 1, variant: str = "?") -> None:
        super().__init__()
        self.path, self.variant = Path(path), variant
        self.reference = reference.eval()
        self.threads = 0
        self.set_threads(threads)

    @property
    def config(self):
        return self.reference.config

    def set_threads(self, threads: int) -> None:
        threads = max(1, threads)
        if threads == self.threads:
            return
        self.threads = threads
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
        self._single = session(self.path, threads, self.variant)
        self._parallel = session(self.path, 1, self.variant) if threads > 1 else None
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def close(self) -> None:
        """Release the worker threads (the sessions go with the object)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _get_feat_extract_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.reference._get_feat_extract_output_lengths(lengths)

    def _run(self, runner, row: np.ndarray) -> np.ndarray:
        return runner.run(None, {"input_values": row})[0]

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sample_lengths: torch.Tensor | None = None) -> SimpleNamespace:
        values = input_values.detach().cpu().numpy()
        lengths = sample_lengths.tolist() if sample_lengths is not None else [values.shape[1]] * len(values)
        rows = [np.ascontiguousarray(values[i: i + 1, : int(n)]) for i, n in enumerate(lengths)]
        if self._pool is None or len(rows) < 2:
            outputs = [self._run(self._single, row) for row in rows]
        else:  # longest first, so the last utterance to start is a short one
            order = sorted(range(len(rows)), key=lambda i: -rows[i].shape[1])
            done = dict(zip(order, self._pool.map(lambda i: self._run(self._parallel, rows[i]), order)))
            outputs = [done[i] for i in range(len(rows))]
        frames = max(o.shape[1] for o in outputs)
        logits = np.zeros((len(outputs), frames, outputs[0].shape[2]), dtype=outputs[0].dtype)
        for i, output in enumerate(outputs):
            logits[i, : output.shape[1]] = output[0]
        return SimpleNamespace(logits=torch.from_numpy(logits))


@torch.inference_mode()
def logit_difference(model: torch.nn.Module, graph: OnnxCTCModel, audio: torch.Tensor) -> float:
    """The largest absolute difference between the logits of ``model`` and of its graph on ``audio``."""
    audio = audio.to(model_dtype(model))
    expected = model(input_values=audio).logits.float()
    got = graph(input_values=audio).logits.float()
    return float((expected - got).abs().max()) if expected.shape == got.shape else float("inf")


def check_graph(model: torch.nn.Module, path: str | Path, variant: str, atol: float = 1e-3) -> float:
    """The largest absolute logit difference between ``model`` and its graph at ``path`` on 1 s of seeded noise;
    an :class:`ExportError` when it exceeds ``atol`` (a graph that computes something else)."""
    audio = torch.randn(1, EXPORT_SAMPLES, generator=torch.Generator().manual_seed(1))
    try:
        diff = logit_difference(model, OnnxCTCModel(path, model, 1, variant), audio)
    except Exception as err:  # onnxruntime raises its own pybind types
        raise ExportError.of(variant, err) from err
    if diff > atol:
        raise ExportError(variant, "(whole graph)", f"its logits differ from the model's by {diff:.3g} > {atol:g}")
    return diff


def ort_forward_ms(model: OnnxCTCModel, input_values: torch.Tensor, threads: int, repeats: int) -> float:
    """Median milliseconds of ``repeats`` ONNX Runtime passes over ``input_values`` after one warm-up."""
    model.set_threads(threads)
    times = []
    model(input_values=input_values)
    for _ in range(repeats):
        started = time.perf_counter()
        model(input_values=input_values)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """What the export check found: the graph against the torch variant it came from."""

    status: str  # ok | mismatch | failed | native (the variant is an ONNX graph already: ort_int8)
    variant: str
    op: str | None = None  # the operator that stopped the export (failed)
    detail: str | None = None
    max_logit_diff: float | None = None  # on the fixed cost input
    logits_atol: float | None = None
    transcripts_equal: int | None = None  # greedy, on the check utterances
    transcripts_checked: int | None = None
    ort_latency_ms: float | None = None  # fixed cost input, cost threads
    torch_latency_ms: float | None = None  # the same input and threads, measured in the same job
    onnx_bytes: int | None = None

    @property
    def usable(self) -> bool:
        """Whether decoding may run this graph instead of the torch variant."""
        return self.status in ("ok", "native")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "ExportCheck":
        return cls(**{f.name: entry.get(f.name) for f in dataclasses.fields(cls)})


def compare_transcripts(torch_model: torch.nn.Module, onnx_model: OnnxCTCModel, processor, waves: Sequence[np.ndarray],
                        sample_rate: int) -> int:
    """Utterances whose greedy transcripts the graph and the torch variant agree on (both unpadded)."""
    device = torch.device("cpu")
    ours, _ = transcribe(torch_model, processor, waves, sample_rate, 60.0, device, max_padding=0.0)
    theirs, _ = transcribe(onnx_model, processor, waves, sample_rate, 60.0, device, max_padding=0.0)
    return sum(a == b for a, b in zip(ours, theirs))


def onnx_weight_bytes(path: str | Path) -> int:
    """Bytes of a graph's initializers (weights, int8 scales and zero points)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return sum(numpy_helper.to_array(tensor).nbytes for tensor in graph.initializer)
