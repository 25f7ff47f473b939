import dataclasses

import numpy as np
import pytest
import torch

from asrcompress.compression.context import CompressionContext
from asrcompress.compression.distillation import (Distiller, LossSettings, distillation_loss, prepare_student,
                                                  set_ctc_head, train_student)
from asrcompress.compression.registry import Variant, get, variants_from_config
from asrcompress.compression.store import STATE_DICT, compress, load_variant
from asrcompress.cost import count_parameters
from asrcompress.decoding import model_inputs, transcribe
from asrcompress.errors import ConfigError
from asrcompress.manifest import read_manifest
from asrcompress.models import ModelSpec, build_model, build_processor, load_pretrained_dir, save_model_dir
from asrcompress.training import collate, load_waves

from helpers import TINY_TRAINING, TINY_ARCHITECTURE

# The tiny model made deeper and wider, so that both student shapes are smaller than it.
TEACHER = {**TINY_ARCHITECTURE, "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
           "intermediate_size": 128}


def save_teacher(path, model, processor):
    save_model_dir(model, processor, path)
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(ModelSpec("teacher", "scratch", architecture=TEACHER), processor)
    return save_teacher(tmp_path_factory.mktemp("teacher"), model, processor)


@pytest.fixture(scope="module")
def hubert_baseline(tmp_path_factory):
    """A HuBERT-base-shaped teacher (group-norm CNN, post-layer-norm encoder), tiny."""
    from transformers import HubertConfig, HubertForCTC

    torch.manual_seed(0)
    processor = build_processor()
    arch = {k: v for k, v in TEACHER.items() if k not in ("feat_extract_norm", "do_stable_layer_norm")}
    config = HubertConfig(**arch, feat_extract_norm="group", do_stable_layer_norm=False,
                          vocab_size=len(processor.tokenizer), pad_token_id=processor.tokenizer.pad_token_id)
    return save_teacher(tmp_path_factory.mktemp("hubert"), HubertForCTC(config), processor)


def context(baseline, corpus=None) -> CompressionContext:
    _, processor = load_pretrained_dir(baseline)
    train, dev = corpus or (None, None)
    return CompressionContext(processor=processor, sample_rate=16000, seed=0, baseline_dir=baseline,
                              training=dict(TINY_TRAINING), train_manifest=train, dev_manifest=dev)


def student_for(ctx: CompressionContext, **params) -> torch.nn.Module:
    ctx.meta = {}
    return prepare_student(None, None, get("distillation").resolve_params(params, "test"), ctx)


def waves_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths]


@torch.no_grad()
def check_frames_and_decode(student, teacher, processor):
    student.eval()
    lengths = [16000, 12345, 9001]
    waves = waves_of(lengths)
    inputs = model_inputs(processor, waves, 16000)
    a, b = student(**inputs).logits, teacher(**inputs).logits
    assert a.shape == b.shape  # same frames for the padded batch, same vocabulary
    samples = torch.tensor(lengths)
    frames = teacher._get_feat_extract_output_lengths(samples)
    assert torch.equal(student._get_feat_extract_output_lengths(samples), frames)
    # Padding must not leak into an utterance's valid frames (masks built from the true frame count).
    for row, wave in enumerate(waves):
        alone = student(**model_inputs(processor, [wave], 16000)).logits[0]
        assert alone.shape[0] == int(frames[row])
        assert torch.allclose(alone, a[row, : alone.shape[0]], atol=1e-4)
    hypotheses, _ = transcribe(student, processor, waves, 16000, 10.0, torch.device("cpu"))
    assert len(hypotheses) == 3 and all(isinstance(h, str) for h in hypotheses)


