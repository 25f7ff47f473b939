"""Banks from any folder: the measured RIRs in tests/data/rir (FLAC) as a real-RIR condition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from asrcompress.conditions import Condition, build_condition
from asrcompress.corpora.prepare import prepare_corpus_bank
from asrcompress.errors import AudioError, ConfigError
from asrcompress.manifest import Utterance, read_manifest, write_manifest


def _rir_bank(tmp_path, folder, **options):
    return prepare_corpus_bank("folder", None, [str(folder)], tmp_path / "bank", {"folder": str(folder), "kind": "rir",
                                                                                  **options}, 0, name="mine", kind="rir")


def test_real_rir_folder_becomes_a_measured_bank_and_a_condition(tmp_path, real_data):
    records = _rir_bank(tmp_path, real_data / "rir", license="see tests/data/README.md")
    assert len(records) == 4
    for record in records:
        assert np.isfinite(record.extra["rt60_measured_s"]) and record.extra["rt60_measured_s"] > 0
        assert np.isfinite(record.extra["drr_db"]) and record.extra["license"] == "see tests/data/README.md"
    summary = json.loads((tmp_path / "bank" / "summary.json").read_text())
    assert summary["n_kept"] == 4 and summary["rt60_measured_s"]["min"] > 0
    speech = real_data / "speech/librispeech/3752-4944-0000.flac"
    test = tmp_path / "test.jsonl"
    write_manifest(test, [Utterance("u", str(speech), sf.info(str(speech)).duration, "3752", "CAPTAIN FRERE")])
    build_condition(Condition("reverb", rir="mine"), str(test), tmp_path / "cond", 16000, 0,
                    rir_bank_manifest=str(tmp_path / "bank" / "manifest.jsonl"))
    (utt,) = read_manifest(tmp_path / "cond" / "manifest.jsonl")
    used = {r.id: r for r in records}[utt.extra["rir"]]
    assert utt.extra["rt60_measured_s"] == used.extra["rt60_measured_s"] and utt.extra["drr_db"] == used.extra["drr_db"]


def test_rt60_bins_keep_only_their_rirs_and_an_empty_bin_is_an_error(tmp_path, real_data):
    everything = {r.id: r.extra["rt60_measured_s"] for r in _rir_bank(tmp_path / "all", real_data / "rir")}
    cut = sorted(everything.values())[1]
    short = _rir_bank(tmp_path / "short", real_data / "rir", rt60_range_s=[0.0, cut])
    assert {r.id for r in short} == {k for k, v in everything.items() if v <= cut}
    with pytest.raises(ConfigError, match=r"banks.corpora.mine.rt60_range_s"):
        _rir_bank(tmp_path / "none", real_data / "rir", rt60_range_s=[50.0, 60.0])
    assert not (tmp_path / "none" / "bank").exists()


def test_silent_or_overlong_rirs_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "rirs"
    folder.mkdir()
    sf.write(folder / "silent.wav", np.zeros(8000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent.wav"):
        _rir_bank(tmp_path, folder)
    (folder / "silent.wav").unlink()
    sf.write(folder / "long.wav", np.r_[1.0, np.zeros(16000 * 11)].astype(np.float32), 16000)
    with pytest.raises(AudioError, match="long.wav"):
        _rir_bank(tmp_path, folder)
    assert not (tmp_path / "bank").exists()


def test_noise_folder_bank_keeps_sub_folders_as_classes(tmp_path, real_data):
    folder = tmp_path / "noise"
    for cls, name in [("farm", "audiomentations_hens.flac"), ("farm", "audiomentations_sheep.flac"),
                      ("room", "speechbrain_noise2.flac")]:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        (folder / cls / name).write_bytes((real_data / "noise" / name).read_bytes())
    records = prepare_corpus_bank("folder", None, [str(folder)], tmp_path / "bank", {"folder": str(folder), "kind": "noise"},
                                  0, name="mine", kind="noise")
    assert sorted(r.speaker for r in records) == ["mine/farm", "mine/farm", "mine/room"]


def test_each_channel_of_a_multichannel_rir_is_measured_and_the_drawn_one_recorded(tmp_path, real_data):
    folder = tmp_path / "rirs"
    folder.mkdir()
    clap, _ = sf.read(real_data / "rir/rir_clap_seminar_room.flac", dtype="float32")
    short, _ = sf.read(real_data / "rir/audiomentations_impulse_response_0.flac", dtype="float32")
    stereo = np.zeros((len(clap), 2), np.float32)
    stereo[:, 0], stereo[: len(short), 1] = clap, short
    sf.write(folder / "two_mics.wav", stereo, 16000)
    (record,) = _rir_bank(tmp_path, folder)
    rt60s, drrs = record.extra["rt60_measured_s_per_channel"], record.extra["drr_db_per_channel"]
    assert len(rt60s) == 2 and rt60s[0] != rt60s[1] and drrs[0] != drrs[1]
    speech = real_data / "speech/librispeech/3752-4944-0001.flac"
    test = tmp_path / "test.jsonl"
    duration = sf.info(str(speech)).duration
    write_manifest(test, [Utterance(f"u{i}", str(speech), duration, "3752", "X") for i in range(8)])
    build_condition(Condition("reverb", rir="mine"), str(test), tmp_path / "cond", 16000, 0,
                    rir_bank_manifest=str(tmp_path / "bank" / "manifest.jsonl"))
    used = read_manifest(tmp_path / "cond" / "manifest.jsonl")
    assert {u.extra["rir_channel"] for u in used} == {0, 1}
    for utt in used:
        assert utt.extra["rt60_measured_s"] == rt60s[utt.extra["rir_channel"]]
        assert utt.extra["drr_db"] == drrs[utt.extra["rir_channel"]]


def test_a_bad_noise_file_fails_the_bank_even_if_no_condition_would_draw_it(tmp_path, real_data):
    folder = tmp_path / "noise"
    folder.mkdir()
    (folder / "good.flac").write_bytes((real_data / "noise/speechbrain_noise2.flac").read_bytes())
    sf.write(folder / "tiny.wav", np.full(800, 0.1, np.float32), 16000)
    with pytest.raises(AudioError, match="tiny.wav: noise file is 0.050 s long"):
        prepare_corpus_bank("folder", None, [str(folder)], tmp_path / "bank", {"folder": str(folder), "kind": "noise"},
                            0, name="mine", kind="noise")
    assert not (tmp_path / "bank").exists()
