import pytest
import torch

from asrcompress.decoding import greedy_ctc, ids_to_text, length_sorted_batches
from asrcompress.models import build_processor


def one_hot_logits(paths, vocab=6):
    width = max(len(p) for p in paths)
    logits = torch.full((len(paths), width, vocab), -10.0)
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            logits[b, t, token] = 10.0
    return logits


def test_greedy_merges_repeats_and_drops_blanks():
    # blank = 0: "1 1 0 1 2 2 0 0 3" -> 1 1 2 3 (a blank separates the two 1s)
    logits = one_hot_logits([[1, 1, 0, 1, 2, 2, 0, 0, 3]])
    assert greedy_ctc(logits, [9], blank=0) == [[1, 1, 2, 3]]


def test_greedy_ignores_padding_frames():
    logits = one_hot_logits([[4, 4, 5, 0], [2, 3, 3, 3]])
    assert greedy_ctc(logits, [2, 4], blank=0) == [[4], [2, 3]]
    assert greedy_ctc(logits, [0, 1], blank=0) == [[], [2]]


def test_ids_to_text_uses_word_delimiter():
    tokenizer = build_processor().tokenizer
    ids = tokenizer("HI YOU").input_ids
    assert ids_to_text(ids, tokenizer) == "HI YOU"


def test_length_sorted_batches_respect_budget_and_cover_everything():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, max_samples=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 10
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)


def test_bounded_padding_batches_keep_padding_under_the_bound():
    import numpy as np

    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(30_000, 560_000, size=200)]  # LibriSpeech-like 2-35 s at 16 kHz
    batches = length_sorted_batches(lengths, max_samples=60 * 16000, max_padding=0.1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        padded = max(lengths[i] for i in batch) * len(batch)
        assert len(batch) == 1 or padded <= 1.1 * sum(lengths[i] for i in batch)
    unbounded = length_sorted_batches(lengths, max_samples=60 * 16000)
    waste = [sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs) for bs in (batches, unbounded)]
    assert waste[0] < waste[1]


def group_norm_model():
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), feat_extract_norm="group",
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, do_stable_layer_norm=False)
    return Wav2Vec2ForCTC(config).eval()


def test_padded_batches_of_a_group_norm_front_end_give_the_logits_of_one_utterance_alone():
    import numpy as np

    from asrcompress.decoding import masked_group_norm, model_inputs, set_valid_samples

    model = group_norm_model()
    processor = build_processor()
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (4000, 6400, 8000)]
    inputs = model_inputs(processor, waves, 16000)
    frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
    with torch.inference_mode():
        alone = [model(**model_inputs(processor, [w], 16000)).logits[0] for w in waves]
        plain = model(**inputs).logits
        with masked_group_norm(model) as norms:
            assert len(norms) == 1
            set_valid_samples(norms, inputs["attention_mask"].sum(-1))
            masked = model(**inputs).logits
    for row, (single, n) in enumerate(zip(alone, frames)):
        assert single.shape[0] == n
        torch.testing.assert_close(masked[row, :n], single, atol=1e-4, rtol=1e-4)
    # Without the mask the zeros of the padding shift the statistics of the shorter utterances.
    assert (plain[0, : frames[0]] - alone[0]).abs().max() > 1e-3
    # The wrapper is gone afterwards: training and saving see the model as it was.
    assert isinstance(model.wav2vec2.feature_extractor.conv_layers[0].layer_norm, torch.nn.GroupNorm)


def test_signal_downsampling_of_a_group_norm_model_stays_exact_in_a_padded_batch():
    import numpy as np

    from asrcompress.compression.downsampling import DownsampledCTC
    from asrcompress.decoding import masked_group_norm, model_inputs, set_valid_samples

    model = DownsampledCTC(group_norm_model(), 2, "signal").eval()
    processor = build_processor()
    rng = np.random.default_rng(2)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (6001, 9000, 12000)]
    inputs = model_inputs(processor, waves, 16000)
    samples = inputs["attention_mask"].sum(-1)
    frames = model._get_feat_extract_output_lengths(samples).tolist()
    with torch.inference_mode():
        alone = [model(**model_inputs(processor, [w], 16000)).logits[0] for w in waves]
        with masked_group_norm(model) as norms:
            set_valid_samples(norms, model.front_end_samples(samples))
            masked = model(**inputs).logits
    for row, (single, n) in enumerate(zip(alone, frames)):
        torch.testing.assert_close(masked[row, :n], single[:n], atol=1e-4, rtol=1e-4)


def test_one_job_decoding_several_test_sets_writes_what_separate_jobs_write(baseline, tiny_corpus, tmp_path):
    """decode.one_job_per: variant loads the model once for all conditions; each test set's hypotheses and
    timing record are those of a job of its own."""
    import json

    from asrcompress.compression.registry import Variant
    from asrcompress.compression.store import compress
    from asrcompress.decode_stage import TestSetJob, decode_test_set, decode_test_sets

    compress(baseline, Variant.of("none"), tmp_path / "variant")
    manifests = list(tiny_corpus)  # two test sets of different sizes (8 and 2 utterances)
    jobs = [TestSetJob(m, {"greedy": str(tmp_path / f"together{i}.jsonl")}, str(tmp_path / f"together{i}.json"))
            for i, m in enumerate(manifests)]
    timings = decode_test_sets(str(tmp_path / "variant"), jobs, 16000, 10.0, 1)
    assert [t.n_utterances for t in timings] == [8, 2]
    for i, manifest in enumerate(manifests):
        alone = decode_test_set(str(tmp_path / "variant"), manifest, str(tmp_path / f"alone{i}.jsonl"),
                                str(tmp_path / f"alone{i}.json"), 16000, 10.0, 1)
        assert (tmp_path / f"together{i}.jsonl").read_bytes() == (tmp_path / f"alone{i}.jsonl").read_bytes()
        together = json.loads((tmp_path / f"together{i}.json").read_text())
        assert together["n_utterances"] == alone.n_utterances and together["audio_s"] == alone.audio_s


def test_a_test_set_without_a_file_for_every_decoder_fails_before_loading(tmp_path):
    from asrcompress.decode_stage import TestSetJob, decode_test_sets
    from asrcompress.search import GREEDY

    job = TestSetJob("clean/manifest.jsonl", {}, str(tmp_path / "t.json"))
    with pytest.raises(ValueError, match="greedy.*clean/manifest.jsonl"):
        decode_test_sets(str(tmp_path / "missing-variant"), [job], 16000, 10.0, 1, [GREEDY])
