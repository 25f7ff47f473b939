import json

import numpy as np
import pytest
import soundfile as sf

from asrcompress.audio import read_audio, rms
from asrcompress.conditions import Condition, build_condition, conditions_from_config, crop_or_tile, mix_at_snr, reverberate
from asrcompress.errors import AudioError, ConfigError
from asrcompress.manifest import Utterance, read_manifest, write_manifest


@pytest.fixture(scope="module")
def speech(librispeech_wav):
    return read_audio(librispeech_wav, 16000)


@pytest.mark.parametrize("noise_file", ["noise/speechbrain_noise1.wav", "noise/audiomentations_hens.wav"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0, 40.0])
def test_mixture_hits_the_requested_snr_exactly(shared_data, speech, noise_file, snr):
    noise = crop_or_tile(read_audio(shared_data / noise_file, 16000), len(speech), offset=1234)
    mixture, measured = mix_at_snr(speech, noise, snr)
    assert len(mixture) == len(speech)
    assert measured == pytest.approx(snr, abs=0.1)
    # Independent check: the mixture lies in span(speech, noise); recover both gains by least squares.
    (a, b), *_ = np.linalg.lstsq(np.stack([speech, noise], axis=1).astype(np.float64), mixture.astype(np.float64), rcond=None)
    independent = 10 * np.log10(np.sum((a * speech.astype(np.float64)) ** 2) / np.sum((b * noise.astype(np.float64)) ** 2))
    assert independent == pytest.approx(snr, abs=0.1)
    assert np.max(np.abs(mixture)) <= 0.99 + 1e-6


def test_crop_or_tile_wraps_short_noise():
    noise = np.arange(5, dtype=np.float32)
    assert crop_or_tile(noise, 7, 3).tolist() == [3, 4, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("rir_file", ["rir/rir_clap_seminar_room.wav", "rir/freesound_757865_basement_clap.wav"])
def test_reverberation_keeps_length_and_sane_energy(shared_data, speech, rir_file):
    rir = read_audio(shared_data / rir_file, 16000)
    wet = reverberate(speech, rir)
    assert len(wet) == len(speech)
    assert np.all(np.isfinite(wet))
    assert 0.25 < rms(wet) / rms(speech) < 4.0
    assert not np.allclose(wet, speech)
    # the RIR starts at its direct path, so wet speech is not delayed against dry speech
    from scipy.signal import correlate, correlation_lags

    xcorr = np.abs(correlate(wet, speech, mode="full", method="fft"))
    lag = correlation_lags(len(wet), len(speech), mode="full")[np.argmax(xcorr)]
    assert abs(lag) <= 40  # 2.5 ms: measured RIRs smear the direct path over a few samples


def test_condition_ids_round_trip():
    for condition in [Condition("clean"), Condition("noise", "babble", 7.5), Condition("reverb", rt60_s=0.3),
                      Condition("noise+reverb", "white", 10.0, 0.6)]:
        assert Condition.parse(condition.id) == condition
    with pytest.raises(ValueError, match="not a condition id"):
        Condition.parse("noise/white")


def test_grid_from_config_and_errors():
    grid = conditions_from_config({"clean": True, "noise": {"types": ["white"], "snr_db": [10, 5]}, "reverb": {"rt60_s": [0.3]}})
    assert [c.id for c in grid] == ["clean", "noise/white/10", "noise/white/5", "reverb/0.3"]
    with pytest.raises(ConfigError, match="twice"):
        conditions_from_config({"noise": {"types": ["white"], "snr_db": [10, 10.0]}})
    with pytest.raises(ConfigError, match="no test condition"):
        conditions_from_config({"clean": False})


@pytest.fixture()
def real_test_set(tmp_path, shared_data, transcripts):
    rows = [r for r in transcripts if r["path"].startswith("speech/librispeech/")][:4]
    utts = [Utterance(r["utt_id"], str(shared_data / r["path"]), sf.info(str(shared_data / r["path"])).duration, r["utt_id"].split("-")[0], r["text"])
            for r in rows]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, utts)
    noise = tmp_path / "noise"
    write_manifest(noise / "manifest.jsonl", [Utterance("n1", str(shared_data / "noise/speechbrain_noise1.wav"), 33.1, "real", "")])
    rirs = tmp_path / "rir"
    write_manifest(rirs / "manifest.jsonl", [
        Utterance("clap", str(shared_data / "rir/rir_clap_seminar_room.wav"), 1.0, "real", "", {"rt60_measured_s": 0.5}),
        Utterance("lhotse", str(shared_data / "rir/lhotse_real_8ch_ch0.wav"), 0.1, "real", "", {"rt60_measured_s": 0.1}),
    ])
    return manifest, noise / "manifest.jsonl", rirs / "manifest.jsonl"


def test_condition_is_deterministic_and_records_what_it_did(tmp_path, real_test_set):
    test, noise, rirs = real_test_set
    condition = Condition("noise+reverb", "real", 5.0, 0.5)
    outputs = []
    for run in ("a", "b"):
        build_condition(condition, str(test), tmp_path / run, 16000, seed=3, noise_bank_manifest=str(noise), rir_bank_manifest=str(rirs))
        outputs.append(read_manifest(tmp_path / run / "manifest.jsonl"))
    first, second = outputs
    assert len(first) == 4
    for a, b in zip(first, second):
        assert sf.read(a.path)[0].tobytes() == sf.read(b.path)[0].tobytes()
        assert a.extra["snr_db_measured"] == pytest.approx(5.0, abs=0.1)
        assert a.extra["rir"] in {"clap", "lhotse"} and a.extra["noise_file"] == "n1"
        assert a.duration == b.duration and a.text == b.text
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n_skipped"] == 0 and summary["snr_db_measured_mean"] == pytest.approx(5.0, abs=0.1)
    other_seed = tmp_path / "c"
    build_condition(condition, str(test), other_seed, 16000, seed=4, noise_bank_manifest=str(noise), rir_bank_manifest=str(rirs))
    changed = read_manifest(other_seed / "manifest.jsonl")
    assert any(sf.read(a.path)[0].tobytes() != sf.read(c.path)[0].tobytes() for a, c in zip(first, changed))


def test_bad_test_audio_stops_or_is_skipped_and_counted(tmp_path, real_test_set):
    test, noise, _ = real_test_set
    utts = read_manifest(test)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    utts[1] = utts[1].with_(path=str(broken))
    write_manifest(test, utts)
    condition = Condition("noise", "real", 10.0)
    out = tmp_path / "cond"
    with pytest.raises(AudioError, match="broken.wav"):
        build_condition(condition, str(test), out, 16000, seed=0, noise_bank_manifest=str(noise))
    assert not out.exists() and not list(tmp_path.glob("cond*"))
    build_condition(condition, str(test), out, 16000, seed=0, noise_bank_manifest=str(noise), on_bad_audio="skip")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_skipped"] == 1 and summary["skipped"][0]["path"] == str(broken)
    assert len(read_manifest(out / "manifest.jsonl")) == 3
