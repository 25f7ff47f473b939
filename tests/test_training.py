import numpy as np
import torch

from asrcompress.training import TrainConfig, batch_stream, length_bucketed_batches, train

from helpers import tiny_model


def test_batches_respect_budget_and_cover_each_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 1000, size=300).tolist()
    batches = length_bucketed_batches(lengths, 3000, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(max(lengths[i] for i in b) * len(b) <= 3000 for b in batches)


def test_resumed_stream_sees_the_same_batches():
    lengths = list(range(100, 400, 7))
    full = batch_stream(lengths, 1000, seed=5, start_step=0)
    first = [next(full) for _ in range(60)]
    resumed = batch_stream(lengths, 1000, seed=5, start_step=37)
    assert [next(resumed) for _ in range(23)] == first[37:]


def _run(tmp_path, corpus, steps, checkpoint_dir):
    torch.manual_seed(0)
    model, processor = tiny_model()
    config = TrainConfig(steps=steps, batch_seconds=4.0, learning_rate=1e-3, warmup_steps=2, eval_every=100,
                         checkpoint_every=3, seed=0, threads=1)
    result = train(model, processor, *corpus, checkpoint_dir, config, 16000)
    return model, result


def test_training_runs_and_a_killed_run_resumes_identically(tmp_path, tiny_corpus):
    straight, result = _run(tmp_path, tiny_corpus, 6, tmp_path / "a")
    assert np.isfinite(result.final_train_loss)
    assert np.isfinite(result.dev_cer)
    # A kill after step 3: all that survives is the step-3 checkpoint (the final step writes none).
    import shutil

    (tmp_path / "killed").mkdir()
    shutil.copy(tmp_path / "a" / "checkpoint.pt", tmp_path / "killed" / "checkpoint.pt")
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed, _ = _run(tmp_path, tiny_corpus, 6, tmp_path / "killed")
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_matched_training_noise_is_seeded_and_at_the_requested_snr(librispeech_audio):
    from asrcompress.audio import read_audio
    from asrcompress.finetune import training_augmenter

    assert training_augmenter({}, 16000) is None
    augment = training_augmenter({"noise_prob": 1.0, "snr_db": [10, 10]}, 16000)
    speech = read_audio(librispeech_audio, 16000)
    first = augment(speech, np.random.default_rng(3))
    again = augment(speech, np.random.default_rng(3))
    assert np.array_equal(first, again)
    noise = first - speech
    snr = 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
    assert abs(snr - 10) < 1.0
    assert not np.array_equal(first, augment(speech, np.random.default_rng(4)))


def test_spec_augment_masks_do_not_depend_on_numpy_global_state(tiny_corpus, tmp_path):
    """transformers draws SpecAugment masks from NumPy's global generator: training must not inherit it."""
    from asrcompress.models import ModelSpec, build_model, build_processor

    from helpers import TINY_ARCHITECTURE

    weights = []
    for numpy_state in (1, 2):
        torch.manual_seed(0)
        np.random.seed(numpy_state)
        processor = build_processor()
        model = build_model(ModelSpec("masked", "scratch", architecture={**TINY_ARCHITECTURE, "mask_time_prob": 0.5,
                                                                         "mask_time_length": 2}), processor)
        config = TrainConfig(steps=3, batch_seconds=4.0, learning_rate=1e-3, warmup_steps=1, eval_every=100,
                             checkpoint_every=100, seed=0, threads=1)
        train(model, processor, *tiny_corpus, tmp_path / f"ckpt{numpy_state}", config, 16000)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