@pytest.mark.parametrize("shape", ["deep_thin", "shallow_wide"])
@pytest.mark.parametrize("frontend", ["cnn", "fbank"])
def test_students_are_smaller_keep_the_teachers_frames_and_decode(baseline, shape, frontend):
    ctx = context(baseline)
    teacher, processor = load_pretrained_dir(baseline)
    student = student_for(ctx, shape=shape, frontend=frontend)
    assert type(student) is type(teacher)
    assert count_parameters(student).parameters == ctx.meta["student_parameters"] < ctx.meta["teacher_parameters"]
    assert ctx.meta["teacher_parameters"] == count_parameters(teacher).parameters
    config = student.config
    expected = (4, 32, 64, 2) if shape == "deep_thin" else (2, 64, 128, 4)
    sizes = (config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_attention_heads)
    assert sizes == expected
    cnn = student.base_model.feature_extractor
    if frontend == "cnn":
        for key, value in teacher.base_model.feature_extractor.state_dict().items():
            assert torch.equal(cnn.state_dict()[key], value)
    else:
        assert not any(True for _ in cnn.parameters())  # a filterbank: no CNN weights left
        out = cnn(torch.randn(2, 16000))
        assert out.shape[1] == 160  # two stacked 80-bin frames per 20 ms frame
    if shape == "shallow_wide":  # DistilHuBERT: the student starts from the teacher's first layers
        first = "wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"
        assert torch.equal(student.state_dict()[first], teacher.state_dict()[first])
    check_frames_and_decode(student, teacher, processor)


def test_a_hubert_teacher_gets_a_hubert_student_with_its_frames(hubert_baseline):
    ctx = context(hubert_baseline)
    teacher, processor = load_pretrained_dir(hubert_baseline)
    student = student_for(ctx, shape="deep_thin", frontend="fbank", heads=4)
    assert type(student).__name__ == "HubertForCTC" and student.config.num_attention_heads == 4
    assert ctx.meta["student_parameters"] < ctx.meta["teacher_parameters"]
    check_frames_and_decode(student, teacher, processor)


def distiller_for(ctx, **params):
    student = student_for(ctx, **params)
    return Distiller.from_meta(student, ctx.meta), LossSettings.from_meta(ctx.meta)


@pytest.fixture(scope="module")
def batch(tiny_corpus, baseline):
    train, _ = tiny_corpus
    utterances = read_manifest(train)[:3]
    waves = load_waves(utterances, train, 16000)
    waves[1] = waves[1][:16000]  # a shorter one: the batch has padding
    return collate(load_pretrained_dir(baseline)[1], waves, [u.text for u in utterances], 16000)


