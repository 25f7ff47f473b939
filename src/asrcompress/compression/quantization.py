"""Quantization: half-precision casts, post-training int8 (dynamic, static) and weight-only QAT.

- ``fp16`` / ``bf16``: the whole model cast (E1's fp16 point). torch 2.9.1 has CPU kernels for every
  op wav2vec2-style models use in either dtype (conv1d, layer and group norm, SDPA attention, GELU).
- ``dynamic_int8`` / ``ort_int8``: int8 weights (per tensor / per channel), activations quantized on the fly
  (E1), on ONNX Runtime.
- ``static_int8``: int8 weights per output channel and int8 activations with ranges observed on training
  utterances beforehand, on ONNX Runtime (a QDQ graph).
- ``qat``: weight-only, per-output-channel symmetric b-bit fake quantization with a straight-through
  estimator (E3, USM-Lite); without recovery steps it is round-to-nearest weight-only PTQ.

None of them uses torch's deprecated eager torch.ao.quantization (see "Post-training int8" below).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..decoding import model_inputs
from ..deploy import quantize_dynamic_graph, quantize_static_graph
from ..errors import PipelineError
from .methods import CalibrationParams, TargetParams
from .packing import record_weight_bits, weight_bits_of
from .pruning import prunable_weights
from .registry import Params

log = logging.getLogger(__name__)


def _torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


# ----------------------------------------------------------------------------------------------
# Half precision


def _cast(dtype: torch.dtype) -> Callable[..., torch.nn.Module]:
    def cast(model: torch.nn.Module, _level: Any, _params: Params, _context: Any = None) -> torch.nn.Module:
        """Every floating parameter and buffer to ``dtype``. Also the restructure: the saved state dict
        holds half-size tensors, and loading it into a float32 model would silently upcast them."""
        return model.to(dtype)

    return cast


to_fp16 = _cast(torch.float16)
to_bf16 = _cast(torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# Post-training int8, on ONNX Runtime
#
# torch's eager int8 (torch.ao.quantization: quantize_dynamic, QuantStub/prepare/convert) is deprecated and
# announced for removal. Its successor, torchao's quantize_ configs, has no fast CPU kernel in eager mode
# (Int8DynamicActivationInt8WeightConfig ran a wav2vec2-base 19x slower than float on 2 AVX2 cores, torch 2.9.1,
# torchao 0.15; fast only under torch.compile, about a minute per process for the demo model). ONNX Runtime's
# quantization is maintained and runs int8 MatMuls on x86 CPUs: the int8 methods export the chain's float model
# and quantize the graph (the store calls ``onnx_convert``; the variant decodes through deploy.OnnxCTCModel).
# What they quantize: every MatMul/Gemm with a constant weight, the Linear layers torch's methods quantized; the
# convolutions stay float.


def _record(context: Any, **meta: Any) -> None:
    context.meta.update({"runtime": "onnxruntime", **meta})


def ort_dynamic_int8(float_path: Path, out_path: Path, _params: Params, context: Any) -> None:
    """E1's dynamic int8 as torch's quantize_dynamic made it: int8 weights per tensor, activations per call."""
    _record(context, weights="int8, per tensor", activations="uint8, dynamic")
    quantize_dynamic_graph(float_path, out_path, per_channel=False)


def ort_int8(float_path: Path, out_path: Path, _params: Params, context: Any) -> None:
    """ONNX Runtime's recommended dynamic int8: int8 weights per output channel, activations per call."""
    _record(context, weights="int8, per channel", activations="uint8, dynamic")
    quantize_dynamic_graph(float_path, out_path, per_channel=True)


def ort_static_int8(float_path: Path, out_path: Path, params: CalibrationParams, context: Any) -> None:
    """Static int8: activation ranges (min/max) observed on ``calibration_utterances`` training utterances (the
    same ones every run), int8 weights per output channel, a QDQ graph."""
    count = int(params.calibration_utterances)
    waves = context.calibration_waves(count)
    inputs = [model_inputs(context.processor, [wave], context.sample_rate)["input_values"].numpy() for wave in waves]
    _record(context, weights="int8, per channel", activations="uint8, static (min/max)", calibration_utterances=count)
    quantize_static_graph(float_path, out_path, inputs)


