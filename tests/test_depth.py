import copy
from pathlib import Path

import pytest
import torch

from asrcompress.compression.context import CompressionContext
from asrcompress.compression.depth import evenly_spaced, layers_kept, transformer_encoder
from asrcompress.compression.registry import Variant, get, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.cost import count_parameters
from asrcompress.errors import ConfigError
from asrcompress.models import ModelSpec, build_model, build_processor, load_pretrained_dir, save_model_dir

from helpers import TINY_TRAINING, TINY_ARCHITECTURE

LAYERS = 6
pytestmark = pytest.mark.usefixtures("one_thread")
X = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))




def deep_model(stable: bool = True):
    """A 6-layer tiny wav2vec2 without LayerDrop (so any dropping seen in training is the method's)."""
    torch.manual_seed(0)
    architecture = {**TINY_ARCHITECTURE, "num_hidden_layers": LAYERS, "layerdrop": 0.0, "do_stable_layer_norm": stable}
    processor = build_processor()
    return build_model(ModelSpec("deep", "scratch", architecture=architecture), processor).eval(), processor


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("deep")
    save_model_dir(*deep_model(), path)
    return path


def prepared(method: str, model, level, params=None):
    """Run a method's prepare and finalize directly (no training), as the store would."""
    context = CompressionContext(processor=None, sample_rate=16000, seed=0, baseline_dir=Path("."))
    spec = get(method)
    resolved = spec.resolve_params(params, "compression")
    model = spec.prepare(model, level, resolved, context)
    return spec.finalize(model.eval(), level, resolved, context), context.meta


@torch.no_grad()
def encoder_run(model, layers, hidden):
    """Run ``layers`` of a wav2vec2 encoder on its input ``hidden`` (no mask), then the stable final norm."""
    for layer in layers:
        hidden = layer(hidden)
    encoder = transformer_encoder(model)
    return encoder.layer_norm(hidden) if model.config.do_stable_layer_norm else hidden


@pytest.mark.parametrize("stable", [True, False])
@pytest.mark.parametrize("keep", ["first", "last"])
@torch.no_grad()
def test_layer_removal_keeps_k_layers_and_computes_them(stable, keep):
    base, _ = deep_model(stable)
    kept_count = 2
    model, meta = prepared("layer_removal", copy.deepcopy(base), kept_count, {"keep": keep})
    expected = [0, 1] if keep == "first" else [4, 5]
    assert meta["kept_layers"] == expected and meta["layers_before"] == LAYERS
    assert len(transformer_encoder(model).layers) == kept_count == model.config.num_hidden_layers
    per_layer = sum(p.numel() for p in transformer_encoder(base).layers[0].parameters())
    dropped = count_parameters(base).parameters - count_parameters(model).parameters
    assert dropped == (LAYERS - kept_count) * per_layer
    hidden = base(X, output_hidden_states=True).hidden_states  # [0]: the encoder's input to layer 0
    out = model.wav2vec2(X).last_hidden_state
    if keep == "first":  # the baseline's own state after layer k (stable: through the final norm)
        reference = hidden[kept_count]
        if stable:
            reference = transformer_encoder(base).layer_norm(reference)
    else:  # the baseline's top layers applied straight to the encoder input
        reference = encoder_run(base, transformer_encoder(base).layers[-kept_count:], hidden[0])
    assert torch.allclose(out, reference, atol=1e-5)


def test_layer_removal_round_trips_as_a_plain_pretrained_model(baseline, tmp_path):
    card = compress(baseline, Variant.of("layer_removal", 3), tmp_path / "v")
    model, _, _ = load_variant(tmp_path / "v")
    assert card["storage"] == "pretrained" and model.config.num_hidden_layers == 3
    assert len(transformer_encoder(model).layers) == 3
    assert card["parameters"] < card["baseline_parameters"]


def test_layer_removal_beyond_the_model_is_a_config_error(baseline, tmp_path):
    with pytest.raises(ConfigError, match=r"layer_removal~8.*only 6"):
        compress(baseline, Variant.of("layer_removal", 8), tmp_path / "v")
    assert not (tmp_path / "v").exists()


