import copy
import logging
import math

import numpy as np
import pytest
import torch

from asrcompress.compression.depth import transformer_encoder
from asrcompress.compression.downsampling import DownsampledCTC, downsample
from asrcompress.compression.methods import DownsamplingParams
from asrcompress.compression.registry import Variant, variants_from_config
from asrcompress.compression.store import compress, load_variant
from asrcompress.decoding import model_inputs, transcribe
from asrcompress.errors import ConfigError
from asrcompress.models import save_model_dir

from helpers import TINY_TRAINING, tiny_model

KINDS = ("signal", "pool", "conv")
FACTORS = (2, 3, 4)
LENGTHS = (16000, 12345, 9001)  # three utterances, padded into one batch
pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, processor = tiny_model()
    return model.eval(), processor


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("baseline")
    save_model_dir(*tiny, path)
    return path


@pytest.fixture(scope="module")
def waves():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(n).astype(np.float32) for n in LENGTHS]


def wrapped(tiny, factor, kind):
    """The downsampled model over a copy of the baseline's weights (the baseline stays untouched)."""
    return downsample(copy.deepcopy(tiny[0]), factor, DownsamplingParams(kind=kind)).eval()


def capture_encoder_input(model):
    """Record (hidden_states, attention_mask) as the HF encoder receives them (after any downsampling hook)."""
    seen = {}

    def hook(_module, args, kwargs):
        seen["hidden"] = (args[0] if args else kwargs["hidden_states"]).clone()
        seen["mask"] = kwargs.get("attention_mask")

    transformer_encoder(model).register_forward_pre_hook(hook, with_kwargs=True)
    return seen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factor", FACTORS)
@torch.no_grad()
def test_frames_match_reported_lengths_in_a_padded_batch(tiny, waves, kind, factor):
    base, processor = tiny
    model = wrapped(tiny, factor, kind)
    inputs = model_inputs(processor, waves, 16000)
    samples = inputs["attention_mask"].sum(-1)
    logits = model(**inputs).logits
    frames = model._get_feat_extract_output_lengths(samples)
    base_frames = base._get_feat_extract_output_lengths(samples)
    # The exact relation: pooling keeps whole windows of f CNN frames; resampling keeps ceil(n / f) samples.
    if kind == "signal":
        expected = base._get_feat_extract_output_lengths(torch.tensor([math.ceil(n / factor) for n in LENGTHS]))
    else:
        expected = base_frames // factor
    assert frames.tolist() == expected.tolist()
    assert logits.shape[1] == int(frames.max())  # the longest utterance fills the batch
    assert all(abs(int(f) - int(b) / factor) <= 1 for f, b in zip(frames, base_frames))
    # Masks are reduced consistently: each utterance's frames are what it gets decoded alone.
    for i, wave in enumerate(waves):
        alone = model(**model_inputs(processor, [wave], 16000)).logits[0]
        assert alone.shape[0] == int(frames[i])
        assert torch.allclose(logits[i, : int(frames[i])], alone, atol=1e-4)
    hypotheses, _ = transcribe(model, processor, waves, 16000, 2.0, torch.device("cpu"))
    assert len(hypotheses) == len(waves) and all(isinstance(h, str) for h in hypotheses)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factor", FACTORS)
@torch.no_grad()
def test_encoder_mask_counts_the_reported_frames_at_frame_boundaries(tiny, kind, factor):
    processor = tiny[1]
    model = wrapped(tiny, factor, kind)
    # lengths around the first sample count where the variant gains a frame: an off-by-one there
    # (floor instead of ceil, a window half in padding) shows as a mask one frame off
    counts = model._get_feat_extract_output_lengths(torch.arange(3000, 9000))
    boundary = 3000 + int(torch.nonzero(counts[1:] != counts[:-1])[0]) + 1
    lengths = range(boundary - 2 * factor, boundary + 2 * factor)
    seen = capture_encoder_input(model)
    rng = np.random.default_rng(1)
    inputs = model_inputs(processor, [rng.standard_normal(n).astype(np.float32) for n in lengths], 16000)
    model(**inputs)
    frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))
    assert seen["mask"].sum(-1).tolist() == frames.tolist()
    assert len(set(frames.tolist())) > 1  # the batch straddles a frame boundary


@pytest.mark.parametrize("factor", FACTORS)
@torch.no_grad()
def test_pool_averages_what_the_baseline_encoder_receives(tiny, waves, factor):
    base, processor = copy.deepcopy(tiny[0]), tiny[1]
    model = wrapped(tiny, factor, "pool")
    before, after = capture_encoder_input(base), capture_encoder_input(model)
    inputs = model_inputs(processor, waves, 16000)
    base(**inputs), model(**inputs)
    frames = before["hidden"].shape[1] // factor
    windows = before["hidden"][:, : frames * factor].reshape(len(waves), frames, factor, -1)
    assert torch.allclose(after["hidden"], windows.mean(dim=2), atol=1e-6)
    # a pooled frame is valid only when every frame it averages is
    assert after["mask"].sum(-1).tolist() == (before["mask"].sum(-1) // factor).tolist()
    assert torch.equal(after["mask"], before["mask"][:, : frames * factor].reshape(len(waves), frames, factor).all(-1))


@pytest.mark.parametrize("factor", FACTORS)
@torch.no_grad()
def test_conv_starts_as_average_pooling(tiny, waves, factor):
    pool, conv = wrapped(tiny, factor, "pool"), wrapped(tiny, factor, "conv")
    inputs = model_inputs(tiny[1], waves, 16000)
    assert torch.allclose(pool(**inputs).logits, conv(**inputs).logits, atol=1e-5)
    hidden = tiny[0].config.hidden_size
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in pool.parameters())
    assert extra == hidden * hidden * factor + hidden  # a full (not depthwise) strided convolution