# ----------------------------------------------------------------------------------------------
# Weight-only quantization-aware training (USM-Lite)
#
# The grid: per output channel c, step s_c = max|W_c| / (2^(b-1) - 1) and W_c = s_c * k with integer
# k in [-(2^(b-1) - 1), 2^(b-1) - 1] (255, 15 and 3 levels at 8, 4, 2 bits). It is symmetric so zero
# is exact (pruned weights stay zero) and the channel's largest weight sits on the top level (no
# clipping, so the straight-through gradient needs no clipping mask).


def grid_step(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """s_c per output channel (dim 0), shaped to broadcast against ``weight``; 1 for all-zero channels."""
    absmax = weight.detach().abs().flatten(1).amax(dim=1)
    step = torch.where(absmax > 0, absmax / (2 ** (bits - 1) - 1), torch.ones_like(absmax))
    return step.view(-1, *([1] * (weight.dim() - 1)))


def grid_integers(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, s): the nearest grid integers of ``weight`` and the per-channel steps."""
    step = grid_step(weight, bits)
    top = 2 ** (bits - 1) - 1
    return torch.round(weight.detach() / step).clamp_(-top, top), step


def quantize_to_grid(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest onto the grid (no gradient)."""
    integers, step = grid_integers(weight, bits)
    return integers * step


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The grid values forward, the identity backward (straight-through estimator)."""
    return weight + (quantize_to_grid(weight, bits) - weight).detach()


class FakeQuantLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose forward uses its weight on the b-bit grid (``qat_bits``).

    Not ``torch.nn.utils.parametrize``: a parametrized weight cannot also carry a
    ``torch.nn.utils.prune`` mask (prune needs ``weight`` to be a Parameter, and ``prune.remove``
    needs ``weight_orig`` to be one), and N:M sparsity uses prune. Swapping the class instead leaves
    parameters, hooks and state-dict keys alone, so masks added before or after still apply: the
    weight this forward reads is whatever the module holds after its pre-hooks (masked, when pruned).
    """

    qat_bits: int

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, fake_quantize(self.weight, self.qat_bits), self.bias)


class FakeQuantConv1d(torch.nn.Conv1d):
    """``nn.Conv1d`` counterpart of :class:`FakeQuantLinear` (``include_conv``)."""

    qat_bits: int

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(input, fake_quantize(self.weight, self.qat_bits), self.bias)


FAKE_QUANT = {torch.nn.Linear: FakeQuantLinear, torch.nn.Conv1d: FakeQuantConv1d}
PLAIN = {fake: plain for plain, fake in FAKE_QUANT.items()}