@torch.no_grad()
def test_wavlm_keep_last_moves_the_relative_position_embedding(tmp_path):
    from transformers import WavLMConfig, WavLMForCTC

    architecture = {**TINY_ARCHITECTURE, "num_hidden_layers": 4, "num_buckets": 16, "max_bucket_distance": 32}
    base = WavLMForCTC(WavLMConfig(**architecture, vocab_size=30)).eval()
    embedding = transformer_encoder(base).layers[0].attention.rel_attn_embed.weight.clone()
    model, _ = prepared("layer_removal", copy.deepcopy(base), 2, {"keep": "last"})
    assert torch.equal(transformer_encoder(model).layers[0].attention.rel_attn_embed.weight, embedding)
    model.save_pretrained(tmp_path)
    loaded, info = WavLMForCTC.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert torch.allclose(loaded.eval()(X).logits, model(X).logits, atol=1e-5)


def test_evenly_spaced_is_every_other_layer_at_one_half():
    assert evenly_spaced(12, layers_kept(12, 0.5)) == [0, 2, 4, 6, 8, 10]
    kept = evenly_spaced(12, layers_kept(12, 0.25))  # Fan et al.: drop depths 4, 8, 12 (1-based)
    assert sorted(set(range(12)) - set(kept)) == [3, 7, 11]
    for total, rate in [(24, 0.5), (24, 0.3), (12, 0.75), (6, 0.5), (5, 0.5)]:
        kept = evenly_spaced(total, layers_kept(total, rate))
        assert len(kept) == int(total * (1 - rate) + 0.5) and kept[0] == 0
        gaps = {b - a for a, b in zip(kept, kept[1:])}
        assert max(gaps) - min(gaps) <= 1  # evenly spread


@torch.no_grad()
def test_hf_layerdrop_skips_layers_in_training_mode_only():
    model, _ = deep_model()
    model.config.layerdrop = 0.5
    calls = []
    for layer in transformer_encoder(model).layers:
        layer.register_forward_pre_hook(lambda *_: calls.append(1))
    model.train()
    torch.manual_seed(0)
    for _ in range(10):
        model(X)
    assert 0.3 < 1 - len(calls) / (10 * LAYERS) < 0.7
    calls.clear()
    model.eval()(X)
    assert len(calls) == LAYERS


def test_layerdrop_without_recovery_keeps_every_other_layer(baseline, tmp_path):
    card = compress(baseline, Variant.of("layerdrop", 0.5), tmp_path / "v")
    model, _, _ = load_variant(tmp_path / "v")
    meta = card["steps_meta"][0]
    assert meta["kept_layers"] == [0, 2, 4] and meta["observed_drop_rate"] is None
    original = transformer_encoder(load_pretrained_dir(baseline)[0]).layers
    for layer, index in zip(transformer_encoder(model).layers, meta["kept_layers"]):
        for (name, a), b in zip(layer.state_dict().items(), original[index].state_dict().values()):
            assert torch.equal(a, b), name
    assert model.config.num_hidden_layers == 3 and model.config.layerdrop == 0.0


def test_layerdrop_recovery_trains_with_layers_dropped(baseline, tmp_path, tiny_corpus):
    train, dev = tiny_corpus
    card = compress(baseline, Variant.of("layerdrop", 0.5, recovery_steps=4), tmp_path / "v", training=TINY_TRAINING,
                    train_manifest=train, dev_manifest=dev, checkpoint_dir=tmp_path / "ckpt")
    meta = card["steps_meta"][0]
    # the baseline has layerdrop 0: every dropped layer in training was the method's doing
    assert 0.2 < meta["observed_drop_rate"] < 0.8 and meta["layerdrop_before"] == 0.0
    model, _, _ = load_variant(tmp_path / "v")
    assert model.config.layerdrop == 0.0  # restored: the variant does not keep dropping if trained again
    assert len(transformer_encoder(model).layers) == 3 == len(meta["kept_layers"])
    assert not any(hook for m in model.modules() for hook in m._forward_pre_hooks.values())


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"compression\[0\]\.params\.keep"):
        variants_from_config([{"method": "layer_removal", "levels": [4], "params": {"keep": "middle"}}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.levels.*whole number"):
        variants_from_config([{"method": "layer_removal", "levels": [2.5]}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.levels.*outside"):
        variants_from_config([{"method": "layerdrop", "levels": [1.0]}])
    ids = [v.id for v in variants_from_config([{"method": "layerdrop", "levels": [0.5], "recovery": {"steps": 5}}])]
    assert ids == ["layerdrop~0.5+ft5"]
