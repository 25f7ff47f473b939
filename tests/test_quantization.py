"""Quantization: half precision, static int8, weight-only QAT on the grid (alone and with N:M masks)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asrcompress.compression.quantization import (
    FakeQuantLinear, finalize_qat, grid_step, prepare_qat, tinygemm_codes,
)
from asrcompress.compression.methods import TargetParams
from asrcompress.compression.registry import Variant, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.decoding import transcribe
from asrcompress.device import model_dtype
from asrcompress.errors import ConfigError, PipelineError
from asrcompress.manifest import read_manifest
from asrcompress.models import load_pretrained_dir
from asrcompress.training import load_waves

from helpers import TINY_TRAINING

FAST_COST = {"cost_seconds": 1.0, "cost_repeats": 1}  # the card's latency is not under test here
QAT_DEFAULTS = TargetParams(exclude=("lm_head",))


@pytest.fixture(scope="module")
def speech(tiny_corpus) -> list[np.ndarray]:
    train, _ = tiny_corpus
    return load_waves(read_manifest(train)[:3], train, 16000)


@pytest.fixture(scope="module")
def batch(speech) -> torch.Tensor:
    return torch.from_numpy(np.stack([w[:16000] for w in speech]))


def logits(model: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=audio.to(model_dtype(model))).logits.float()


def linear_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": m.weight.detach().clone() for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def assert_on_grid(weight: torch.Tensor, bits: int, key: str) -> None:
    """Every row: at most 2^b - 1 distinct values, each step * k with |k| <= 2^(b-1) - 1."""
    top = 2 ** (bits - 1) - 1
    ratio = weight / grid_step(weight, bits)
    assert torch.allclose(ratio, ratio.round(), atol=1e-4), key
    assert ratio.round().abs().max() == top, key  # each row's largest |w| sits on the top level
    assert max(len(torch.unique(row)) for row in weight) <= 2 ** bits - 1, key


# ----------------------------------------------------------------------------------------------
# fp16 / bf16


@pytest.mark.parametrize("method, dtype, atol", [("fp16", torch.float16, 5e-3), ("bf16", torch.bfloat16, 5e-2)])
def test_half_precision_halves_the_weights_and_decodes_on_cpu(baseline, tmp_path, speech, batch, method, dtype, atol):
    card = compress(baseline, Variant.of(method), tmp_path / "v", **FAST_COST)
    model, processor, _ = load_variant(tmp_path / "v")
    floats = [t for t in model.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == dtype for t in floats)
    assert card["parameters"] * 2 <= card["bytes_on_disk"] < card["parameters"] * 2 * 1.25  # fp32 would be x4
    assert card["packed_bytes"] == 2 * sum(t.numel() for t in floats)
    reference = logits(load_pretrained_dir(baseline)[0], batch)
    assert (logits(model, batch) - reference).abs().max() < atol
    hypotheses, _ = transcribe(model, processor, speech, 16000, 10.0, torch.device("cpu"))
    assert len(hypotheses) == len(speech) and all(isinstance(h, str) for h in hypotheses)


# ----------------------------------------------------------------------------------------------
# static int8


def _graph_ops(path) -> dict[str, int]:
    import onnx

    ops: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def test_static_int8_calibrates_every_linear_and_round_trips(baseline, tmp_path, tiny_corpus, batch):
    """An ONNX Runtime QDQ graph: every Linear's weight int8 per channel, its input's range fixed by calibration."""
    import onnx
    from onnx import numpy_helper

    from asrcompress.deploy import ONNX_FILE, OnnxCTCModel

    train, _ = tiny_corpus
    variant = Variant.of("static_int8", params={"calibration_utterances": 4})
    card = compress(baseline, variant, tmp_path / "v", train_manifest=train, **FAST_COST)
    model, _, _ = load_variant(tmp_path / "v")
    assert isinstance(model, OnnxCTCModel) and card["runtime"] == "onnxruntime"
    float_model = load_pretrained_dir(baseline)[0]
    linears = sum(type(m) is torch.nn.Linear for m in float_model.modules())
    graph = onnx.load(str(tmp_path / "v" / ONNX_FILE)).graph
    weight_scales = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("_scale") and
                     numpy_helper.to_array(t).ndim == 1 and numpy_helper.to_array(t).size > 1]
    assert len(weight_scales) >= linears  # per-channel weight scales, one vector per quantized MatMul
    ops = _graph_ops(tmp_path / "v" / ONNX_FILE)
    assert ops["DequantizeLinear"] >= 2 * linears and ops.get("Conv", 0) > 0  # weights and activations; convs float
    activation_scales = {float(numpy_helper.to_array(t)) for t in graph.initializer
                         if t.name.endswith("_scale") and numpy_helper.to_array(t).ndim == 0}
    assert len(activation_scales) > 1  # calibrated: the ranges differ per layer
    assert card["steps_meta"][0] == {"runtime": "onnxruntime", "weights": "int8, per channel",
                                     "activations": "uint8, static (min/max)", "calibration_utterances": 4}
    assert card["method_versions"] == {"static_int8": 2}
    reference = logits(float_model, batch)
    assert (logits(model, batch) - reference).abs().max() < 0.1 * reference.abs().max()
    again = compress(baseline, variant, tmp_path / "again", train_manifest=train, **FAST_COST)
    assert (tmp_path / "again" / ONNX_FILE).read_bytes() == (tmp_path / "v" / ONNX_FILE).read_bytes()  # seeded
    assert again["packed_bytes"] == card["packed_bytes"]
    with pytest.raises(PipelineError, match="calibration needs the training split"):
        compress(baseline, variant, tmp_path / "no-data", **FAST_COST)
    assert not (tmp_path / "no-data").exists()


def test_dynamic_int8_runs_on_onnx_runtime_per_tensor(baseline, tmp_path, batch):
    from asrcompress.deploy import ONNX_FILE, OnnxCTCModel

    card = compress(baseline, Variant.of("dynamic_int8"), tmp_path / "v", **FAST_COST)
    model, _, _ = load_variant(tmp_path / "v")
    assert isinstance(model, OnnxCTCModel) and card["cpu_only"]
    ops = _graph_ops(tmp_path / "v" / ONNX_FILE)
    assert ops.get("MatMulInteger", 0) + ops.get("DynamicQuantizeMatMul", 0) > 0
    assert card["steps_meta"][0]["weights"] == "int8, per tensor"
    reference = logits(load_pretrained_dir(baseline)[0], batch)
    assert (logits(model, batch) - reference).abs().max() < 0.15 * reference.abs().max()  # one scale per weight


def test_no_source_file_imports_torch_ao_quantization():
    """torch's eager quantization is deprecated and announced for removal: src/ must not import it."""
    import ast
    from pathlib import Path

    for path in Path(__file__).resolve().parents[1].joinpath("src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("torch.ao") for n in names), f"{path} imports {names}"
            if isinstance(node, ast.Attribute) and node.attr == "ao" and getattr(node.value, "id", None) == "torch":
                raise AssertionError(f"{path}:{node.lineno} uses torch.ao")


# ----------------------------------------------------------------------------------------------
# QAT


@pytest.fixture(scope="module")
def qat_variants(baseline, tmp_path_factory):
    """bits -> (card, loaded model) of round-to-nearest qat at 8, 4 and 2 bits."""
    out = tmp_path_factory.mktemp("qat")
    made = {}
    for bits in (8, 4, 2):
        card = compress(baseline, Variant.of("qat", bits), out / str(bits), **FAST_COST)
        made[bits] = (card, load_variant(out / str(bits))[0])
    return made


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_qat_puts_every_linear_weight_on_its_per_channel_grid(baseline, qat_variants, bits):
    card, model = qat_variants[bits]
    weights, original = linear_weights(model), linear_weights(load_pretrained_dir(baseline)[0])
    recorded = card["steps_meta"][0]["weight_bits"]
    assert recorded == {key: bits for key in weights if not key.startswith("lm_head")}
    for key in recorded:
        assert_on_grid(weights[key], bits, key)
        # round to nearest: no weight moves by more than half a step
        assert ((weights[key] - original[key]).abs() <= grid_step(original[key], bits) / 2 + 1e-6).all(), key
    assert torch.equal(weights["lm_head.weight"], original["lm_head.weight"])  # excluded by default


def test_qat_error_grows_as_bits_fall_and_packed_size_shrinks(baseline, qat_variants, batch):
    float_model = load_pretrained_dir(baseline)[0]
    original, reference = linear_weights(float_model), logits(float_model, batch)
    weight_error, logit_error, packed = {}, {}, {}
    for bits, (card, model) in qat_variants.items():
        weights = linear_weights(model)
        weight_error[bits] = sum(float((weights[k] - original[k]).norm()) for k in card["steps_meta"][0]["weight_bits"])
        logit_error[bits] = float((logits(model, batch) - reference).abs().mean())
        packed[bits] = card["packed_bytes"]
    assert 0 < weight_error[8] < weight_error[4] < weight_error[2]
    assert logit_error[8] < logit_error[4] < logit_error[2]
    assert packed[2] < packed[4] < packed[8]
    # 4 bits fewer per quantized weight from 8 to 4 (scales unchanged)
    quantized = sum(original[k].numel() for k in qat_variants[8][0]["steps_meta"][0]["weight_bits"])
    assert packed[8] - packed[4] == quantized * 4 // 8


def square_loss(model: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    return model(input_values=audio).logits.square().mean()


def test_straight_through_gradient_reaches_the_shadow_weights(baseline, batch):
    shadow = load_pretrained_dir(baseline)[0].eval()
    prepare_qat(shadow, 4, QAT_DEFAULTS, None)
    loss = square_loss(shadow, batch)
    loss.backward()
    # the same loss through plain weights fixed on the grid: the STE passes exactly their gradient
    gridded = load_pretrained_dir(baseline)[0].eval()
    prepare_qat(gridded, 4, QAT_DEFAULTS, None)
    finalize_qat(gridded, 4, QAT_DEFAULTS, SimpleNamespace(meta={}))
    square_loss(gridded, batch).backward()
    modules = dict(gridded.named_modules())
    for name, module in shadow.named_modules():
        if type(module) is FakeQuantLinear:
            grad = module.weight.grad
            assert grad is not None and grad.abs().sum() > 0, name
            assert torch.allclose(grad, modules[name].weight.grad, rtol=1e-3, atol=1e-6), name


def test_include_conv_quantizes_the_frontend_but_not_the_weight_normed_conv(baseline):
    model = load_pretrained_dir(baseline)[0]
    original = {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, torch.nn.Conv1d)}
    meta = {}
    finalize_qat(prepare_qat(model, 2, TargetParams(include_conv=True, exclude=("lm_head",)), None), 2, QAT_DEFAULTS,
                 SimpleNamespace(meta=meta))
    convs = {name for name in original if "feature_extractor" in name}
    assert convs and {f"{name}.weight" for name in convs} <= set(meta["weight_bits"])
    for name in convs:
        assert_on_grid(model.get_submodule(name).weight.detach(), 2, name)
    positional = model.wav2vec2.encoder.pos_conv_embed.conv
    assert torch.equal(positional.weight.detach(), original["wav2vec2.encoder.pos_conv_embed.conv"])
    assert not any(type(m).__name__.startswith("FakeQuant") for m in model.modules())


def test_recovery_moves_the_weights_along_the_grid(baseline, qat_variants, tmp_path, tiny_corpus):
    train, dev = tiny_corpus
    card = compress(baseline, Variant.of("qat", 4, recovery_steps=3), tmp_path / "v", training=TINY_TRAINING,
                    train_manifest=train, dev_manifest=dev, checkpoint_dir=tmp_path / "ckpt", **FAST_COST)
    tuned, rounded = linear_weights(load_variant(tmp_path / "v")[0]), linear_weights(qat_variants[4][1])
    assert card["training"] and card["training"][0]["steps"] == 3
    moved = 0
    for key in card["steps_meta"][0]["weight_bits"]:
        assert_on_grid(tuned[key], 4, key)
        moved += int((tuned[key] != rounded[key]).sum())
    assert moved > 0


def test_nm_masks_and_the_grid_compose_in_either_order(baseline, tmp_path, tiny_corpus):
    pytest.importorskip("asrcompress.compression.sparsity")
    from asrcompress.compression.sparsity import nm_mask

    train, dev = tiny_corpus
    nm, qat = {"method": "nm_sparsity", "level": "2:4"}, {"method": "qat", "level": 4}
    original = linear_weights(load_pretrained_dir(baseline)[0])
    results = []
    for first, then in ((nm, qat), (qat, nm)):
        (variant,) = variants_from_config([{"method": first["method"], "levels": [first["level"]], "then": [then],
                                            "recovery": {"steps": 2}}])
        card = compress(baseline, variant, tmp_path / variant.id, training=TINY_TRAINING, train_manifest=train,
                        dev_manifest=dev, checkpoint_dir=tmp_path / f"ckpt-{variant.id}", **FAST_COST)
        weights = linear_weights(load_variant(tmp_path / variant.id)[0])
        metas = {key: value for meta in card["steps_meta"] for key, value in meta.items()}
        assert set(metas["weight_bits"]) == set(metas["nm_pattern"]) and metas["weight_bits"]
        for key in metas["weight_bits"]:
            assert_on_grid(weights[key], 4, key)
            dropped = nm_mask(original[key], 2, 4) == 0  # the pattern is chosen on the float weights
            assert (weights[key][dropped] == 0).all(), key
        results.append(weights)
    # either order trains the same function (the grid of the masked weight) from the same masks
    assert all(torch.equal(results[0][key], results[1][key]) for key in results[0])


# ----------------------------------------------------------------------------------------------
# GPU kernels


def test_int4_codes_reproduce_the_grid_exactly():
    weight = torch.randn(24, 256)
    for bits in (4, 2):
        linear = torch.nn.Linear(256, 24)
        linear.weight.data = weight.clone()
        model = prepare_qat(torch.nn.Sequential(linear), bits, TargetParams(), None)
        finalize_qat(model, bits, TargetParams(), SimpleNamespace(meta={}))
        codes, step = tinygemm_codes(linear.weight, bits)
        assert codes.min() >= 8 - (2 ** (bits - 1) - 1) and codes.max() <= 8 + 2 ** (bits - 1) - 1
        assert torch.allclose((codes - 8) * step[:, None], linear.weight, atol=1e-6)
    with pytest.raises(ValueError):
        tinygemm_codes(weight, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torchao int4 kernels need CUDA")
def test_cuda_load_swaps_in_torchao_kernels(baseline, tmp_path, batch):
    pytest.importorskip("torchao")
    compress(baseline, Variant.of("qat", 4), tmp_path / "v", **FAST_COST)
    cpu_model = load_variant(tmp_path / "v")[0]
    gpu_model = load_variant(tmp_path / "v", "cuda")[0]
    kinds = {type(m.weight).__name__ for m in gpu_model.modules() if type(m) is torch.nn.Linear}
    assert kinds - {"Parameter"}  # torchao tensors in place of dense weights
    expected = logits(cpu_model, batch)
    with torch.no_grad():
        got = gpu_model(input_values=batch.cuda()).logits.float().cpu()
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


# ----------------------------------------------------------------------------------------------
# Config


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"compression\[0\]\.levels.*not one of 2, 4, 8"):
        variants_from_config([{"method": "qat", "levels": [3]}])
    with pytest.raises(ConfigError, match=r"compression\[1\]\.levels.*takes no level"):
        variants_from_config([{"method": "none"}, {"method": "fp16", "levels": [16]}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.params\.exclude"):
        variants_from_config([{"method": "qat", "levels": [4], "params": {"exclude": "lm_head"}}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.params\.calibration_utterances"):
        variants_from_config([{"method": "static_int8", "params": {"calibration_utterances": 0}}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.then"):  # conversions come last
        variants_from_config([{"method": "bf16", "then": [{"method": "qat", "level": 4}]}])
    (variant,) = variants_from_config([{"method": "qat", "levels": [4], "then": [{"method": "static_int8"}]}])
    assert variant.id == "qat~4+static_int8" and variant.needs_training_data
