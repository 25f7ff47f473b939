"""N:M sparsity and magnitude pruning: exact patterns, kept through recovery and int8, clear errors."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asrcompress.compression import registry
from asrcompress.compression.methods import TargetParams
from asrcompress.compression.registry import Variant, variants_from_config
from asrcompress.compression.sparsity import fits_2of4, nm_mask, nm_prepare
from asrcompress.compression.store import compress, load_variant
from asrcompress.decoding import transcribe
from asrcompress.errors import ConfigError
from asrcompress.models import ModelSpec, build_model, build_processor, load_pretrained_dir

from helpers import TINY_TRAINING, TINY_ARCHITECTURE, tiny_model



def linears(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach() for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def baseline_linears(baseline) -> dict[str, torch.Tensor]:
    return linears(load_pretrained_dir(baseline)[0])


def global_magnitude_mask(weights: dict[str, torch.Tensor], level: float) -> dict[str, torch.Tensor]:
    """What global L1 pruning keeps (1) of these weights: all but the ``level`` fraction smallest |w|."""
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = torch.ones_like(flat)
    keep[flat.topk(round(level * flat.numel()), largest=False).indices] = 0
    parts = keep.split([w.numel() for w in weights.values()])
    return {name: part.reshape(w.shape) for (name, w), part in zip(weights.items(), parts)}


def train_args(tiny_corpus, tmp_path) -> dict:
    train, dev = tiny_corpus
    return dict(training=TINY_TRAINING, train_manifest=train, dev_manifest=dev, checkpoint_dir=tmp_path / "ckpt")


@pytest.mark.parametrize("level, n", [("2:4", 2), ("1:4", 1)])
def test_nm_keeps_the_n_largest_of_every_m_and_still_decodes(baseline, tmp_path, level, n):
    card = compress(baseline, Variant.of("nm_sparsity", level), tmp_path / "v")
    model, processor, _ = load_variant(tmp_path / "v")
    sparse, original = linears(model), baseline_linears(baseline)
    targeted = {name for name in sparse if "lm_head" not in name}
    assert set(card["steps_meta"][0]["nm_pattern"]) == {f"{name}.weight" for name in targeted}
    assert set(card["steps_meta"][0]["nm_pattern"].values()) == {level}
    assert torch.equal(sparse["lm_head"], original["lm_head"])  # excluded by default
    for name in targeted:
        groups, before = sparse[name].reshape(-1, 4), original[name].reshape(-1, 4)
        kept = groups != 0
        assert (kept.sum(dim=1) == n).all(), name
        assert torch.equal(groups[kept], before[kept])  # no training: kept weights unchanged
        smallest_kept = before.abs().where(kept, torch.inf).min(dim=1).values
        largest_dropped = before.abs().where(~kept, -torch.inf).max(dim=1).values
        assert (smallest_kept >= largest_dropped).all(), name
    assert card["nonzero_parameters"] < card["parameters"]
    waves = [np.random.default_rng(i).standard_normal(16000).astype(np.float32) * 0.1 for i in range(2)]
    texts, _ = transcribe(model, processor, waves, 16000, 10.0, torch.device("cpu"))
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("method, level", [("nm_sparsity", "2:4"), ("magnitude", 0.5)])
def test_recovery_trains_the_kept_weights_and_keeps_the_mask_exactly(baseline, tmp_path, tiny_corpus, method, level):
    variant = Variant.of(method, level, recovery_steps=3)
    card = compress(baseline, variant, tmp_path / "v", **train_args(tiny_corpus, tmp_path))
    assert card["training"] and card["training"][0]["steps"] == 3
    trained, original = linears(load_variant(tmp_path / "v")[0]), baseline_linears(baseline)
    if method == "nm_sparsity":
        expected = {name: nm_mask(w, 2, 4) if name != "lm_head" else torch.ones_like(w) for name, w in original.items()}
    else:
        expected = global_magnitude_mask(original, level)
        zeros = sum(int((w == 0).sum()) for w in trained.values())
        assert zeros == round(level * sum(w.numel() for w in trained.values()))
    for name, weight in trained.items():
        assert torch.equal((weight != 0).float(), expected[name]), name  # masks fixed at prepare, zeros stay zero
    kept = torch.cat([(trained[n] - original[n])[expected[n].bool()] for n in trained])
    assert kept.abs().max() > 1e-6  # and the kept weights did train


def test_magnitude_then_int8_keeps_the_zeros_in_the_integer_weights(baseline, tmp_path):
    (variant,) = variants_from_config([{"method": "magnitude", "levels": [0.5], "then": [{"method": "dynamic_int8"}]}])
    assert variant.id == "magnitude~0.5+dynamic_int8"
    compress(baseline, variant, tmp_path / "v")
    import onnx
    from onnx import numpy_helper

    expected = global_magnitude_mask(baseline_linears(baseline), 0.5)
    graph = onnx.load(str(tmp_path / "v" / "model.onnx")).graph
    integers = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
                and numpy_helper.to_array(t).ndim == 2]
    assert sorted(w.size for w in integers) == sorted(m.numel() for m in expected.values())  # every Linear, int8
    # symmetric int8 keeps an exact zero: the pruned half stays pruned in the integer weights
    assert sum(int((w == 0).sum()) for w in integers) >= sum(int((m == 0).sum()) for m in expected.values())


def test_bad_patterns_and_widths_are_config_errors(baseline, tmp_path):
    for level in ["4:4", "2:x", 0.5]:
        with pytest.raises(ConfigError, match=r"compression\[0\]\.levels"):
            variants_from_config([{"method": "nm_sparsity", "levels": [level]}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.params\.exclude"):
        variants_from_config([{"method": "nm_sparsity", "levels": ["2:4"], "params": {"exclude": "lm_head"}}])
    # 3:5 is a pattern, but the tiny model's 48- and 96-wide inputs do not split into fives
    with pytest.raises(ConfigError, match=r"nm_sparsity~3of5.*q_proj \(input width 48\)"):
        compress(baseline, Variant.of("nm_sparsity", "3:5"), tmp_path / "v")
    assert not (tmp_path / "v").exists()
    wide50 = build_model(ModelSpec("w50", "scratch", architecture={
        **TINY_ARCHITECTURE, "hidden_size": 50, "num_conv_pos_embedding_groups": 2}), build_processor())
    expected = r"nm_sparsity~3of4\]\.levels.*M=4.*encoder\.layers\.0\.attention\.q_proj \(input width 50\)"
    with pytest.raises(ConfigError, match=expected) as err:
        nm_prepare(wide50, "3:4", TargetParams(exclude=("lm_head",)), SimpleNamespace(meta={}))
    assert "feature_projection" not in str(err.value)  # its input is the 48-wide CNN output
    with pytest.raises(ConfigError, match=r"params\.exclude.*no weight left"):
        nm_prepare(wide50, "2:4", TargetParams(exclude=("wav2vec2", "lm_head")), SimpleNamespace(meta={}))


def test_exclude_and_include_conv_choose_the_weights():
    model, _ = tiny_model()
    context = SimpleNamespace(meta={})
    nm_prepare(model, "2:4", TargetParams(include_conv=True, exclude=("feed_forward", "lm_head")), context)
    keys = set(context.meta["nm_pattern"])
    assert "wav2vec2.feature_extractor.conv_layers.0.conv.weight" in keys  # 1 x 20 kernel: groups of 4 fit
    assert not any("feed_forward" in k or "lm_head" in k or "pos_conv" in k for k in keys)
    conv = model.wav2vec2.feature_extractor.conv_layers[1].conv.weight  # (32, 16, 8): rows of 128
    assert ((conv.reshape(-1, 4) != 0).sum(dim=1) == 2).all()
    assert (model.wav2vec2.encoder.layers[0].feed_forward.intermediate_dense.weight != 0).all()


def test_fits_2of4_accepts_what_the_sparse_tensor_cores_store():
    weight = torch.randn(8, 16)
    assert fits_2of4(weight * nm_mask(weight, 2, 4)) and fits_2of4(weight * nm_mask(weight, 1, 4))
    assert fits_2of4(weight * nm_mask(weight, 2, 8)) and fits_2of4(weight * nm_mask(weight, 1, 2))
    assert not fits_2of4(weight * nm_mask(weight, 3, 4)) and not fits_2of4(weight * nm_mask(weight, 4, 8))
    assert not fits_2of4(torch.zeros(8, 6))


def test_nm_then_qat_keeps_the_pattern(baseline, tmp_path, tiny_corpus):
    registry._load_builtin_methods()
    if "qat" not in registry.METHODS:
        pytest.skip("qat is not registered yet")
    (variant,) = variants_from_config([{"method": "nm_sparsity", "levels": ["2:4"],
                                        "then": [{"method": "qat", "level": 4}], "recovery": {"steps": 3}}])
    card = compress(baseline, variant, tmp_path / "v", **train_args(tiny_corpus, tmp_path))
    state = load_variant(tmp_path / "v")[0].state_dict()
    original = baseline_linears(baseline)
    assert set(card["steps_meta"][0]["nm_pattern"]) <= set(card["steps_meta"][1]["weight_bits"])
    for key in card["steps_meta"][0]["nm_pattern"]:
        weight = state[key].int_repr() if state[key].is_quantized else state[key]
        dropped = nm_mask(original[key.removesuffix(".weight")], 2, 4) == 0
        assert (weight[dropped] == 0).all(), key  # quantization may zero more, never revive a dropped weight
        assert ((weight.reshape(-1, 4) != 0).sum(dim=1) <= 2).all(), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="semi-structured sparse kernels need CUDA")
def test_2of4_loads_as_semi_structured_kernels_on_cuda(baseline, tmp_path):
    from asrcompress.compression.sparsity import SemiStructuredLinear

    compress(baseline, Variant.of("nm_sparsity", "2:4"), tmp_path / "v")
    dense, processor, card = load_variant(tmp_path / "v")
    fast, _, _ = load_variant(tmp_path / "v", device="cuda")
    swapped = [name for name, m in fast.named_modules() if isinstance(m, SemiStructuredLinear)]
    if torch.backends.cusparselt.is_available():  # cuSPARSELt takes the tiny 48/96-wide fp16 shapes
        assert len(swapped) == len(card["steps_meta"][0]["nm_pattern"])
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = dense(input_values=x).logits, fast(input_values=x.cuda()).logits.float().cpu()
    assert torch.allclose(expected, got, atol=2e-2, rtol=2e-2)
    texts, _ = transcribe(fast, processor, [x[0].numpy()], 16000, 10.0, torch.device("cuda"))
    assert isinstance(texts[0], str)
