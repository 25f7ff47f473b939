import pytest
import torch

from asrcompress.deploy import OnnxCTCModel

from asrcompress.compression.registry import Variant, get, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.cost import count_parameters
from asrcompress.errors import ConfigError
from asrcompress.models import load_pretrained_dir



def linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_magnitude_pruning_hits_the_level_exactly(baseline, tmp_path, level):
    card = compress(baseline, Variant.of("magnitude", level), tmp_path / "v")
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
    none = compress(baseline, Variant.of("none"), tmp_path / "none")
    int8 = compress(baseline, Variant.of("dynamic_int8"), tmp_path / "int8")
    fp32, processor, _ = load_variant(tmp_path / "none")
    linear_bytes = 4 * sum(w.numel() for w in linear_weights(fp32))
    # int8 stores each Linear weight in a quarter of the bytes (3/4 saved); convolutions stay fp32
    assert none["packed_bytes"] - int8["packed_bytes"] > 0.5 * linear_bytes
    assert int8["bytes_on_disk"] < none["bytes_on_disk"]  # the graph alone: its nodes, the float convs, int8 Linears
    assert int8["parameters"] == none["parameters"]
    quantized, _, card = load_variant(tmp_path / "int8")
    assert card["cpu_only"] and card["runtime"] == "onnxruntime"
    assert isinstance(quantized, OnnxCTCModel)  # an ONNX Runtime int8 graph (deploy.py)
    x = torch.randn(1, 16000)
    with torch.no_grad():
        a, b = fp32(x).logits, quantized(x).logits
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=0.5)


def test_variants_are_named_and_checked_through_the_registry():
    variants = variants_from_config([{"method": "none"}, {"method": "magnitude", "levels": [0.3, 0.5]}])
    assert [v.id for v in variants] == ["none", "magnitude~0.3", "magnitude~0.5"]
    assert variants[1] == Variant.of("magnitude", 0.3)
    assert Variant.from_json(variants[2].to_json()) == variants[2]
    with pytest.raises(ConfigError, match=r"compression\[0\].method"):
        variants_from_config([{"method": "svd"}])
    with pytest.raises(ConfigError, match=r"compression\[0\].levels"):
        variants_from_config([{"method": "magnitude"}])
    with pytest.raises(ConfigError, match=r"outside"):
        variants_from_config([{"method": "magnitude", "levels": [1.2]}])
    with pytest.raises(ConfigError, match=r"takes no level"):
        variants_from_config([{"method": "dynamic_int8", "levels": [8]}])
    with pytest.raises(ConfigError, match=r"compression\[0\].params.amount"):
        variants_from_config([{"method": "magnitude", "levels": [0.3], "params": {"amount": 1}}])
    with pytest.raises(ConfigError, match="empty"):
        variants_from_config([])
    assert get("none").name == "none"


def test_chains_recovery_and_names_make_distinct_checked_variants():
    variants = variants_from_config([
        {"method": "magnitude", "levels": [0.5], "then": [{"method": "dynamic_int8"}], "recovery": {"steps": 20}},
        {"method": "magnitude", "name": "magnitude_conv", "levels": [0.5], "params": {"include_conv": True}},
    ])
    assert [v.id for v in variants] == ["magnitude~0.5+dynamic_int8+ft20", "magnitude_conv~0.5"]
    assert variants[0].method == "magnitude+dynamic_int8" and variants[0].level == 0.5
    assert variants[0].needs_training_data and not variants[1].needs_training_data
    # a conversion for deployment must come last, and cannot be trained on its own
    with pytest.raises(ConfigError, match=r"compression\[0\].then.*last step"):
        variants_from_config([{"method": "dynamic_int8", "then": [{"method": "magnitude", "level": 0.5}]}])
    with pytest.raises(ConfigError, match=r"compression\[0\].recovery.*nothing to train"):
        variants_from_config([{"method": "dynamic_int8", "recovery": {"steps": 5}}])
    with pytest.raises(ConfigError, match=r"compression\[0\].recovery.steps"):
        variants_from_config([{"method": "magnitude", "levels": [0.5], "recovery": {"steps": 0}}])
    with pytest.raises(ConfigError, match="distinct `name`s"):
        variants_from_config([{"method": "magnitude", "levels": [0.5]},
                              {"method": "magnitude", "levels": [0.5], "params": {"include_conv": True}}])
    with pytest.raises(ConfigError, match=r"compression\[0\].name"):
        variants_from_config([{"method": "none", "name": "a/b"}])


def test_recovery_fine_tuning_keeps_pruned_weights_at_zero(baseline, tmp_path, tiny_corpus):
    train, dev = tiny_corpus
    training = {"batch_seconds": 4.0, "eval_every": 100, "checkpoint_every": 100, "learning_rate": 1e-3, "warmup_steps": 1}
    card = compress(baseline, Variant.of("magnitude", 0.5, recovery_steps=3), tmp_path / "v", training=training,
                    train_manifest=train, dev_manifest=dev, checkpoint_dir=tmp_path / "ckpt")
    model, _, _ = load_variant(tmp_path / "v")
    original = linear_weights(load_pretrained_dir(baseline)[0])
    weights = linear_weights(model)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.5 * sum(w.numel() for w in weights))
    assert any(not torch.equal(o[w != 0], w[w != 0]) for o, w in zip(original, weights))  # kept weights trained
    assert card["training"][0]["steps"] == 3 and card["recipe"]["recovery"]["steps"] == 3
    assert not any(hasattr(m, "weight_orig") for m in model.modules())  # masks made permanent


def test_a_variant_without_its_training_data_stops_with_a_clear_error(baseline, tmp_path):
    from asrcompress.errors import PipelineError

    with pytest.raises(PipelineError, match="training split"):
        compress(baseline, Variant.of("magnitude", 0.5, recovery_steps=3), tmp_path / "v")
    assert not (tmp_path / "v").exists()