def qat_targets(model: torch.nn.Module, include_conv: bool, exclude: list[str]) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of the weights pruning would pick (``prunable_weights``: every ``nn.Linear``, with
    ``include_conv`` every ``nn.Conv1d``, not excluded by name, not weight-normalised), of exactly those
    classes: a subclass something else made (another method's layer) keeps its own forward, in float."""
    chosen = []
    for name, module in prunable_weights(model, include_conv, exclude):
        if type(module) in FAKE_QUANT:
            chosen.append((name, module))
        else:
            log.warning("qat: %s is a %s, not a plain Linear/Conv1d: left in float", name, type(module).__name__)
    return chosen


def prepare_qat(model: torch.nn.Module, level: float, params: TargetParams, _context: Any) -> torch.nn.Module:
    targets = qat_targets(model, bool(params.include_conv), list(params.exclude))
    if not targets:
        raise PipelineError(f"qat: no weight left to quantize (exclude={list(params.exclude)!r})")
    for _name, module in targets:
        module.__class__ = FAKE_QUANT[type(module)]
        module.qat_bits = int(level)
    return model


def _stored_weight(module: torch.nn.Module) -> tuple[torch.Tensor, torch.nn.Parameter]:
    """(the weight forward uses, the Parameter holding its trained values).

    Under a ``torch.nn.utils.prune`` mask the trained values live in ``weight_orig``, the mask in the
    buffer ``weight_mask``, and ``weight`` is only recomputed before each forward (so it may be stale)."""
    own = dict(module.named_parameters(recurse=False))
    if "weight_orig" in own and hasattr(module, "weight_mask"):
        return own["weight_orig"] * module.weight_mask, own["weight_orig"]
    return module.weight, own["weight"]


@torch.no_grad()
def finalize_qat(model: torch.nn.Module, _level: Any, _params: Params, context: Any) -> torch.nn.Module:
    """Write the grid values into the weights and restore the plain classes.

    A pending prune mask (N:M before or after this step) stays valid: masked weights are zero and
    zero is on the grid, so ``prune.remove`` afterwards keeps both the zeros and the grid."""
    bits_of: dict[str, int] = {}
    for name, module in model.named_modules():
        if type(module) not in PLAIN:
            continue
        effective, stored = _stored_weight(module)
        stored.copy_(quantize_to_grid(effective, module.qat_bits))
        bits_of[f"{name}.weight"] = module.qat_bits
        module.__class__ = PLAIN[type(module)]
        del module.qat_bits
    record_weight_bits(context.meta, bits_of)
    context.meta["grid"] = "per-output-channel symmetric, step max|w|/(2^(b-1)-1)"
    return model


# tinygemm (torch's int4 CUDA kernel, wrapped by torchao) dequantizes a 4-bit code q as
# (q - 8) * scale + zero per group of input columns. With zero = 0 and scale = s_c in every group,
# codes k + 8 reproduce our symmetric grid exactly (it uses at most 15 of the 16 codes; 2-bit grids
# fit too), up to the bf16 rounding of s_c: the GPU computes with the weights the CPU variant holds.
# torchao's own Int4WeightOnlyConfig would re-quantize them asymmetrically per group instead.
TINYGEMM_GROUP = 128
TINYGEMM_INNER_K_TILES = 8  # what torchao's Int4TilePackedTo4dTensor fixes


def tinygemm_codes(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int32 codes in [0, 15], per-channel steps (out,)) of a weight on the <=4-bit grid."""
    if bits > 4:
        raise ValueError(f"a {bits}-bit grid does not fit tinygemm's 4-bit codes")
    integers, step = grid_integers(weight, bits)
    return integers.to(torch.int32) + 8, step.flatten()


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tinygemm_int4_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """A CUDA weight on the grid as torchao's tile-packed int4 tensor (padding as torchao pads)."""
    from torchao.quantization import Int4TilePackedTo4dTensor
    from torchao.quantization.utils import pack_tinygemm_scales_and_zeros

    codes, step = tinygemm_codes(weight, bits)
    out_features, in_features = codes.shape
    rows, columns = _round_up(out_features, 8), _round_up(in_features, 1024)
    codes = F.pad(codes, (0, columns - in_features, 0, rows - out_features), value=8)  # code 8 is 0.0
    packed = torch.ops.aten._convert_weight_to_int4pack(
        (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8).contiguous(), TINYGEMM_INNER_K_TILES)
    scales = F.pad(step, (0, rows - out_features), value=1.0)[:, None]
    scales = scales.expand(rows, columns // TINYGEMM_GROUP).to(torch.bfloat16).contiguous()
    return Int4TilePackedTo4dTensor(
        qdata=packed, scale_and_zero=pack_tinygemm_scales_and_zeros(scales, torch.zeros_like(scales), torch.bfloat16),
        block_size=[1, TINYGEMM_GROUP], shape=weight.shape,
    )


def accelerate_qat(model: torch.nn.Module, level: float, _params: Params,
                    meta: dict[str, Any]) -> torch.nn.Module:
    """4- and 2-bit Linear weights to the int4 tinygemm kernel (bf16 activations in those layers).

    8-bit weights (and convolutions) stay dense float: no torchao kernel keeps a symmetric per-channel int8 grid exact.
    Weights another step already swapped (2:4 semi-structured) are left to that step's kernel."""
    bits = int(level)
    if bits > 4 or not torch.cuda.is_available():
        return model
    if not _torchao_available() or torch.cuda.get_device_capability()[0] < 8:
        log.warning("qat~%d: no int4 kernel (needs torchao and compute capability >= 8.0): dense float weights", bits)
        return model
    for key in weight_bits_of(meta):
        module = model.get_submodule(key.rsplit(".", 1)[0])
        if isinstance(module, torch.nn.Conv1d):  # include_conv: no int4 convolution kernel, stays float
            continue
        if type(module) is not torch.nn.Linear or type(module.weight) is not torch.nn.Parameter:
            log.warning("qat~%d: %s is not a dense nn.Linear weight any more: no int4 kernel", bits, key)
            continue
        module.weight = torch.nn.Parameter(tinygemm_int4_weight(module.weight.detach(), bits), requires_grad=False)
    return model