def test_the_distillation_loss_decreases_and_ignores_padding(baseline, batch):
    ctx = context(baseline)
    teacher = ctx.teacher()
    torch.manual_seed(0)
    distiller, settings = distiller_for(ctx, shape="deep_thin", frontend="fbank")
    assert settings.targets == (1, 3, 4) and distiller.sources == (1, 3, 4)  # layer to layer
    # Padded frames do not count: one utterance alone, or padded with silence, gives the same loss.
    distiller.eval()
    one = {"input_values": batch["input_values"][1:2, :16000], "attention_mask": batch["attention_mask"][1:2, :16000]}
    padded = {k: batch[k][1:2] for k in ("input_values", "attention_mask")}
    assert int(padded["attention_mask"].sum()) == 16000 < padded["input_values"].shape[1]
    with torch.no_grad():
        alone, with_padding = (distillation_loss(distiller, teacher, b, settings).total for b in (one, padded))
    assert torch.allclose(alone, with_padding, atol=1e-4)

    distiller.train()
    optimizer = torch.optim.Adam(distiller.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = distillation_loss(distiller, teacher, batch, settings).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_the_discriminative_term_adds_a_loss_whose_gradient_reaches_only_the_student(baseline, batch):
    ctx = context(baseline)
    teacher = ctx.teacher()
    torch.manual_seed(0)
    distiller, settings = distiller_for(ctx, shape="shallow_wide", loss="reg+disc")
    assert settings.disc and distiller.sources == (2, 2, 2)  # DistilHuBERT: every head on the last layer
    distiller.eval()
    reg_settings = dataclasses.replace(settings, disc=False)

    def loss_and_grads(s: LossSettings):
        distiller.zero_grad()
        terms = distillation_loss(distiller, teacher, batch, s)
        terms.total.backward()
        return terms, [p.grad.clone() for p in distiller.student.parameters() if p.grad is not None]

    without, reg_grads = loss_and_grads(reg_settings)
    with_disc, disc_grads = loss_and_grads(settings)
    assert without.disc == 0 and with_disc.disc > 0
    assert float(with_disc.total - without.total) == pytest.approx(with_disc.disc, rel=1e-4)
    assert all(p.grad is None for p in teacher.parameters())
    assert len(disc_grads) == len(reg_grads) > 0
    changed = sum(not torch.allclose(a, b) for a, b in zip(reg_grads, disc_grads))
    assert changed > len(reg_grads) // 2  # the discriminative term moves the student's weights


@torch.no_grad()
def test_the_composed_ctc_head_reads_the_teachers_head_through_the_top_prediction(baseline):
    ctx = context(baseline)
    distiller, settings = distiller_for(ctx, shape="deep_thin")
    student = set_ctc_head(distiller, ctx)
    distiller.eval()
    x = torch.randn(1, 8000)
    expected = ctx.teacher().lm_head(distiller(x)[settings.top])
    assert torch.allclose(student(input_values=x).logits, expected, atol=1e-5)


def test_compress_distils_fine_tunes_and_round_trips(baseline, tiny_corpus, tmp_path):
    train, dev = tiny_corpus
    params = {"shape": "deep_thin", "frontend": "fbank", "loss": "reg+disc", "distill_steps": 3}
    variant = Variant.of("distillation", params=params, recovery_steps=2)
    card = compress(baseline, variant, tmp_path / "v", training=TINY_TRAINING, train_manifest=train, dev_manifest=dev,
                    checkpoint_dir=tmp_path / "ckpt", cost_seconds=1.0, cost_repeats=1)
    model, _, loaded_card = load_variant(tmp_path / "v")
    meta = loaded_card["steps_meta"][0]
    assert meta["student_config"]["hidden_size"] == model.config.hidden_size == 32
    assert meta["frontend"]["type"] == "fbank" and meta["targets"]["teacher"] == [1, 3, 4]
    assert card["parameters"] == meta["student_parameters"] < card["baseline_parameters"] == meta["teacher_parameters"]
    assert [r["steps"] for r in card["training"]] == [3, 2]  # distillation, then CTC
    saved = torch.load(tmp_path / "v" / STATE_DICT, weights_only=False)
    assert not any(k.startswith(("heads.", "student.")) for k in saved)
    assert set(saved) == set(model.state_dict())


def test_config_errors_name_the_key(baseline):
    entry = {"method": "distillation", "recovery": {"steps": 2}}
    assert variants_from_config([entry])[0].id == "distillation+ft2"
    for name, value in [("shape", "wide"), ("frontend", "mfcc"), ("loss", "kl"), ("heads", 0), ("targets", [])]:
        with pytest.raises(ConfigError, match=rf"compression\[0\]\.params\.{name}"):
            variants_from_config([{**entry, "params": {name: value}}])
    with pytest.raises(ConfigError, match=r"params\.heads"):
        variants_from_config([{**entry, "params": {"hidden_size": 30, "heads": 4}}])
    ctx = context(baseline)
    with pytest.raises(ConfigError, match=r"params\.targets"):
        student_for(ctx, targets=[2, 9])
    with pytest.raises(ConfigError, match=r"params\.loss"):
        student_for(ctx, targets=[2], loss="reg+disc", ctc_head="fresh")
    with pytest.raises(ConfigError, match="recovery"):
        train_student(student_for(ctx), ctx, None)
