"""Cost measures: MACs against counts worked out by hand, packed sizes against the formats' arithmetic."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from asrcompress.compression.packing import QPARAM_BITS, PackedLayout, nm_kept_values, packed_bytes, packed_tensor_bits
from asrcompress.cost import cost_input, count_macs, cpu_forward_ms, measure_cost
from asrcompress.models import ModelSpec, build_model, build_processor

from helpers import TINY_ARCHITECTURE, tiny_model

RATE = 16000
SECONDS = 1.0
FRAME = 160  # samples per frame of the toy model


class LinearCTC(torch.nn.Module):
    """A CTC-shaped toy: the waveform cut into 10 ms frames, one Linear to the vocabulary."""

    def __init__(self, vocab: int = 32) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(FRAME, vocab)

    def forward(self, input_values: torch.Tensor) -> SimpleNamespace:
        frames = input_values.reshape(input_values.shape[0], -1, FRAME)
        return SimpleNamespace(logits=self.proj(frames))


def conv_length(length: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def wav2vec2_macs(config, samples: int) -> tuple[int, int]:
    """(matmul + convolution MACs, attention MACs) of a wav2vec2 CTC forward pass, counted by hand."""
    length, channels, dense = samples, 1, 0
    for dim, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = conv_length(length, kernel, stride)
        dense += length * dim * channels * kernel
        channels = dim
    frames, hidden = length, config.hidden_size
    dense += frames * channels * hidden  # feature projection
    kernel = config.num_conv_pos_embeddings
    positional_frames = conv_length(frames, kernel, 1, kernel // 2)  # one frame cut afterwards, still computed
    dense += positional_frames * hidden * (hidden // config.num_conv_pos_embedding_groups) * kernel
    per_layer = 4 * frames * hidden * hidden + 2 * frames * hidden * config.intermediate_size  # q k v o, FFN
    dense += config.num_hidden_layers * per_layer
    dense += frames * hidden * config.vocab_size  # CTC head
    attention = config.num_hidden_layers * 2 * frames * frames * hidden  # Q K^T and A V over all heads
    return dense, attention


# ---------------------------------------------------------------------------------------------- MACs


def test_linear_only_model_reports_frames_times_in_times_out():
    cost = measure_cost(LinearCTC(), RATE, seconds=SECONDS, repeats=1)
    frames = int(RATE * SECONDS) // FRAME
    assert cost["gmacs_per_audio_s"] * 1e9 * SECONDS == pytest.approx(frames * FRAME * 32, rel=1e-12)


def test_tiny_wav2vec2_macs_match_the_hand_count():
    model, _ = tiny_model()
    audio = cost_input(RATE, SECONDS)
    macs = count_macs(model.eval(), audio)
    dense, attention = wav2vec2_macs(model.config, audio.shape[1])
    assert macs.dense == dense  # convolutions and Linear layers: exact
    assert macs.attention == pytest.approx(attention, rel=0.01)  # attention: 1% (a fused kernel's own count)
    cost = measure_cost(model, RATE, seconds=SECONDS, repeats=1)
    assert cost["gmacs_per_audio_s"] == pytest.approx(macs.total / SECONDS / 1e9, rel=1e-12)


def test_half_the_ffn_width_costs_fewer_macs():
    processor = build_processor()
    narrow = build_model(ModelSpec("narrow", "scratch", architecture={
        **TINY_ARCHITECTURE, "intermediate_size": TINY_ARCHITECTURE["intermediate_size"] // 2}), processor)
    model, _ = tiny_model()
    audio = cost_input(RATE, SECONDS)
    full, half = count_macs(model.eval(), audio), count_macs(narrow.eval(), audio)
    assert half.total < full.total
    assert full.total - half.total == wav2vec2_macs(model.config, audio.shape[1])[0] - wav2vec2_macs(
        narrow.config, audio.shape[1])[0]


def test_masked_zeros_still_count_dense_macs():
    model = LinearCTC()
    audio = cost_input(RATE, SECONDS)
    before = count_macs(model, audio).total
    with torch.no_grad():
        model.proj.weight[:, ::2] = 0
    assert count_macs(model, audio).total == before


# ---------------------------------------------------------------------------------------------- latency


def test_latency_fields_and_thread_count_restored(one_thread):
    model, _ = tiny_model()
    model.train()
    cost = measure_cost(model, RATE, seconds=0.5, threads=2, repeats=2, cpu_only=True)
    assert torch.get_num_threads() == 1 and model.training  # the caller's settings come back
    assert cost["cpu_latency_ms"] > 0
    assert cost["cpu_rtf"] == pytest.approx(cost["cpu_latency_ms"] / 1000 / 0.5, rel=1e-12)
    assert cost["gpu_latency_ms"] is None  # cpu_only: never measured on a GPU
    assert (cost["cost_input_s"], cost["cost_threads"]) == (0.5, 2)
    times = cpu_forward_ms(model.eval(), cost_input(RATE, 0.5), threads=2, repeats=3, warmup=False)
    assert len(times) == 3 and min(times) > 0 and torch.get_num_threads() == 1


def test_half_precision_model_is_fed_half_inputs():
    model, _ = tiny_model()
    cost = measure_cost(model.half(), RATE, seconds=0.5, repeats=1)
    assert cost["cpu_latency_ms"] > 0 and cost["gmacs_per_audio_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_no_gpu_latency_without_cuda():
    assert measure_cost(LinearCTC(), RATE, seconds=0.5, repeats=1)["gpu_latency_ms"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_latency_on_an_accelerated_copy():
    model, _ = tiny_model()
    seen: list[str] = []

    def accelerate(copy: torch.nn.Module) -> torch.nn.Module:
        seen.append(next(copy.parameters()).device.type)
        return copy

    cost = measure_cost(model, RATE, seconds=0.5, repeats=2, accelerate=accelerate)
    assert cost["gpu_latency_ms"] > 0
    assert seen == ["cuda"] and next(model.parameters()).device.type == "cpu"


# ---------------------------------------------------------------------------------------------- packed size


def linear(in_features: int = 16, out_features: int = 8) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(in_features, out_features)


def test_fp32_and_fp16_tensors_at_their_dtype():
    layer = linear()
    numel = layer.weight.numel() + layer.bias.numel()
    assert packed_bytes(layer, []) == 4 * numel
    assert packed_bytes(layer.half(), []) == 2 * numel


def test_weight_bits_pack_values_and_add_one_scale_per_output_channel():
    layer = linear()  # weight 8 x 16, bias 8 (fp32)
    bias = 4 * 8
    assert packed_bytes(layer, [{"weight_bits": {"weight": 4}}]) == 128 // 2 + 8 * 2 + bias
    assert packed_bytes(layer, [{"weight_bits": {"weight": 2}, "scale_bits": 32}]) == 128 // 4 + 8 * 4 + bias


def test_nm_pattern_keeps_n_values_per_group_plus_2_bit_indices():
    layer = linear().half()
    bias = 2 * 8
    kept = 128 // 2
    assert packed_bytes(layer, [{"nm_pattern": {"weight": "2:4"}}]) == kept * 2 + kept * 2 // 8 + bias
    assert packed_bytes(layer, [{"nm_pattern": {"weight": "1:4"}}]) == 32 * 2 + 32 * 2 // 8 + bias
    # N:M then 4-bit QAT on the same weight (two steps): 4 + 2 bits per kept value, fp16 scales
    metas = [{"nm_pattern": {"weight": "2:4"}}, {"weight_bits": {"weight": 4}}]
    assert packed_bytes(layer, metas) == kept * (4 + 2) // 8 + 8 * 2 + bias


def test_nm_groups_run_along_each_output_row():
    assert nm_kept_values((8, 16), 2, 4) == 64
    assert nm_kept_values((3, 10), 2, 4) == 3 * (2 * 2 + 2)  # a short last group of 2 keeps both
    assert nm_kept_values((3, 9), 2, 4) == 3 * (2 * 2 + 1)


def test_unstructured_zeros_are_stored_dense():
    layer = linear()
    before = packed_bytes(layer, [])
    with torch.no_grad():
        layer.weight[layer.weight.abs() < layer.weight.abs().median()] = 0
    assert packed_bytes(layer, []) == before


def test_a_quantized_tensor_is_one_byte_per_weight_plus_its_qparams():
    """torch's quantized tensors (core torch, not torch.ao's modules) still count at their stored bits."""
    weight = torch.quantize_per_tensor(torch.randn(4, 32), 0.05, 0, torch.qint8)
    assert packed_tensor_bits(weight) == 128 * 8 + QPARAM_BITS
    # a QAT step's 4-bit record names the weight; a later int8 conversion stores 8 bits, and that is what counts
    assert packed_tensor_bits(weight, PackedLayout(value_bits=4)) == 128 * 8 + QPARAM_BITS


def test_tied_weights_count_once_and_integer_buffers_not_at_all():
    model = torch.nn.Sequential(linear(16, 16), linear(16, 16))
    model[1].weight = model[0].weight
    model.register_buffer("position_ids", torch.arange(1000))
    assert packed_bytes(model, []) == 4 * (256 + 16 + 16)


def test_tiny_model_packs_every_float_parameter_once():
    model, _ = tiny_model()
    expected = 4 * sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once
    assert packed_bytes(model, []) == expected
    assert packed_bytes(model.half(), []) == expected // 2


def test_metadata_keys_survive_a_later_wrapper_and_a_missing_weight_is_an_error():
    wrapped = torch.nn.Sequential(torch.nn.Sequential(linear()))  # as downsampling holds the model: "0." prefix
    assert packed_bytes(wrapped, [{"weight_bits": {"0.weight": 4}}]) == 128 // 2 + 8 * 2 + 4 * 8
    with pytest.raises(ValueError, match="nope.weight"):
        packed_bytes(linear(), [{"weight_bits": {"nope.weight": 4}}])
    twice = torch.nn.ModuleDict({"a": torch.nn.Sequential(linear()), "b": torch.nn.Sequential(linear())})
    with pytest.raises(ValueError, match="several"):
        packed_bytes(twice, [{"nm_pattern": {"0.weight": "2:4"}}])
