import pytest
import torch

from asrcompress.compression.registry import Variant, get, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.cost import count_parameters
from asrcompress.errors import ConfigError
from asrcompress.models import load_pretrained_dir, save_model_dir

from helpers import tiny_model


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    torch.manual_seed(0)
    model, processor = tiny_model()
    path = tmp_path_factory.mktemp("baseline")
    save_model_dir(model, processor, path)
    return path


def linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_magnitude_pruning_hits_the_level_exactly(baseline, tmp_path, level):
    card = compress(baseline, Variant("magnitude", level), tmp_path / "v")
    model, _, _ = load_variant(tmp_path / "v")
    weights = linear_weights(model)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(level * total)
    assert card["nonzero_parameters"] == count_parameters(model).nonzero
    # global, not per layer: every kept weight was at least as large as every pruned one
    original = linear_weights(load_pretrained_dir(baseline)[0])
    kept = torch.cat([o[w != 0].abs() for o, w in zip(original, weights)])
    pruned = torch.cat([o[w == 0].abs() for o, w in zip(original, weights)])
    assert float(pruned.max()) <= float(kept.min())
    per_layer = [float((w == 0).float().mean()) for w in weights]
    assert max(per_layer) - min(per_layer) > 0.01  # levels differ per layer


def test_int8_is_smaller_on_disk_and_still_decodes(baseline, tmp_path):
    none = compress(baseline, Variant("none"), tmp_path / "none")
    int8 = compress(baseline, Variant("dynamic_int8"), tmp_path / "int8")
    fp32, processor, _ = load_variant(tmp_path / "none")
    linear_bytes = 4 * sum(w.numel() for w in linear_weights(fp32))
    # int8 stores each Linear weight in a quarter of the bytes (3/4 saved); convolutions stay fp32
    assert none["bytes_on_disk"] - int8["bytes_on_disk"] > 0.5 * linear_bytes  # less per-layer pickling overhead
    assert int8["parameters"] == none["parameters"]
    quantized, _, card = load_variant(tmp_path / "int8")
    assert card["cpu_only"]
    assert any("quantized" in type(m).__module__ for m in quantized.modules())
    x = torch.randn(1, 16000)
    with torch.no_grad():
        a, b = fp32(x).logits, quantized(x).logits
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=0.5)


def test_variants_are_named_and_checked_through_the_registry():
    variants, planned = variants_from_config([{"method": "none"}, {"method": "magnitude", "levels": [0.3, 0.5]}])
    assert [v.id for v in variants] == ["none", "magnitude~0.3", "magnitude~0.5"]
    assert planned == []
    assert Variant.parse("magnitude~0.3") == Variant("magnitude", 0.3)
    with pytest.raises(ConfigError, match=r"compression\[0\].method"):
        variants_from_config([{"method": "svd"}])
    with pytest.raises(ConfigError, match=r"compression\[0\].levels"):
        variants_from_config([{"method": "magnitude"}])
    with pytest.raises(ConfigError, match=r"outside"):
        variants_from_config([{"method": "magnitude", "levels": [1.5]}])
    with pytest.raises(ConfigError, match=r"takes no level"):
        variants_from_config([{"method": "dynamic_int8", "levels": [8]}])
    with pytest.raises(ConfigError, match="empty"):
        variants_from_config([])
    assert get("none").name == "none"


def test_planned_methods_are_skipped_by_name_and_unknown_ones_still_fail():
    variants, planned = variants_from_config([{"method": "none"}, {"method": "layer_removal", "levels": [12]}])
    assert [v.id for v in variants] == ["none"]
    assert planned == ["compression[1]: layer_removal (removing the top transformer layers (E4))"]
    with pytest.raises(ConfigError, match="none is built yet"):
        variants_from_config([{"method": "fp16"}])
    with pytest.raises(ConfigError, match="unknown compression method 'layer_removel'"):
        variants_from_config([{"method": "layer_removel"}])
