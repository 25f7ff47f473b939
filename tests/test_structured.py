"""Structured pruning really removes heads, FFN units and CNN channels, within the budget, and round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asrcompress.compression import structured as st
from asrcompress.compression.context import CompressionContext
from asrcompress.compression.methods import L0Params, MagnitudeStructuredParams
from asrcompress.compression.registry import Variant, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.cost import count_parameters
from asrcompress.decoding import transcribe
from asrcompress.errors import ConfigError
from asrcompress.manifest import read_manifest
from asrcompress.models import ModelSpec, build_model, load_pretrained_dir, save_model_dir
from asrcompress.training import load_waves

from helpers import TINY_TRAINING, TINY_ARCHITECTURE, tiny_model

# 4 heads of 12 and wav2vec2-base's frontend layout: per-channel GroupNorm in conv layer 0, no norm after.
WIDE = dict(num_attention_heads=4, feat_extract_norm="group", do_stable_layer_norm=False)
FAST_COST = {"cost_seconds": 1.0, "cost_repeats": 1}  # the card's timing is not under test here


def wide_model():
    torch.manual_seed(0)
    _, processor = tiny_model()
    model = build_model(ModelSpec("wide", "scratch", architecture={**TINY_ARCHITECTURE, **WIDE}), processor)
    return model.eval(), processor


def context(processor) -> CompressionContext:
    return CompressionContext(processor=processor, sample_rate=16000, seed=0, baseline_dir=Path("."))


def logits(model, seconds: float = 1.0) -> torch.Tensor:
    audio = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(input_values=audio).logits


def params(**given):
    return MagnitudeStructuredParams(**{"budget": "params", **given})


@torch.no_grad()
def zero_head(attention, head: int) -> None:
    rows = slice(head * attention.head_dim, (head + 1) * attention.head_dim)
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj):
        projection.weight[rows] = 0
        projection.bias[rows] = 0
    attention.out_proj.weight[:, rows] = 0


@torch.no_grad()
def zero_ffn_unit(feed_forward, unit: int) -> None:
    feed_forward.intermediate_dense.weight[unit] = 0
    feed_forward.intermediate_dense.bias[unit] = 0
    feed_forward.output_dense.weight[:, unit] = 0


@torch.no_grad()
def zero_channel(model, layer: int, channel: int) -> None:
    blocks = st.conv_layers(model)
    blocks[layer].conv.weight[channel] = 0
    blocks[layer + 1].conv.weight[:, channel] = 0


# ----------------------------------------------------------------------------------------------
# Surgery


def test_surgery_shrinks_every_tensor_and_removing_zeroed_units_keeps_the_logits():
    model, _ = wide_model()
    costs = st.CostModel.of(model, 160000)
    zero_head(model.wav2vec2.encoder.layers[0].attention, 1)
    zero_head(model.wav2vec2.encoder.layers[0].attention, 3)
    for head in range(4):  # a layer left without heads: attention gives out_proj's bias
        zero_head(model.wav2vec2.encoder.layers[1].attention, head)
    for unit in (5, 17):
        zero_ffn_unit(model.wav2vec2.encoder.layers[0].feed_forward, unit)
    for unit in range(96):
        zero_ffn_unit(model.wav2vec2.encoder.layers[1].feed_forward, unit)
    zero_channel(model, 1, 3)  # GroupNorm model: conv layer 1 has no norm, so a zero channel reads as 0
    before = logits(model)

    keep_ffn = [u for u in range(96) if u not in (5, 17)]
    st.apply_keep(model, {("head", 0): [0, 2], ("head", 1): [], ("ffn", 0): keep_ffn, ("ffn", 1): [],
                          ("conv", 1): [c for c in range(32) if c != 3]})

    layer0, layer1 = model.wav2vec2.encoder.layers
    assert layer0.attention.q_proj.weight.shape == (24, 48) and layer0.attention.v_proj.bias.shape == (24,)
    assert layer0.attention.out_proj.weight.shape == (48, 24) and layer0.attention.num_heads == 2
    assert isinstance(layer1.attention, st.EmptyAttention) and isinstance(layer1.feed_forward, st.EmptyFeedForward)
    assert layer0.feed_forward.intermediate_dense.weight.shape == (94, 48)
    assert layer0.feed_forward.output_dense.weight.shape == (48, 94)
    blocks = st.conv_layers(model)
    assert blocks[1].conv.weight.shape == (31, 16, 8) and blocks[2].conv.weight.shape == (48, 31, 4)
    assert torch.allclose(logits(model), before, atol=1e-5)
    # the analytic parameter count is exact, so budgets by parameters are exact too
    assert count_parameters(model).parameters == costs.params(st.sizes_of(model))
    assert st.sizes_of(model) == st.Sizes([16, 31, 48], [2, 0], [94, 0])


def test_last_conv_layer_prunes_the_feature_projection_and_conv_layers_keep_a_channel():
    model, _ = tiny_model()  # LayerNorm frontend: every conv layer has a per-channel LayerNorm
    st.prune_conv_channels(model, 2, range(0, 48, 2))
    projection = model.wav2vec2.feature_projection
    assert projection.layer_norm.weight.shape == (24,) and projection.projection.weight.shape == (48, 24)
    assert st.conv_layers(model)[2].layer_norm.normalized_shape == (24,)
    assert logits(model).shape[-1] == 32
    with pytest.raises(ValueError, match="at least one channel"):
        st.prune_conv_channels(model, 0, [])


# ----------------------------------------------------------------------------------------------
# Selection under a budget


def test_zeroed_units_are_removed_first_and_the_logits_do_not_move():
    model, processor = wide_model()
    costs = st.CostModel.of(model, 160000)
    zero_head(model.wav2vec2.encoder.layers[0].attention, 1)
    zero_ffn_unit(model.wav2vec2.encoder.layers[1].feed_forward, 3)
    zero_ffn_unit(model.wav2vec2.encoder.layers[1].feed_forward, 7)
    zero_channel(model, 1, 5)
    before, total = logits(model), count_parameters(model).parameters
    zeroed = 12 * (4 * 48 + 3) + 2 * (2 * 48 + 1) + (16 * 8 + 48 * 4)  # a head, two FFN units, a channel
    ctx = context(processor)
    st.prune_by_importance(model, (zeroed - 1) / total, params(), ctx)
    assert ctx.meta["kept_heads"] == [[0, 2, 3], [0, 1, 2, 3]]
    assert ctx.meta["sizes"] == {"conv": [16, 31, 48], "head": [3, 4], "ffn": [96, 94]}
    assert count_parameters(model).parameters == total - zeroed == ctx.meta["params"]
    assert costs.params(st.sizes_of(model)) == ctx.meta["params"]
    assert torch.allclose(logits(model), before, atol=1e-5)


def _largest_unit_fraction(model, budget: str) -> float:
    costs, sizes = st.CostModel.of(model, 160000), st.sizes_of(model)
    full = costs.cost(sizes, budget)
    steps = [full - costs.cost(sizes.without_one(kind, layer), budget)
             for kind in st.KINDS for layer in range(len(sizes.of(kind)))]
    return max(steps) / full


@pytest.mark.parametrize(("budget", "level"), [("params", 0.45), ("macs", 0.2)])
def test_budget_is_met_within_one_structure_and_the_model_decodes(budget, level, tiny_corpus):
    model, processor = wide_model()
    slack = _largest_unit_fraction(model, budget)
    total_params = count_parameters(model).parameters
    ctx = context(processor)
    st.prune_by_importance(model, level, params(budget=budget), ctx)
    meta = ctx.meta
    removed = meta["params_removed"] if budget == "params" else meta["macs_removed"]
    assert level <= removed < level + slack
    assert 1 - count_parameters(model).parameters / total_params == pytest.approx(meta["params_removed"], abs=1e-6)
    assert meta["macs"] < meta["baseline_macs"] and meta["params"] < meta["baseline_params"]
    # the recorded sizes are the module shapes
    sizes = meta["sizes"]
    for layer, block in enumerate(model.wav2vec2.encoder.layers):
        assert block.attention.q_proj.weight.shape[0] == 12 * sizes["head"][layer]
        assert block.feed_forward.output_dense.weight.shape[1] == sizes["ffn"][layer]
    assert [b.conv.weight.shape[0] for b in st.conv_layers(model)] == sizes["conv"]
    # still a CTC model: frames as promised, and transcripts come out
    train, _ = tiny_corpus
    waves = load_waves(read_manifest(train)[:2], train, 16000)
    hypotheses, _ = transcribe(model, processor, waves, 16000, 10.0, torch.device("cpu"))
    assert len(hypotheses) == 2 and all(isinstance(h, str) for h in hypotheses)
    frames = logits(model, 1.5).shape[1]
    assert frames == int(model._get_feat_extract_output_lengths(torch.tensor(24000)))


def test_transformer_only_pruning_leaves_the_cnn_and_budgets_choose_differently():
    reference, processor = wide_model()
    chosen = {}
    for budget in ("params", "macs"):
        model, _ = wide_model()
        ctx = context(processor)
        st.prune_by_importance(model, 0.3, params(budget=budget, prune=["head", "ffn"]), ctx)
        for ours, theirs in zip(st.conv_layers(model), st.conv_layers(reference)):
            assert torch.equal(ours.conv.weight, theirs.conv.weight)
        assert torch.equal(model.wav2vec2.feature_projection.projection.weight,
                           reference.wav2vec2.feature_projection.projection.weight)
        assert ctx.meta["sizes"]["conv"] == [16, 32, 48]
        chosen[budget] = ctx.meta
    # each meets its own budget, and they do not select the same units
    assert chosen["params"]["params_removed"] >= 0.3 and chosen["macs"]["macs_removed"] >= 0.3
    assert chosen["params"]["sizes"] != chosen["macs"]["sizes"]
    # with the CNN included, a MAC budget is met partly by channels (the frontend holds most MACs here)
    model, _ = wide_model()
    ctx = context(processor)
    st.prune_by_importance(model, 0.3, params(budget="macs"), ctx)
    assert sum(ctx.meta["sizes"]["conv"]) < 16 + 32 + 48


def test_unreachable_budget_names_the_levels():
    model, processor = wide_model()
    with pytest.raises(ConfigError, match="levels.*only"):
        st.prune_by_importance(model, 0.9, params(budget="macs", prune=["ffn"]), context(processor))


def test_taylor_importance_sees_a_disconnected_head_as_useless(tiny_corpus):
    model, processor = wide_model()
    attention = model.wav2vec2.encoder.layers[0].attention
    with torch.no_grad():
        attention.out_proj.weight[:, 12:24] = 0  # head 1 computes but nothing reads it
    train, _ = tiny_corpus
    waves = load_waves(read_manifest(train)[:2], train, 16000)
    st.calibration_gradients(model, waves, processor, 16000)
    head = next(s for s in st.structures(model, ["head"]) if s.layer == 0)
    taylor, magnitude = st.unit_importance(head, "taylor"), st.unit_importance(head, "l2")
    assert taylor[1] == 0 and np.all(taylor[[0, 2, 3]] > 0)
    assert magnitude[1] > 0  # magnitude cannot tell: its q/k/v rows are intact


# ----------------------------------------------------------------------------------------------
# Through the store: compress, save, reload strictly


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    model, processor = wide_model()
    for head in range(4):  # layer 1 has no useful head: the pruned model has an attention-free layer
        zero_head(model.wav2vec2.encoder.layers[1].attention, head)
    path = tmp_path_factory.mktemp("baseline")
    save_model_dir(model, processor, path)
    return path


def test_round_trip_with_an_emptied_layer_and_int8_after(baseline, tmp_path):
    original = load_pretrained_dir(baseline)[0].eval()
    head_params = 12 * (4 * 48 + 3)
    level = 4 * head_params / count_parameters(original).parameters * 0.99
    [variant] = variants_from_config([{"method": "structured", "levels": [round(level, 6)],
                                       "params": {"budget": "params", "prune": ["head"]}}])
    card = compress(baseline, variant, tmp_path / "v", **FAST_COST)
    model, _, loaded_card = load_variant(tmp_path / "v")
    meta = card["steps_meta"][0]
    assert meta["sizes"]["head"] == [4, 0] and meta["kept_heads"] == [[0, 1, 2, 3], []]
    assert isinstance(model.wav2vec2.encoder.layers[1].attention, st.EmptyAttention)
    assert card["parameters"] == count_parameters(model).parameters == meta["params"]
    assert torch.allclose(logits(model), logits(original), atol=1e-5)  # the emptied layer computed a constant

    [chained] = variants_from_config([{"method": "structured", "levels": [0.4], "then": [{"method": "dynamic_int8"}]}])
    compress(baseline, chained, tmp_path / "int8", **FAST_COST)
    quantized, _, card = load_variant(tmp_path / "int8")
    sizes = card["steps_meta"][0]["sizes"]
    # an ONNX Runtime int8 graph of the pruned model (its torch model beside it has the pruned shapes)
    assert quantized.reference.wav2vec2.encoder.layers[0].feed_forward.intermediate_dense.weight.shape[0] == sizes["ffn"][0]
    assert logits(quantized).shape == logits(original).shape


def test_named_transformer_only_entry_round_trips_with_the_cnn_intact(baseline, tmp_path):
    [variant] = variants_from_config([{"method": "structured", "name": "structured_tf", "levels": [0.3],
                                       "params": {"prune": ["head", "ffn"]}}])
    assert variant.id == "structured_tf~0.3" and not variant.needs_training_data
    card = compress(baseline, variant, tmp_path / "v", **FAST_COST)
    model, _, _ = load_variant(tmp_path / "v")
    original = load_pretrained_dir(baseline)[0]
    pairs = zip(st.conv_layers(model), st.conv_layers(original))
    assert all(torch.equal(a.conv.weight, b.conv.weight) for a, b in pairs)
    assert card["steps_meta"][0]["macs_removed"] >= 0.3
    assert count_parameters(model).parameters < count_parameters(original).parameters


def test_taylor_variant_reads_calibration_data(baseline, tmp_path, tiny_corpus):
    variant = Variant.of("structured_taylor", 0.3, {"calibration_utterances": 3})
    assert variant.needs_training_data
    train, dev = tiny_corpus
    card = compress(baseline, variant, tmp_path / "v", train_manifest=train, dev_manifest=dev, **FAST_COST)
    assert card["steps_meta"][0]["importance"] == "taylor" and card["steps_meta"][0]["macs_removed"] >= 0.3


# ----------------------------------------------------------------------------------------------
# structured_l0


def _gated(level=0.5, **given):
    model, processor = wide_model()
    ctx = context(processor)
    config = L0Params(**{"target_ramp": 0.0, **given})
    st.add_gates(model, level, config, ctx)
    return model, ctx, config


def test_gates_live_in_the_model_and_the_multipliers_ascend():
    model, ctx, _ = _gated()
    keys = model.state_dict().keys()
    assert "wav2vec2.encoder.layers.0.attention.structured_gate.log_alpha" in keys
    assert "wav2vec2.encoder.layers.1.feed_forward.structured_gate.log_alpha" in keys
    assert "wav2vec2.feature_extractor.conv_layers.2.structured_gate.log_alpha" in keys
    assert f"{st.BUDGET_MODULE}.lambda1" in keys
    budget = getattr(model, st.BUDGET_MODULE)
    expected = budget.expected_removed(model)
    assert float(expected) == pytest.approx(ctx.meta["l0"]["initial_expected_removed"], abs=1e-6)
    assert 0 < float(expected) < 0.5  # FFN gates start half-open (DPHuBERT), heads and channels open
    budget.penalty(model, 0.5).backward()
    gap = float(expected) - 0.5
    assert float(budget.lambda1.grad) == pytest.approx(-gap)  # negated: descent on lambda is ascent
    assert float(budget.lambda2.grad) == pytest.approx(-gap**2)
    # once lambda1 < 0 (below target), the penalty pushes every gate towards closing
    model.zero_grad()
    with torch.no_grad():
        budget.lambda1.fill_(-1.0)
    budget.penalty(model, 0.5).backward()
    for _, gate in st.gates(model):
        assert torch.all(gate.log_alpha.grad > 0)


def test_finalize_folds_gate_values_and_removes_closed_units_exactly():
    model, ctx, config = _gated()
    with torch.no_grad():
        for structure, gate in st.gates(model):
            gate.log_alpha.fill_(10.0)  # open
            if structure.kind == "head" and structure.layer == 0:
                gate.log_alpha[torch.tensor([1, 2])] = -10.0
            if structure.kind == "head" and structure.layer == 1:
                gate.log_alpha[:] = -10.0  # no head left
                gate.log_alpha[0] = 0.5  # but for a half-open one: it keeps a scale below 1
            if structure.kind == "ffn":
                gate.log_alpha[::3] = -10.0
                gate.log_alpha[1] = 0.3
            if structure.kind == "conv" and structure.layer == 1:  # GroupNorm frontend: exact there
                gate.log_alpha[:8] = -10.0
    values = {(s.kind, s.layer): g.deterministic() for s, g in st.gates(model)}
    assert 0 < float(values[("head", 1)][0]) < 1
    gated = logits(model)
    st.remove_gates(model, 0.5, config, ctx)
    assert torch.allclose(logits(model), gated, atol=1e-5)
    assert not any(hasattr(m, st.GATE) for m in model.modules()) and not hasattr(model, st.BUDGET_MODULE)
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not any("log_alpha" in k or "lambda" in k for k in model.state_dict())
    sizes = ctx.meta["sizes"]
    assert sizes["head"] == [2, 1] and sizes["conv"] == [16, 24, 48]
    assert sizes["ffn"] == [int((values[("ffn", i)] > 0).sum()) for i in range(2)] == [64, 64]
    assert model.wav2vec2.encoder.layers[1].attention.q_proj.weight.shape == (12, 48)
    assert ctx.meta["kept_heads"] == [[0, 3], [0]]
    assert ctx.meta["l0"]["finalize_max_logit_change"] < 1e-4


def test_l0_training_moves_expected_sparsity_to_the_target_and_round_trips(baseline, tmp_path, tiny_corpus):
    train, dev = tiny_corpus
    variant = Variant.of("structured_l0", 0.5, {"reg_learning_rate": 0.2, "target_ramp": 0.0}, recovery_steps=4)
    card = compress(baseline, variant, tmp_path / "v", training=TINY_TRAINING, train_manifest=train, dev_manifest=dev,
                    checkpoint_dir=tmp_path / "ckpt", **FAST_COST)
    l0 = card["steps_meta"][0]["l0"]
    assert l0["final_lambda1"] < 0 and l0["final_lambda2"] > 0  # below target: the multipliers grew
    assert l0["initial_expected_removed"] < l0["final_expected_removed"] < 0.5
    model, _, _ = load_variant(tmp_path / "v")
    assert not any("log_alpha" in k or "lambda" in k for k in model.state_dict())
    meta = card["steps_meta"][0]
    assert card["parameters"] == count_parameters(model).parameters == meta["params"]
    assert sum(meta["sizes"]["ffn"]) < 2 * 96  # half-open FFN gates: some closed for good


def test_l0_needs_recovery_steps(baseline, tmp_path, tiny_corpus):
    train, dev = tiny_corpus
    with pytest.raises(ConfigError, match="recovery.steps"):
        compress(baseline, Variant.of("structured_l0", 0.5), tmp_path / "v", train_manifest=train, dev_manifest=dev)


# ----------------------------------------------------------------------------------------------
# Config and other architectures


def test_config_mistakes_name_their_key():
    with pytest.raises(ConfigError, match=r"compression\[0\].levels.*outside"):
        variants_from_config([{"method": "structured", "levels": [1.2]}])
    with pytest.raises(ConfigError, match=r"compression\[0\].params.prune.*'layer'"):
        variants_from_config([{"method": "structured", "levels": [0.3], "params": {"prune": ["head", "layer"]}}])
    with pytest.raises(ConfigError, match=r"compression\[1\].params.budget"):
        variants_from_config([{"method": "none"}, {"method": "structured_l0", "levels": [0.3], "recovery": {"steps": 5},
                                                   "params": {"budget": "flops"}}])
    with pytest.raises(ConfigError, match=r"compression\[0\].params.importance.*structured_taylor"):
        variants_from_config([{"method": "structured", "levels": [0.3], "params": {"importance": "taylor"}}])
    with pytest.raises(ConfigError, match=r"compression\[0\].params.target_ramp"):
        variants_from_config([{"method": "structured_l0", "levels": [0.3], "params": {"target_ramp": 1.5}}])
    with pytest.raises(ConfigError, match=r"compression\[0\].params.prune.*non-empty"):
        variants_from_config([{"method": "structured", "levels": [0.3], "params": {"prune": "head"}}])


def test_hubert_prunes_and_wavlm_refuses_heads_but_prunes_the_rest():
    from transformers import HubertConfig, HubertForCTC, WavLMConfig, WavLMForCTC

    _, processor = tiny_model()
    shared = {k: v for k, v in TINY_ARCHITECTURE.items() if k != "do_stable_layer_norm"}
    for cls, config in ((HubertForCTC, HubertConfig), (WavLMForCTC, WavLMConfig)):
        torch.manual_seed(0)
        model = cls(config(**shared, vocab_size=32)).eval()
        costs = st.CostModel.of(model, 160000)
        kinds = ["conv", "head", "ffn"] if cls is HubertForCTC else ["conv", "ffn"]
        if cls is WavLMForCTC:
            with pytest.raises(ConfigError, match="params.prune.*WavLM"):
                st.prune_by_importance(model, 0.3, params(), context(processor))
        ctx = context(processor)
        st.prune_by_importance(model, 0.3, params(prune=kinds), ctx)
        assert ctx.meta["params_removed"] >= 0.3
        assert count_parameters(model).parameters == costs.params(st.sizes_of(model))
        assert logits(model).shape[-1] == 32
