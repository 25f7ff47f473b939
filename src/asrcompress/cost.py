"""What a model costs: parameters, non-zeros, bytes on disk, MACs and latency per audio second.

The packed size, which needs what each compression step recorded, is :mod:`asrcompress.compression.packing`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .device import model_dtype


def state_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Tensors inside a state-dict value (which may hold tuples of them)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from state_tensors(item)


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    parameters: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.parameters if self.parameters else 0.0


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Weights and biases (float or quantized), excluding integer buffers such as position ids."""
    total = nonzero = 0
    for key, value in model.state_dict().items():
        if key.endswith((".scale", ".zero_point")):  # quantization metadata, not weights
            continue
        for tensor in state_tensors(value):
            if tensor.is_quantized:
                tensor = tensor.int_repr()
            elif not tensor.is_floating_point():
                continue
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    return ParameterCount(total, nonzero)


def directory_bytes(path: str | os.PathLike[str], exclude: tuple[str, ...] = ("card.json",)) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name not in exclude)


# ----------------------------------------------------------------------------------------------
# Compute: multiply-accumulates of one forward pass, and its latency.


def _sdpa_flops(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Float attention on the CPU runs through this op, which torch's counter does not know (it knows the CUDA ones).
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


@dataclasses.dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass, by where they come from."""

    dense: int  # matmuls and convolutions (masked sparse weights included: the dense kernel runs them)
    attention: int  # fused scaled-dot-product attention: Q K^T and A V (eager attention's bmm land in dense)

    @property
    def total(self) -> int:
        return self.dense + self.attention


def count_macs(model: torch.nn.Module, input_values: torch.Tensor) -> MacCount:
    """MACs of ``model(input_values=...)``: torch's flop counter, flops / 2. An int8 variant runs as an ONNX graph
    (deploy.OnnxCTCModel), whose MACs are its torch model's: :func:`measure_cost` counts that one."""
    # no_grad, not inference_mode: weight-norm parametrizations (the positional conv) fail under the
    # counter's dispatch mode in inference mode.
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        model(input_values=input_values)
    per_op = counter.get_flop_counts().get("Global", {})
    attention = sum(flops for op, flops in per_op.items() if "attention" in str(op)) // 2
    return MacCount(dense=counter.get_total_flops() // 2 - attention, attention=attention)


def conv_lengths(samples: int, kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    """Frames after each layer of a stack of unpadded convolutions (a wav2vec2-style CNN frontend) over
    ``samples`` input samples; the last is the frame count the encoder sees."""
    lengths, length = [], samples
    for kernel, stride in zip(kernels, strides):
        length = (length - kernel) // stride + 1
        lengths.append(length)
    return tuple(lengths)


def cost_input(sample_rate: int, seconds: float) -> torch.Tensor:
    """The fixed input every variant is costed on: seeded white noise, batch of one (cost does not depend
    on content, only on length)."""
    return torch.randn(1, round(seconds * sample_rate), generator=torch.Generator().manual_seed(0))


def _forward_times_ms(forward: Callable[[], Any], repeats: int, synchronize: Callable[[], None],
                      warmup: bool) -> list[float]:
    """Wall time of each of ``repeats`` calls, after one warm-up (allocations, kernel selection, caches)."""
    times = []
    with torch.inference_mode():
        if warmup:
            forward()
            synchronize()
        for _ in range(repeats):
            started = time.perf_counter()
            forward()
            synchronize()
            times.append((time.perf_counter() - started) * 1000)
    return times


def cpu_forward_ms(model: torch.nn.Module, input_values: torch.Tensor, threads: int = 1, repeats: int = 3,
                   warmup: bool = True) -> list[float]:
    """Milliseconds of each of ``repeats`` forward passes on the CPU with ``threads`` threads (restored
    afterwards). Benchmarks interleave single passes of two models with ``warmup=False``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _forward_times_ms(lambda: model(input_values=input_values), repeats, lambda: None, warmup)
    finally:
        torch.set_num_threads(previous)


def _gpu_forward_ms(model: torch.nn.Module, audio: torch.Tensor, repeats: int,
                    accelerate: Callable[[torch.nn.Module], torch.nn.Module] | None) -> list[float]:
    """On a copy, so the caller's model stays on the CPU (the card's other figures are measured there)."""
    device = torch.device("cuda")
    copy_on_gpu = copy.deepcopy(model).to(device)
    if accelerate is not None:
        copy_on_gpu = accelerate(copy_on_gpu)
    audio = audio.to(device)
    try:
        return _forward_times_ms(lambda: copy_on_gpu(input_values=audio), repeats, torch.cuda.synchronize, True)
    finally:
        copy_on_gpu = None  # released before the cache is emptied
        torch.cuda.empty_cache()


def measure_cost(model: torch.nn.Module, sample_rate: int, seconds: float = 10.0, threads: int = 1, repeats: int = 3,
                 cpu_only: bool = False,
                 accelerate: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> dict[str, Any]:
    """Compute and speed of one forward pass over ``seconds`` of audio, batch of one, on a CPU model.

    ``gmacs_per_audio_s``: MACs of that pass (:func:`count_macs`) / seconds, in GMACs. Pruned weights
    kept as zeros (unstructured or N:M) still count dense MACs: the dense kernel runs them here.
    ``cpu_latency_ms``: median of ``repeats`` passes after a warm-up, on ``threads`` threads (restored
    afterwards); ``cpu_rtf`` = latency / seconds. ``gpu_latency_ms``: the same on CUDA, on a copy of the
    model, when a GPU is present and the model's kernels are not CPU-only; else None. ``accelerate``, when
    given, turns that CUDA copy into what decoding runs (the steps' GPU kernels, as ``load_variant`` does
    on CUDA); without it the GPU figure is the dense float model's. The input is
    :func:`cost_input` cast to the model's float dtype, as ``transcribe`` does.
    """
    if repeats < 1 or threads < 1 or seconds <= 0:
        raise ValueError(f"measure_cost needs repeats >= 1, threads >= 1, seconds > 0 (got {repeats}, {threads}, "
                         f"{seconds})")
    audio = cost_input(sample_rate, seconds).to(model_dtype(model))
    was_training = model.training
    model.eval()
    try:
        # An ONNX Runtime variant (deploy.OnnxCTCModel) runs outside torch's counter: its MACs are those of the
        # torch model it was exported from (int8 MatMuls do the same multiply-accumulates); its latency is its own.
        macs = count_macs(getattr(model, "reference", model), audio)
        if hasattr(model, "set_threads"):
            model.set_threads(threads)
        cpu_ms = statistics.median(cpu_forward_ms(model, audio, threads, repeats))
        gpu_ms = None if cpu_only or not torch.cuda.is_available() else statistics.median(
            _gpu_forward_ms(model, audio, repeats, accelerate))
    finally:
        model.train(was_training)
    return {
        "gmacs_per_audio_s": macs.total / seconds / 1e9,
        "cpu_latency_ms": cpu_ms,
        "cpu_rtf": cpu_ms / 1000 / seconds,
        "gpu_latency_ms": gpu_ms,
        "cost_input_s": seconds,
        "cost_threads": threads,
    }
