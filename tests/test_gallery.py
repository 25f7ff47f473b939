"""The per-condition gallery: spectrogram PNGs and audio copies of a few real test utterances."""

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from asrcompress.conditions import Condition, RandomProtocol, build_condition
from asrcompress.errors import AudioError, PipelineError
from asrcompress.gallery import describe_corruption, make_gallery, pick_examples, spectrogram_db
from asrcompress.manifest import Utterance, read_manifest, write_manifest

RATE = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_data, transcripts):
    """Four real LibriSpeech utterances, a real noise bank and real RIRs, and three conditions built from them."""
    root = tmp_path_factory.mktemp("study")
    rows = [r for r in transcripts if r["path"].startswith("speech/librispeech/")][:4]
    utts = [Utterance(r["utt_id"], str(real_data / r["path"]), sf.info(str(real_data / r["path"])).duration,
                      r["utt_id"].split("-")[0], r["text"])
            for r in rows]
    test = root / "test" / "manifest.jsonl"
    write_manifest(test, utts)
    noise = root / "noise" / "manifest.jsonl"
    write_manifest(noise, [Utterance("n1", str(real_data / "noise/speechbrain_noise1.flac"), 33.1, "real", "")])
    rirs = root / "rir" / "manifest.jsonl"
    write_manifest(rirs, [
        Utterance("clap", str(real_data / "rir/rir_clap_seminar_room.flac"), 1.0, "real", "",
                  {"rt60_measured_s": 0.5}),
        Utterance("lhotse", str(real_data / "rir/lhotse_real_8ch_ch0.flac"), 0.1, "real", "",
                  {"rt60_measured_s": 0.1}),
    ])
    conditions = {}
    for condition_id in ("clean", "noise+reverb/real/5/clap", "random/mixed"):
        condition = Condition.parse(condition_id)
        protocol = (RandomProtocol.from_config("mixed", {"noise": ["real"], "rir": "clap", "white_noise_prob": 0.3})
                    if condition.kind == "random" else None)
        folder = root / "conditions" / condition_id
        build_condition(condition, str(test), folder, RATE, seed=0,
                        noise_bank_manifests=[] if condition.kind == "clean" else [str(noise)],
                        rir_bank_manifest=None if condition.kind == "clean" else str(rirs), protocol=protocol)
        conditions[condition_id] = folder / "manifest.jsonl"
    return {"root": root, "test": test, "conditions": conditions}


def _check_png(path, panels):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 10_000 < len(data) < 200_000, f"{path.name} is {len(data)} bytes"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert 500 < width < 900
    assert (350 < height < 600) if panels == 2 else (180 < height < 350)


def test_gallery_shows_spectrograms_and_exact_audio(study, tmp_path):
    manifest = study["conditions"]["noise+reverb/real/5/clap"]
    out = tmp_path / "gallery" / "noise+reverb" / "real" / "5" / "clap"
    files = make_gallery(manifest, study["test"], out, RATE, n_examples=3, seed=0)

    utts = {u.id: u for u in read_manifest(manifest)}
    clean = {u.id: u for u in read_manifest(study["test"])}
    index = json.loads((out / "index.json").read_text())
    ids = [example["id"] for example in index["examples"]]
    assert len(ids) == 3 and ids == sorted(ids) and set(ids) <= set(utts)
    expected = {f"{i}{suffix}" for i in ids for suffix in (".png", ".wav", ".clean.wav")} | {"index.json"}
    assert {p.name for p in out.iterdir()} == expected
    assert {p.name for p in files} == expected and all(p.parent == out for p in files)
    assert not list(out.parent.glob("*.partial"))

    assert index["condition"] == "noise+reverb/real/5/clap" and index["sample_rate"] == RATE and index["seed"] == 0
    for example in index["examples"]:
        utt = utts[example["id"]]
        assert example["files"] == {"figure": f"{utt.id}.png", "audio": f"{utt.id}.wav",
                                    "clean_audio": f"{utt.id}.clean.wav"}
        assert example["text"] == utt.text and example["record"]["snr_db_measured"] == pytest.approx(5.0, abs=0.1)
        rir = example["record"]["rir"]
        assert rir in {"clap", "lhotse"} and example["record"]["noise_file"] == "n1"
        assert example["description"] == describe_corruption(utt)
        rt60 = {"clap": "0.50", "lhotse": "0.10"}[rir]
        assert f"RIR {rir} (RT60 {rt60} s)" in example["description"]
        assert "noise n1 at 5 dB SNR (measured 5.0 dB)" in example["description"]
        # the corrupted audio as decoded, byte for byte (a WAV source is copied); the clean source, a FLAC
        # recording of tests/data, re-encoded to PCM16 WAV sample for sample
        assert (out / f"{utt.id}.wav").read_bytes() == open(utt.path, "rb").read()
        assert clean[utt.id].path.endswith(".flac") and sf.info(str(out / f"{utt.id}.clean.wav")).format == "WAV"
        copied, copied_rate = sf.read(str(out / f"{utt.id}.clean.wav"), dtype="int16")
        source, source_rate = sf.read(clean[utt.id].path, dtype="int16")
        assert copied_rate == source_rate == RATE and np.array_equal(copied, source)
        _check_png(out / f"{utt.id}.png", panels=2)