@pytest.mark.parametrize("factor", FACTORS)
@torch.no_grad()
def test_signal_feeds_the_cnn_audio_at_a_lower_rate(tiny, factor):
    model = wrapped(tiny, factor, "signal")
    seen = {}
    cnn = model.model.wav2vec2.feature_extractor
    cnn.register_forward_pre_hook(lambda _m, args: seen.update(audio=args[0].clone()))
    tone = np.sin(2 * np.pi * 500 * np.arange(16000) / 16000).astype(np.float32)
    model(input_values=torch.from_numpy(tone)[None])
    low_rate = 16000 / factor
    assert seen["audio"].shape[-1] == math.ceil(16000 / factor)
    expected = np.sin(2 * np.pi * 500 * np.arange(seen["audio"].shape[-1]) / low_rate)
    interior = slice(100, -100)  # away from the zero-padded edges
    assert np.abs(seen["audio"][0].numpy()[interior] - expected[interior]).max() < 0.02


def test_infeasible_ctc_alignments_are_counted_and_zeroed(tiny, waves):
    model = wrapped(tiny, 4, "pool").train()
    inputs = model_inputs(tiny[1], waves[:1] * 3, 16000)
    frames = int(model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))[0])
    labels = torch.full((3, frames + 1), -100)
    labels[0, : frames + 1] = torch.arange(frames + 1) % 20 + 3  # one label too many
    labels[1, :frames] = torch.arange(frames) % 20 + 3
    labels[1, 1] = labels[1, 0]  # fits in length, but the repeat needs a blank between: one frame short
    labels[2, : frames - 1] = torch.arange(frames - 1) % 20 + 3  # fits
    out = model(**inputs, labels=labels)
    assert model.ctc_infeasible == 2 and model.ctc_checked == 3
    # independently: exactly those two have no CTC alignment (infinite loss without zero_infinity)
    log_probs = out.logits.log_softmax(-1).transpose(0, 1)
    targets = [row[row >= 0] for row in labels]
    per_utterance = torch.nn.functional.ctc_loss(
        log_probs, torch.cat(targets), torch.full((3,), frames), torch.tensor([len(t) for t in targets]),
        blank=0, reduction="none")
    assert torch.isinf(per_utterance).tolist() == [True, True, False]
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind, factor", [("pool", 2), ("conv", 3), ("signal", 4)])
def test_recovery_round_trips_through_the_store(baseline, tmp_path, tiny_corpus, caplog, kind, factor):
    train, dev = tiny_corpus
    variant = Variant.of("downsampling", factor, {"kind": kind}, recovery_steps=2)
    with caplog.at_level(logging.WARNING, logger="asrcompress.compression.downsampling"):
        card = compress(baseline, variant, tmp_path / "v", training=TINY_TRAINING, train_manifest=train, dev_manifest=dev,
                        checkpoint_dir=tmp_path / "ckpt")  # the store checks the reloaded logits
    model, processor, _ = load_variant(tmp_path / "v")
    assert isinstance(model, DownsampledCTC) and (model.kind, model.factor) == (kind, factor)
    assert card["storage"] == "state_dict" and card["training"][0]["steps"] == 2
    assert math.isfinite(card["training"][0]["final_train_loss"])
    meta = card["steps_meta"][0]
    assert (meta["kind"], meta["factor"], meta["frame_ms"]) == (kind, factor, 20.0 * factor)
    assert meta["ctc_checked"] == 4  # two steps of two 1.5 s utterances
    warnings = [r for r in caplog.records if "fewer frames" in r.getMessage()]
    assert len(warnings) == (1 if meta["ctc_infeasible"] else 0)
    if factor < 4:  # 1.5 s clips hold at most 23 labels + repeats: 24 frames at x3 are enough, 18 at x4 are not
        assert meta["ctc_infeasible"] == 0
    if kind == "conv":  # the learned downsampling trained away from its average-pooling start
        hidden = model.config.hidden_size
        start = torch.eye(hidden).unsqueeze(-1).expand(-1, -1, factor) / factor
        assert not torch.allclose(model.downsample.conv.weight, start)
    hypotheses, _ = transcribe(model, processor, [np.zeros(12000, np.float32)], 16000, 2.0, torch.device("cpu"))
    assert len(hypotheses) == 1


def test_config_errors_name_the_key():
    recovery = {"steps": 10}
    with pytest.raises(ConfigError, match=r"compression\[0\]\.levels.*not one of 2, 3, 4"):
        variants_from_config([{"method": "downsampling", "levels": [5], "params": {"kind": "pool"}, "recovery": recovery}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.params\.kind.*'fft'"):
        variants_from_config([{"method": "downsampling", "levels": [2], "params": {"kind": "fft"}, "recovery": recovery}])
    with pytest.raises(ConfigError, match=r"compression\[0\]\.recovery"):
        variants_from_config([{"method": "downsampling", "levels": [2]}])
    ids = [v.id for v in variants_from_config([{"method": "downsampling", "name": "pool", "levels": [2, 3],
                                                "params": {"kind": "pool"}, "recovery": recovery}])]
    assert ids == ["pool~2+ft10", "pool~3+ft10"]
