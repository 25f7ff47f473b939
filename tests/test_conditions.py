import json

import numpy as np
import pytest
import soundfile as sf

from asrcompress.audio import read_audio, rms
from asrcompress.banks import Bank
from asrcompress.conditions import (
    MIXTURE_KINDS,
    Condition,
    RandomProtocol,
    build_condition,
    conditions_from_config,
    corrupt_random,
    crop_or_tile,
    mix_at_snr,
    reverberate,
)
from asrcompress.errors import AudioError, ConfigError
from asrcompress.manifest import Utterance, read_manifest, write_manifest


@pytest.fixture(scope="module")
def speech(librispeech_audio):
    return read_audio(librispeech_audio, 16000)


@pytest.mark.parametrize("noise_file", ["noise/speechbrain_noise1.flac", "noise/audiomentations_hens.flac"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0, 40.0])
def test_mixture_hits_the_requested_snr_exactly(real_data, speech, noise_file, snr):
    noise = crop_or_tile(read_audio(real_data / noise_file, 16000), len(speech), offset=1234)
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


@pytest.mark.parametrize("rir_file", ["rir/rir_clap_seminar_room.flac", "rir/freesound_757865_basement_clap.flac"])
def test_reverberation_keeps_length_and_sane_energy(real_data, speech, rir_file):
    rir = read_audio(real_data / rir_file, 16000)
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
    for condition in [Condition("clean"), Condition("noise", "babble", 7.5), Condition("reverb", rir="0.3"),
                      Condition("noise+reverb", "white", 10.0, "0.6"), Condition("reverb", rir="slr28-real"), Condition("random", protocol="pimentel")]:
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
def real_test_set(tmp_path, real_data, transcripts):
    rows = [r for r in transcripts if r["path"].startswith("speech/librispeech/")][:4]
    utts = [Utterance(r["utt_id"], str(real_data / r["path"]), sf.info(str(real_data / r["path"])).duration, r["utt_id"].split("-")[0], r["text"])
            for r in rows]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, utts)
    noise = tmp_path / "noise"
    write_manifest(noise / "manifest.jsonl", [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    rirs = tmp_path / "rir"
    write_manifest(rirs / "manifest.jsonl", [
        Utterance("clap", str(real_data / "rir/rir_clap_seminar_room.flac"), 1.0, "real", "", {"rt60_measured_s": 0.5}),
        Utterance("lhotse", str(real_data / "rir/lhotse_real_8ch_ch0.flac"), 0.1, "real", "", {"rt60_measured_s": 0.1}),
    ])
    return manifest, noise / "manifest.jsonl", rirs / "manifest.jsonl"


def test_condition_is_deterministic_and_records_what_it_did(tmp_path, real_test_set):
    test, noise, rirs = real_test_set
    condition = Condition("noise+reverb", "real", 5.0, "0.5")
    outputs = []
    for run in ("a", "b"):
        build_condition(condition, str(test), tmp_path / run, 16000, seed=3, noise_bank_manifests=[str(noise)],
                        rir_bank_manifest=str(rirs))
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
    build_condition(condition, str(test), other_seed, 16000, seed=4, noise_bank_manifests=[str(noise)],
                        rir_bank_manifest=str(rirs))
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
        build_condition(condition, str(test), out, 16000, seed=0, noise_bank_manifests=[str(noise)])
    assert not out.exists() and not list(tmp_path.glob("cond*"))
    build_condition(condition, str(test), out, 16000, seed=0, noise_bank_manifests=[str(noise)], on_bad_audio="skip")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_skipped"] == 1 and summary["skipped"][0]["path"] == str(broken)
    assert len(read_manifest(out / "manifest.jsonl")) == 3


def _two_channel_rir_bank(tmp_path, real_data):
    """A bank holding one 2-channel RIR made of two measured ones, as OpenSLR-28's multichannel RIRs are."""
    clap = read_audio(real_data / "rir/rir_clap_seminar_room.flac", 16000)
    lhotse = read_audio(real_data / "rir/lhotse_real_8ch_ch0.flac", 16000)
    stereo = np.zeros((len(clap), 2), dtype=np.float32)
    stereo[:, 0], stereo[: len(lhotse), 1] = clap, lhotse
    sf.write(tmp_path / "stereo_rir.wav", stereo, 16000)
    manifest = tmp_path / "rir2" / "manifest.jsonl"
    write_manifest(manifest, [Utterance("stereo", str(tmp_path / "stereo_rir.wav"), 1.0, "real", "", {"channels": 2})])
    return manifest


def test_random_protocol_draws_kinds_snrs_sources_and_channels_as_configured(tmp_path, real_data, speech):
    noise_a, noise_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest(noise_a, [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    write_manifest(noise_b, [Utterance("hens", str(real_data / "noise/audiomentations_hens.flac"), 10.0, "real", "")])
    protocol = RandomProtocol.from_config("pimentel", {"noise": ["a", "b"], "rir": "room", "white_noise_prob": 0.3})
    noise_bank = Bank.load([noise_a, noise_b], 16000)
    rir_bank = Bank.load(_two_channel_rir_bank(tmp_path, real_data), 16000)
    segment = speech[:4000]
    draws = [corrupt_random(segment, protocol, np.random.default_rng(i), noise_bank, rir_bank)[1] for i in range(400)]
    kinds = [d["drawn_kind"] for d in draws]
    assert {k: kinds.count(k) for k in MIXTURE_KINDS} == pytest.approx({k: 100 for k in MIXTURE_KINDS}, abs=35)
    noisy = [d for d in draws if "noise" in d["drawn_kind"]]
    assert all("noise_file" not in d for d in draws if "noise" not in d["drawn_kind"])
    assert all(float(d["snr_db_target"]).is_integer() and 0 <= d["snr_db_target"] <= 20 for d in noisy)
    assert {d["snr_db_target"] for d in noisy} == set(range(21))
    assert all(abs(d["snr_db_measured"] - d["snr_db_target"]) < 0.1 for d in noisy)
    white = sum(d["noise_file"] == "white" for d in noisy) / len(noisy)
    assert 0.2 < white < 0.4
    assert {d["noise_file"] for d in noisy} == {"white", "n1", "hens"}
    reverberant = [d for d in draws if "reverb" in d["drawn_kind"]]
    assert {d["rir_channel"] for d in reverberant} == {0, 1}


def test_random_condition_is_reproducible_and_summarised(tmp_path, real_test_set):
    test, noise, rirs = real_test_set
    protocol = RandomProtocol.from_config("mixed", {"noise": ["real"], "rir": "room", "snr_db": [5, 5]})
    condition = Condition.parse("random/mixed")
    for run in ("a", "b"):
        build_condition(condition, str(test), tmp_path / run, 16000, seed=1, noise_bank_manifests=[str(noise)],
                        rir_bank_manifest=str(rirs), protocol=protocol)
    first, second = (read_manifest(tmp_path / run / "manifest.jsonl") for run in ("a", "b"))
    assert [u.extra for u in first] == [u.extra for u in second]
    assert [sf.read(u.path)[0].tobytes() for u in first] == [sf.read(u.path)[0].tobytes() for u in second]
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    assert sum(summary["drawn_kinds"].values()) == 4 and summary["kind"] == "random"
    for utt in read_manifest(tmp_path / "a/manifest.jsonl"):
        assert utt.extra["condition"] == "random/mixed"
        if "noise" in utt.extra["drawn_kind"]:
            assert utt.extra["snr_db_target"] == 5


@pytest.mark.parametrize("entry, key", [
    ({"noise": ["a"], "rir": "r", "kinds": ["loud"]}, "kinds"),
    ({"noise": ["a"], "rir": "r", "snr_db": [20, 0]}, "snr_db"),
    ({"rir": "r"}, "noise"),
    ({"noise": ["a"]}, "rir"),
])
def test_random_protocol_config_errors_name_the_key(entry, key):
    with pytest.raises(ConfigError, match=rf"conditions\.random\.p\.{key}"):
        RandomProtocol.from_config("p", entry)


def test_random_protocol_order_decides_whether_the_noise_is_reverberated(tmp_path, real_data, speech):
    """noise_first reverberates the noise too (the mixture is convolved); reverb_first leaves it dry."""
    noise_manifest = tmp_path / "n.jsonl"
    write_manifest(noise_manifest, [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    rir_manifest = tmp_path / "r.jsonl"
    write_manifest(rir_manifest, [Utterance("clap", str(real_data / "rir/rir_clap_seminar_room.flac"), 1.0, "real", "")])
    noise_bank, rir_bank = Bank.load(noise_manifest, 16000), Bank.load(rir_manifest, 16000)
    segment = speech[:8000]
    outputs, infos = {}, {}
    for order in ("noise_first", "reverb_first"):
        protocol = RandomProtocol.from_config("p", {"noise": ["n"], "rir": "r", "kinds": ["noise+reverb"],
                                                    "white_noise_prob": 0.0, "order": order})
        outputs[order], infos[order] = corrupt_random(segment, protocol, np.random.default_rng(5), noise_bank, rir_bank)
        assert infos[order]["order"] == order and infos[order]["drawn_kind"] == "noise+reverb"
        assert infos[order]["noise_offset"] + len(segment) <= len(noise_bank.wave(0))  # a crop inside the file

    def noise_of(info):
        return noise_bank.wave(0)[info["noise_offset"]:info["noise_offset"] + len(segment)]

    first = infos["noise_first"]
    dry_mixture, _ = mix_at_snr(segment, noise_of(first), first["snr_db_target"])
    np.testing.assert_allclose(outputs["noise_first"], reverberate(dry_mixture, rir_bank.wave(0)), atol=1e-4)
    second = infos["reverb_first"]
    wet_mixture, _ = mix_at_snr(reverberate(segment, rir_bank.wave(0)), noise_of(second), second["snr_db_target"])
    np.testing.assert_allclose(outputs["reverb_first"], wet_mixture, atol=1e-4)