def test_gallery_is_deterministic_and_shows_the_same_utterances_everywhere(study, tmp_path):
    noisy = study["conditions"]["noise+reverb/real/5/clap"]
    runs = []
    for run in ("a", "b"):
        files = make_gallery(noisy, study["test"], tmp_path / run, RATE, n_examples=2, seed=7)
        runs.append({p.name: p.read_bytes() for p in files})
    assert list(runs[0]) == list(runs[1])
    assert runs[0] == runs[1]  # wavs, PNGs and index alike

    clean_out, random_out = tmp_path / "clean", tmp_path / "random"
    clean_files = make_gallery(study["conditions"]["clean"], study["test"], clean_out, RATE, n_examples=2, seed=7)
    make_gallery(study["conditions"]["random/mixed"], study["test"], random_out, RATE, n_examples=2, seed=7)
    picked = [json.loads((folder / "index.json").read_text())["examples"]
              for folder in (tmp_path / "a", clean_out, random_out)]
    assert [e["id"] for e in picked[0]] == [e["id"] for e in picked[1]] == [e["id"] for e in picked[2]]

    # the clean condition: one panel, the clean audio once
    expected = [f"{e['id']}{suffix}" for e in picked[1] for suffix in (".png", ".wav")] + ["index.json"]
    assert sorted(p.name for p in clean_files) == sorted(expected)
    for example in picked[1]:
        assert example["description"] == "no corruption" and "clean_audio" not in example["files"]
        _check_png(clean_out / example["files"]["figure"], panels=1)
    # a random condition says which mixture it drew
    for example in picked[2]:
        assert example["description"].startswith(f"drawn: {example['record']['drawn_kind']}")
        _check_png(random_out / example["files"]["figure"], panels=2)


def test_a_missing_wav_leaves_no_gallery(study, tmp_path):
    utts = read_manifest(study["conditions"]["noise+reverb/real/5/clap"])
    utts[0] = utts[0].with_(path=str(tmp_path / "gone.wav"))
    manifest = tmp_path / "cond" / "manifest.jsonl"
    write_manifest(manifest, utts)
    out = tmp_path / "gallery" / "cond"
    with pytest.raises(AudioError, match="gone.wav"):
        make_gallery(manifest, study["test"], out, RATE, n_examples=len(utts), seed=0)
    assert not out.exists() and list((tmp_path / "gallery").iterdir()) == []

    write_manifest(tmp_path / "short" / "manifest.jsonl", read_manifest(study["test"])[1:])
    with pytest.raises(PipelineError, match="lacks utterance"):
        make_gallery(study["conditions"]["clean"], tmp_path / "short" / "manifest.jsonl", out, RATE)
    assert not out.exists()


def test_non_wav_sources_are_reencoded_sample_exactly(study, tmp_path):
    utt = read_manifest(study["test"])[0]
    wave, rate = sf.read(utt.path, dtype="int16")
    flac = tmp_path / f"{utt.id}.flac"
    sf.write(flac, wave, rate, format="FLAC", subtype="PCM_16")
    write_manifest(tmp_path / "test" / "manifest.jsonl", [utt.with_(path=str(flac))])
    build_condition(Condition("clean"), str(tmp_path / "test" / "manifest.jsonl"), tmp_path / "clean", RATE, seed=0)
    make_gallery(tmp_path / "clean" / "manifest.jsonl", tmp_path / "test" / "manifest.jsonl", tmp_path / "out", RATE)
    copied, copied_rate = sf.read(tmp_path / "out" / f"{utt.id}.wav", dtype="int16")
    assert sf.info(str(tmp_path / "out" / f"{utt.id}.wav")).format == "WAV" and copied_rate == rate
    assert np.array_equal(copied, wave)


def test_examples_are_picked_by_id_alone():
    utts = [Utterance(f"u{i:02d}", f"u{i:02d}.wav", 1.0, "s", "") for i in range(20)]
    picked = [u.id for u in pick_examples(utts, 3, seed=1)]
    assert picked == sorted(picked) and len(picked) == 3
    assert [u.id for u in pick_examples(list(reversed(utts)), 3, seed=1)] == picked
    # dropping utterances that were not picked does not change the pick
    kept = [u for u in utts if u.id in picked or u.id.endswith(("1", "3"))]
    assert [u.id for u in pick_examples(kept, 3, seed=1)] == picked
    assert len({tuple(u.id for u in pick_examples(utts, 3, seed=s)) for s in range(5)}) > 1
    assert len(pick_examples(utts[:2], 3, seed=0)) == 2
    with pytest.raises(ValueError):
        pick_examples(utts, 0, seed=0)


def test_spectrogram_reads_a_full_scale_sine_at_0_dbfs():
    t = np.arange(RATE) / RATE
    db, hop_s, top_hz = spectrogram_db(np.sin(2 * np.pi * 1000 * t), RATE)
    assert db.shape == (257, 1 + (RATE - 400) // 160) and hop_s == pytest.approx(0.01) and top_hz == 8000
    peak_bin = int(np.argmax(db[:, 50]))
    assert peak_bin * RATE / 512 == pytest.approx(1000, abs=RATE / 512)
    assert db[peak_bin, 50] == pytest.approx(0.0, abs=1.5)  # 1 kHz falls between bins: scalloping loss < 1.5 dB
