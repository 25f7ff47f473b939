"""Mixing as a measured object: SNR exact for either reference, gains recorded, bad noise refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from asrcompress.audio import read_audio
from asrcompress.banks import Bank
from asrcompress.conditions import Condition, active_speech_mask, build_condition, check_noise, mix
from asrcompress.errors import AudioError, ConfigError
from asrcompress.manifest import Utterance, read_manifest, write_manifest


@pytest.fixture(scope="module")
def speech(real_data):
    return read_audio(real_data / "speech/librispeech/2412-153948-0000.flac", 16000)


@pytest.fixture(scope="module")
def real_noise(real_data):
    return read_audio(real_data / "noise/speechbrain_noise1.flac", 16000)


@settings(max_examples=150, deadline=None)
@given(snr=st.floats(-20, 60), start=st.integers(0, 100_000), length=st.integers(4_000, 60_000),
       offset=st.integers(0, 400_000), reference=st.sampled_from(["utterance", "active"]))
def test_measured_snr_is_within_a_tenth_of_a_db_of_the_target(speech, real_noise, snr, start, length, offset, reference):
    segment = speech[start:start + length]
    noise = np.resize(np.roll(real_noise, -offset), len(segment))
    result = mix(segment, noise, snr, reference)
    assert abs(result.snr_db_measured - snr) < 0.1
    # independently: recover the two components' gains by least squares and recompute the ratio
    (a, b), *_ = np.linalg.lstsq(np.stack([segment, noise], 1).astype(np.float64), result.mixture.astype(np.float64),
                                 rcond=None)
    reference_power = np.mean((a * segment[active_speech_mask(segment)] if reference == "active" else a * segment) ** 2)
    assert abs(10 * np.log10(reference_power / np.mean((b * noise) ** 2)) - snr) < 0.1
    assert np.max(np.abs(result.mixture)) <= 0.99 + 1e-6
    assert result.gain == pytest.approx(a, rel=1e-3)  # the recorded gain is the one applied to the speech


def test_active_reference_ignores_silences(speech, real_noise):
    padded = np.concatenate([np.zeros(48_000, np.float32), speech, np.zeros(48_000, np.float32)])
    noise = np.resize(real_noise, len(padded))
    whole, active = mix(padded, noise, 10, "utterance"), mix(padded, noise, 10, "active")
    # the same target SNR puts more noise in when the silences no longer dilute the speech power
    assert np.sum((active.mixture / active.gain - padded) ** 2) > 1.5 * np.sum((whole.mixture / whole.gain - padded) ** 2)


def test_loud_mixtures_are_scaled_and_the_gain_is_recorded(speech, real_noise):
    loud = speech / np.max(np.abs(speech)) * 0.98
    result = mix(loud, np.resize(real_noise, len(loud)), -10)
    assert result.gain < 1.0 and np.max(np.abs(result.mixture)) == pytest.approx(0.99, abs=1e-6)
    assert mix(loud * 0.01, np.resize(real_noise, len(loud)), 30).gain == 1.0


@pytest.mark.parametrize("snr", [-20.5, 61])
def test_snr_outside_the_supported_range_is_refused(speech, real_noise, snr):
    with pytest.raises(ValueError, match=r"outside \[-20, 60\]"):
        mix(speech, np.resize(real_noise, len(speech)), snr)


def test_short_or_silent_noise_is_refused_naming_the_file():
    with pytest.raises(AudioError, match="n.wav: noise file is 0.050 s long"):
        check_noise(np.ones(800, np.float32), 16000, "n.wav")
    with pytest.raises(AudioError, match="s.wav: noise file is silent"):
        check_noise(np.zeros(16000, np.float32), 16000, "s.wav")


def _test_set(tmp_path, real_data, speaker="1988"):
    path = real_data / "speech/librispeech/1988-24833-0000.flac"
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, [Utterance("u1", str(path), sf.info(str(path)).duration, speaker, "THE TWO STRAY KITTENS")])
    return manifest


def test_babble_of_the_test_speaker_is_refused_before_any_audio(tmp_path, real_data):
    bank = tmp_path / "babble.jsonl"
    write_manifest(bank, [Utterance("b", str(real_data / "noise/speechbrain_noise2.flac"), 5.0, "babble", "",
                                    {"talkers": ["1988", "3752"]})])
    out = tmp_path / "cond"
    with pytest.raises(ConfigError, match="contains test speaker.*1988"):
        build_condition(Condition("noise", "babble", 10.0), str(_test_set(tmp_path, real_data)), out, 16000, 0,
                        noise_bank_manifests=[str(bank)])
    assert not out.exists() and not (tmp_path / "cond.partial").exists()


def test_bad_noise_in_the_bank_stops_the_job_naming_it_and_leaves_nothing(tmp_path, real_data):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(800, 0.1, np.float32), 16000)  # 50 ms
    bank = tmp_path / "bank.jsonl"
    write_manifest(bank, [Utterance("short", str(short), 0.05, "x", "")])
    out = tmp_path / "cond"
    with pytest.raises(AudioError, match="short.wav: noise file is 0.050 s long"):
        build_condition(Condition("noise", "x", 10.0), str(_test_set(tmp_path, real_data)), out, 16000, 0,
                        noise_bank_manifests=[str(bank)])
    assert not out.exists()


def test_manifest_records_everything_and_the_audio_hashes_are_reproducible(tmp_path, real_data):
    bank = tmp_path / "bank.jsonl"
    write_manifest(bank, [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    test = _test_set(tmp_path, real_data)
    hashes = []
    for run in ("a", "b"):
        build_condition(Condition("noise", "real", 5.0), str(test), tmp_path / run, 16000, 7,
                        noise_bank_manifests=[str(bank)], snr_reference="active")
        (utt,) = read_manifest(tmp_path / run / "manifest.jsonl")
        hashes.append(hashlib.sha256((tmp_path / run / "wav" / "u1.wav").read_bytes()).hexdigest())
        for field in ("noise_file", "noise_offset", "snr_db_target", "snr_db_measured", "gain", "seed", "snr_reference"):
            assert field in utt.extra, field
        assert utt.extra["snr_reference"] == "active" and abs(utt.extra["snr_db_measured"] - 5) < 0.1
    assert hashes[0] == hashes[1]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["snr_reference"] == "active" and summary["n_gain_reduced"] == 0
    assert Bank.load(bank, 16000).mono(0).ndim == 1


def test_active_reference_sees_through_a_quiet_noise_floor(speech, real_noise):
    """Pauses filled with hiss 45+ dB below the speech are not speech: with half the signal in such
    pauses, the active-speech reference puts about 3 dB more noise in than the whole-utterance one."""
    rng = np.random.default_rng(0)
    core = speech[:64_000] / np.max(np.abs(speech[:64_000])) * 0.5
    speechy = core[active_speech_mask(core)]
    hiss = (10 ** (-60 / 20) * rng.standard_normal(len(speechy))).astype(np.float32)
    padded = np.concatenate([speechy, hiss])
    assert abs(active_speech_mask(padded).mean() - 0.5) < 0.05
    noise = np.resize(real_noise, len(padded))
    whole, active = mix(padded, noise, 10, "utterance"), mix(padded, noise, 10, "active")
    extra_noise_db = 10 * np.log10(np.sum((active.mixture / active.gain - padded) ** 2)
                                   / np.sum((whole.mixture / whole.gain - padded) ** 2))
    assert 2.5 < extra_noise_db < 3.5


def test_a_silent_test_utterance_is_bad_audio(tmp_path, real_data):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    test = tmp_path / "test.jsonl"
    write_manifest(test, [Utterance("s", str(silent), 1.0, "x", "A"), Utterance("u1", str(
        real_data / "speech/librispeech/1988-24833-0000.flac"), 3.32, "1988", "THE TWO")])
    bank = tmp_path / "bank.jsonl"
    write_manifest(bank, [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    with pytest.raises(AudioError, match="silent.wav: is silent"):
        build_condition(Condition("noise", "real", 5.0), str(test), tmp_path / "a", 16000, 0, noise_bank_manifests=[str(bank)])
    build_condition(Condition("noise", "real", 5.0), str(test), tmp_path / "b", 16000, 0, noise_bank_manifests=[str(bank)],
                    on_bad_audio="skip")
    assert [u.id for u in read_manifest(tmp_path / "b" / "manifest.jsonl")] == ["u1"]
