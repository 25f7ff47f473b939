"""Real-corpus preparation (LibriSpeech, Libri-Light limited, MUSAN, UrbanSound8K, DEMAND, RIRS_NOISES)
on tiny trees of real recordings laid out as the real archives extract."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from fake_corpora import (
    DEMAND_ENVIRONMENTS,
    LIBRILIGHT_LAYOUT,
    MUSAN_FILES,
    RIRS_REAL,
    US8K_CLIPS,
    librispeech_transcripts,
    make_demand,
    make_librilight_limited,
    make_librispeech,
    make_musan,
    make_rirs_noises,
    make_urbansound8k,
    rirs_simulated_entries,
)

from asrcompress.corpora.librispeech import prepare_librispeech, read_librispeech, seeded_subset
from asrcompress.corpora.noise_corpora import prepare_demand, prepare_musan, prepare_urbansound8k
from asrcompress.corpora.rirs_noises import parse_list_line, prepare_rirs
from asrcompress.errors import PipelineError
from asrcompress.manifest import read_manifest

MS = 1e-3


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def _summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "summary.json").read_text())


# --- LibriSpeech -------------------------------------------------------------------------------------------


@pytest.fixture
def librispeech(tmp_path, real_data, monkeypatch):
    """A dev-clean tree, addressed by a relative root from inside tmp_path (as the workflow does)."""
    monkeypatch.chdir(tmp_path)
    return make_librispeech(Path("resources/corpora/librispeech/dev-clean"), real_data)


def test_librispeech_manifest_matches_the_transcripts_and_audio(librispeech, real_data, tmp_path):
    expected = librispeech_transcripts(real_data)
    assert str(librispeech) == "resources/corpora/librispeech/dev-clean/LibriSpeech/dev-clean"
    utts = prepare_librispeech({"dev-clean": [librispeech]}, Path("prepared/dev-clean"))

    assert [u.id for u in utts] == sorted(expected) and len(utts) == 12
    manifest = read_manifest(tmp_path / "prepared/dev-clean/manifest.jsonl")
    assert [u.id for u in manifest] == [u.id for u in utts]
    for utt in manifest:
        source, text = expected[utt.id]
        speaker, chapter, _ = utt.id.split("-")
        assert utt.text == text
        assert utt.speaker == speaker and utt.extra == {"subset": "dev-clean", "chapter": chapter}
        assert utt.path == f"{librispeech}/{speaker}/{chapter}/{utt.id}.flac"  # relative, as the root was given
        assert abs(utt.duration - _duration(source)) < MS
    summary = _summary(tmp_path / "prepared/dev-clean")
    assert summary["count"] == 12 and summary["per_subset"]["dev-clean"]["count"] == 12
    assert summary["hours"] == pytest.approx(sum(u.duration for u in utts) / 3600, abs=1e-5)
    assert summary["n_speakers"] == len({u.speaker for u in utts})


def test_librispeech_manifest_bytes_are_deterministic(librispeech, tmp_path):
    prepare_librispeech({"dev-clean": [librispeech]}, Path("a"))
    prepare_librispeech({"dev-clean": [librispeech]}, Path("b"))
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()
    assert (tmp_path / "a/summary.json").read_bytes() == (tmp_path / "b/summary.json").read_bytes()


def test_librispeech_subset_is_seeded_and_of_the_right_size(librispeech, tmp_path):
    full = [u.id for u in read_librispeech([librispeech], "dev-clean")]
    first = prepare_librispeech({"dev-clean": [librispeech]}, Path("s1"), max_utterances=5, seed=3)
    again = prepare_librispeech({"dev-clean": [librispeech]}, Path("s2"), max_utterances=5, seed=3)
    other = [u.id for u in prepare_librispeech({"dev-clean": [librispeech]}, Path("s3"), max_utterances=5, seed=4)]
    ids = [u.id for u in first]
    assert len(ids) == 5 and ids == sorted(ids) and set(ids) <= set(full)
    assert ids == [u.id for u in again]
    assert (tmp_path / "s1/manifest.jsonl").read_bytes() == (tmp_path / "s2/manifest.jsonl").read_bytes()
    assert other != ids  # 792 possible draws; these two seeds give different ones
    assert len(read_manifest(tmp_path / "s1/manifest.jsonl")) == 5
    assert _summary(tmp_path / "s1")["n_available"] == 12
    assert [u.id for u in prepare_librispeech({"dev-clean": [librispeech]}, Path("s4"), max_utterances=99)] == full


def test_seeded_subset_rejects_a_non_positive_size():
    with pytest.raises(PipelineError, match="positive"):
        seeded_subset([1, 2, 3], 0, seed=0)


def test_librispeech_several_subsets_keep_their_names(tmp_path, real_data):
    clean = make_librispeech(tmp_path / "c", real_data, "dev-clean", ["1988-24833-0000", "2412-153948-0000"])
    other = make_librispeech(tmp_path / "o", real_data, "dev-other", ["3752-4944-0000"])
    utts = prepare_librispeech({"dev-clean": [clean], "dev-other": [other]}, tmp_path / "out")
    assert {u.id: u.extra["subset"] for u in utts} == {
        "1988-24833-0000": "dev-clean", "2412-153948-0000": "dev-clean", "3752-4944-0000": "dev-other",
    }
    assert _summary(tmp_path / "out")["per_subset"]["dev-other"]["count"] == 1


def _expect_failure(roots_by_subset, out_dir: Path, *fragments: str, **kwargs) -> None:
    with pytest.raises(PipelineError) as caught:
        prepare_librispeech(roots_by_subset, out_dir, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert not out_dir.exists()
    assert not out_dir.with_name(out_dir.name + ".partial").exists()


def test_librispeech_transcript_line_without_audio_is_an_error(librispeech, tmp_path):
    chapter = librispeech / "1988" / "24833"
    (chapter / "1988-24833-0002.flac").unlink()
    trans = str(chapter / "1988-24833.trans.txt")
    _expect_failure({"dev-clean": [librispeech]}, tmp_path / "out", trans, "1988-24833-0002")


def test_librispeech_audio_without_transcript_line_is_an_error(librispeech, tmp_path):
    trans = librispeech / "3752" / "4944" / "3752-4944.trans.txt"
    trans.write_text("".join(line + "\n" for line in trans.read_text().splitlines() if "3752-4944-0001" not in line))
    _expect_failure({"dev-clean": [librispeech]}, tmp_path / "out", "3752-4944-0001.flac", "'3752-4944-0001'")


def test_librispeech_chapter_without_transcript_file_is_an_error(librispeech, tmp_path):
    (librispeech / "3752" / "4944" / "3752-4944.trans.txt").unlink()
    _expect_failure({"dev-clean": [librispeech]}, tmp_path / "out", "3752-4944-0000.flac")


@pytest.mark.parametrize("bad_line", ["1988-24833-0000", "1988-24833 SOME TEXT", "2412-153948-0000 WRONG CHAPTER"])
def test_librispeech_malformed_transcript_line_is_an_error(librispeech, tmp_path, bad_line):
    trans = librispeech / "1988" / "24833" / "1988-24833.trans.txt"
    lines = trans.read_text().splitlines()
    lines[1] = bad_line
    trans.write_text("\n".join(lines) + "\n")
    _expect_failure({"dev-clean": [librispeech]}, tmp_path / "out", f"{trans}:2")


def test_librispeech_root_without_transcripts_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    _expect_failure({"dev-clean": [tmp_path / "empty"]}, tmp_path / "out", str(tmp_path / "empty"), "trans.txt")
    _expect_failure({"dev-clean": [tmp_path / "missing"]}, tmp_path / "out", str(tmp_path / "missing"))


def test_librispeech_duplicate_ids_across_roots_are_an_error(tmp_path, real_data):
    first = make_librispeech(tmp_path / "a", real_data, "dev-clean", ["1988-24833-0000", "3752-4944-0000"])
    second = make_librispeech(tmp_path / "b", real_data, "dev-clean", ["3752-4944-0000"])
    _expect_failure({"dev-clean": [first, second]}, tmp_path / "out", "'3752-4944-0000'", str(first), str(second))
    _expect_failure({"dev-clean": [first], "dev-other": [second]}, tmp_path / "out", "'3752-4944-0000'")


def test_a_failed_run_leaves_the_previous_output_alone(librispeech, tmp_path):
    prepare_librispeech({"dev-clean": [librispeech]}, tmp_path / "out")
    before = (tmp_path / "out/manifest.jsonl").read_bytes()
    (librispeech / "1988" / "24833" / "1988-24833-0002.flac").unlink()
    with pytest.raises(PipelineError):
        prepare_librispeech({"dev-clean": [librispeech]}, tmp_path / "out")
    assert (tmp_path / "out/manifest.jsonl").read_bytes() == before


# --- Libri-Light limited resource ----------------------------------------------------------------------------


def test_librilight_limited_10h_reads_1h_and_9h(tmp_path, real_data):
    base = make_librilight_limited(tmp_path, real_data)
    assert base.name == "librispeech_finetuning"
    assert (base / "1h" / "0" / "clean").is_dir() and (base / "9h" / "clean").is_dir()
    expected = librispeech_transcripts(real_data)
    utts = prepare_librispeech({"train-10h": [base / "1h", base / "9h"]}, tmp_path / "out", partial_transcripts={"train-10h"})
    assert [u.id for u in utts] == sorted(u for ids in LIBRILIGHT_LAYOUT.values() for u in ids)
    for utt in utts:
        assert utt.text == expected[utt.id][1] and utt.extra["subset"] == "train-10h"
        assert abs(utt.duration - _duration(expected[utt.id][0])) < MS
    one_hour = read_librispeech([base / "1h"], "train-1h", allow_missing_audio=True)
    assert [u.id for u in one_hour] == sorted(LIBRILIGHT_LAYOUT["1h/0/clean"] + LIBRILIGHT_LAYOUT["1h/0/other"])


def test_librilight_whole_chapter_transcripts_need_allow_missing_audio(tmp_path, real_data):
    base = make_librilight_limited(tmp_path, real_data)
    roots = {"train-10h": [base / "1h", base / "9h"]}
    _expect_failure(roots, tmp_path / "out", "1988-24833.trans.txt", "1988-24833-0002")


# --- MUSAN -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def musan(tmp_path_factory, real_data):
    return make_musan(tmp_path_factory.mktemp("musan"), real_data)


@pytest.mark.parametrize("category", ["noise", "music", "speech"])
def test_musan_category_bank(musan, real_data, tmp_path, category):
    expected = {stem: (source, recording) for cat, source, stem, recording in MUSAN_FILES if cat == category}
    records = prepare_musan(musan, category, tmp_path / "bank")
    assert [r.id for r in records] == sorted(expected)
    for record in read_manifest(tmp_path / "bank/manifest.jsonl"):
        source, recording = expected[record.id]
        assert record.path == str(musan / category / source / f"{record.id}.wav")
        assert record.speaker == f"musan-{category}/{source}" and record.text == ""
        assert record.extra["category"] == category and record.extra["source"] == source
        assert record.extra["license"].startswith(("Creative Commons", "Public Domain"))
        assert record.extra["native_sample_rate"] == 16000 and record.extra["channels"] == 1
        assert "fake-annotation-from" in record.extra["annotation"]
        assert abs(record.duration - _duration(real_data / recording)) < MS
    summary = _summary(tmp_path / "bank")
    assert summary["count"] == len(expected)
    assert sum(group["count"] for group in summary["per_source"].values()) == len(expected)


def test_musan_noise_sources_and_determinism(musan, tmp_path):
    prepare_musan(musan, "noise", tmp_path / "a")
    prepare_musan(musan, "noise", tmp_path / "b")
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()
    per_source = _summary(tmp_path / "a")["per_source"]
    assert {k: v["count"] for k, v in per_source.items()} == {"musan-noise/free-sound": 2, "musan-noise/sound-bible": 1}


def test_musan_bad_category_or_root(musan, tmp_path):
    with pytest.raises(PipelineError, match="noise, music, speech"):
        prepare_musan(musan, "babble", tmp_path / "bank")
    with pytest.raises(PipelineError, match=re.escape(str(tmp_path / "nowhere"))):
        prepare_musan(tmp_path / "nowhere", "noise", tmp_path / "bank")
    assert not (tmp_path / "bank").exists()


# --- UrbanSound8K ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def us8k(tmp_path_factory, real_data):
    return make_urbansound8k(tmp_path_factory.mktemp("us8k"), real_data)


def test_urbansound8k_bank_keeps_native_rate_and_channels(us8k, tmp_path):
    records = prepare_urbansound8k(us8k, tmp_path / "bank")
    clips = {f"us8k-{Path(c.slice_file_name).stem}": c for c in US8K_CLIPS}
    assert [r.id for r in records] == sorted(clips)
    for record in read_manifest(tmp_path / "bank/manifest.jsonl"):
        clip = clips[record.id]
        assert record.path == str(us8k / "audio" / f"fold{clip.fold}" / clip.slice_file_name)
        assert record.speaker == f"us8k/{clip.class_name}"
        assert record.extra["class"] == clip.class_name and record.extra["fold"] == clip.fold
        assert record.extra["salience"] == clip.salience and record.extra["class_id"] == clip.class_id
        assert record.extra["native_sample_rate"] == clip.sample_rate and record.extra["channels"] == clip.channels
        assert abs(record.duration - clip.source_frames / 16000) < MS  # the 16 kHz excerpt it was resampled from
    assert _summary(tmp_path / "bank")["sample_rates"] == {"22050": 1, "44100": 5}


def test_urbansound8k_pimentel_exclusion(us8k, tmp_path):
    records = prepare_urbansound8k(us8k, tmp_path / "bank", exclude_classes=["children_playing", "street_music"])
    classes = {r.extra["class"] for r in records}
    assert classes == {"air_conditioner", "dog_bark", "engine_idling"}
    assert len(records) == sum(c.class_name not in ("children_playing", "street_music") for c in US8K_CLIPS)
    summary = _summary(tmp_path / "bank")
    assert summary["excluded_classes"] == ["children_playing", "street_music"]
    assert "us8k/street_music" not in summary["per_source"]


def test_urbansound8k_include_classes(us8k, tmp_path):
    records = prepare_urbansound8k(us8k, tmp_path / "bank", include_classes=["engine_idling"])
    assert [r.id for r in records] == ["us8k-100105-5-0-0", "us8k-100105-5-0-1"]


def test_urbansound8k_unknown_class_names_the_valid_ones(us8k, tmp_path):
    for kwargs in ({"exclude_classes": ["street_musik"]}, {"include_classes": ["siren", "vacuum"]}):
        with pytest.raises(PipelineError) as caught:
            prepare_urbansound8k(us8k, tmp_path / "bank", **kwargs)
        message = str(caught.value)
        assert "UrbanSound8K.csv" in message and "street_music" in message and "air_conditioner" in message
    assert not (tmp_path / "bank").exists()


def test_urbansound8k_empty_after_filtering_is_an_error(us8k, tmp_path):
    with pytest.raises(PipelineError, match="no clips left"):
        prepare_urbansound8k(us8k, tmp_path / "bank", include_classes=["siren"])
    with pytest.raises(PipelineError, match="no clips left"):
        prepare_urbansound8k(us8k, tmp_path / "bank", include_classes=["dog_bark"], exclude_classes=["dog_bark"])
    assert not (tmp_path / "bank").exists()


def test_urbansound8k_missing_audio_names_the_csv_row_and_file(tmp_path, real_data):
    base = make_urbansound8k(tmp_path, real_data)
    (base / "audio" / "fold2" / "100104-9-0-0.wav").unlink()
    with pytest.raises(PipelineError) as caught:
        prepare_urbansound8k(base, tmp_path / "bank")
    assert "UrbanSound8K.csv:5" in str(caught.value) and "100104-9-0-0.wav" in str(caught.value)
    assert not (tmp_path / "bank").exists()
    # ...unless that clip's class is left out anyway
    assert len(prepare_urbansound8k(base, tmp_path / "bank", exclude_classes=["street_music"])) == 5


def test_too_short_noise_files_are_left_out_and_listed(us8k, tmp_path):
    records = prepare_urbansound8k(us8k, tmp_path / "bank", min_duration_s=2.2)
    assert sorted(r.id for r in records) == ["us8k-100101-0-0-0", "us8k-100102-2-0-0", "us8k-100104-9-0-0"]
    assert _summary(tmp_path / "bank")["left_out_too_short"] == [
        "us8k-100103-3-0-0", "us8k-100105-5-0-0", "us8k-100105-5-0-1",
    ]
    with pytest.raises(PipelineError, match="shorter than"):
        prepare_urbansound8k(us8k, tmp_path / "empty", min_duration_s=10.0)
    assert not (tmp_path / "empty").exists()


# --- DEMAND ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demand(tmp_path_factory, real_data):
    return make_demand(tmp_path_factory.mktemp("demand"), real_data)


def test_demand_bank_takes_one_channel_per_environment(demand, tmp_path):
    records = prepare_demand(demand, tmp_path / "bank")
    assert [r.id for r in records] == [f"demand-{env}-ch01" for env in sorted(DEMAND_ENVIRONMENTS)]
    for record in records:
        env = record.extra["environment"]
        assert record.speaker == f"demand/{env}" and record.path == str(demand / env / "ch01.wav")
        assert record.extra["native_sample_rate"] == 16000 and record.extra["channels"] == 1
        assert abs(record.duration - _duration(demand / env / "ch01.wav")) < MS
    chosen = prepare_demand(demand, tmp_path / "bank7", environments=["PCAFETER"], channel=7)
    assert [(r.id, r.path) for r in chosen] == [("demand-PCAFETER-ch07", str(demand / "PCAFETER" / "ch07.wav"))]


def test_demand_errors(demand, tmp_path):
    with pytest.raises(PipelineError, match=r"NOWHERE.*DKITCHEN, PCAFETER"):
        prepare_demand(demand, tmp_path / "bank", environments=["NOWHERE"])
    with pytest.raises(PipelineError, match=r"1\.\.16"):
        prepare_demand(demand, tmp_path / "bank", channel=17)
    assert not (tmp_path / "bank").exists()


# --- RIRS_NOISES -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rirs(tmp_path_factory, real_data):
    return make_rirs_noises(tmp_path_factory.mktemp("rirs"), real_data)


def test_rirs_real_bank_records_channels(rirs, tmp_path):
    records = prepare_rirs(rirs, "real", tmp_path / "bank")
    assert [r.id for r in records] == sorted(rir_id for rir_id, _, _ in RIRS_REAL)
    by_id = {r.id: r for r in read_manifest(tmp_path / "bank/manifest.jsonl")}
    for rir_id, room, files in RIRS_REAL:
        record = by_id[rir_id]
        assert record.speaker == room and record.extra["room"] == room and record.extra["kind"] == "real"
        assert record.path == str(rirs / "real_rirs_isotropic_noises" / f"{rir_id}.wav")
        assert record.extra["channels"] == len(files) and record.extra["native_sample_rate"] == 16000
    assert _summary(tmp_path / "bank")["channels"] == {"1": 1, "2": 1}


def test_rirs_simulated_bank_follows_the_lists(rirs, real_data, tmp_path):
    entries = rirs_simulated_entries()
    records = prepare_rirs(rirs, "simulated", tmp_path / "bank")
    assert [r.id for r in records] == sorted(e[0] for e in entries)
    by_id = {r.id: r for r in records}
    for rir_id, room, rel, recording in entries:
        record = by_id[rir_id]
        assert record.speaker == room and record.path == str(rirs / rel)
        assert record.extra["room_set"] == rel.split("/")[1] and record.extra["channels"] == 1
        assert abs(record.duration - _duration(real_data / recording)) < MS
    summary = _summary(tmp_path / "bank")
    per_set = {k: v["count"] for k, v in summary["per_room_set"].items()}
    assert per_set == {"largeroom": 1, "mediumroom": 1, "smallroom": 3}
    assert summary["n_rooms"] == 4


def test_rirs_relative_root_and_determinism(rirs, tmp_path, monkeypatch):
    monkeypatch.chdir(rirs.parent)
    prepare_rirs(Path("RIRS_NOISES"), "simulated", tmp_path / "a")
    records = prepare_rirs(Path("RIRS_NOISES"), "simulated", tmp_path / "b")
    assert all(r.path.startswith("RIRS_NOISES/simulated_rirs/") for r in records)
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()


def test_rirs_rooms_and_max_files(rirs, tmp_path):
    small_medium = prepare_rirs(rirs, "simulated", tmp_path / "sm", rooms=["smallroom", "mediumroom"])
    assert sorted({r.extra["room_set"] for r in small_medium}) == ["mediumroom", "smallroom"] and len(small_medium) == 4
    one_room = prepare_rirs(rirs, "simulated", tmp_path / "one", rooms=["smallroom-Room001"])
    assert [r.id for r in one_room] == ["smallroom-Room001-00001", "smallroom-Room001-00002"]
    first = [r.id for r in prepare_rirs(rirs, "simulated", tmp_path / "m1", max_files=2, seed=1)]
    again = [r.id for r in prepare_rirs(rirs, "simulated", tmp_path / "m2", max_files=2, seed=1)]
    assert len(first) == 2 and first == again
    with pytest.raises(PipelineError, match=r"unknown room.*hugeroom.*smallroom"):
        prepare_rirs(rirs, "simulated", tmp_path / "bad", rooms=["hugeroom"])
    with pytest.raises(PipelineError, match="real, simulated"):
        prepare_rirs(rirs, "measured", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("--rir-id x RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav", "lacks --room-id"),
        ("--rir-id x --room-id", "has no value"),
        ("--rir-id x --room-id r sox a.wav -r 8000 -t wav - |", "exactly one wav path"),
        ("--rir-id x --room-id r RIRS_NOISES/simulated_rirs/smallroom/Room001/Room009-00001.wav", "does not exist"),
        ("--rir-id x --room-id r --rt-60 slow RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav",
         "not a number"),
        ("--rir-id smallroom-Room001-00001 --room-id r RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00002.wav",
         "already listed"),
    ],
)
def test_rirs_bad_list_lines_name_the_list_file_and_line(tmp_path, real_data, line, fragment):
    base = make_rirs_noises(tmp_path, real_data)
    rir_list = base / "simulated_rirs" / "smallroom" / "rir_list"
    rir_list.write_text(rir_list.read_text() + line + "\n")
    n_lines = len(rir_list.read_text().splitlines())
    with pytest.raises(PipelineError) as caught:
        prepare_rirs(base, "simulated", tmp_path / "bank")
    assert f"{rir_list}:{n_lines}" in str(caught.value) and fragment in str(caught.value)
    assert not (tmp_path / "bank").exists()


def test_rirs_missing_list_file_is_named(tmp_path, real_data):
    base = make_rirs_noises(tmp_path, real_data)
    shutil.rmtree(base / "simulated_rirs" / "largeroom")
    with pytest.raises(PipelineError) as caught:
        prepare_rirs(base, "simulated", tmp_path / "bank")
    rir_list = base / "simulated_rirs" / "largeroom" / "rir_list"
    assert f"{rir_list}: RIRS_NOISES list file does not exist" in str(caught.value)


def test_list_lines_parse_options_and_paths_without_the_corpus_prefix(tmp_path, real_data):
    entry = parse_list_line("--rir-id a --room-id b --rt-60=0.5 --drr 3 simulated_rirs/x.wav", "list:1")
    assert dict(entry.options) == {"rir-id": "a", "room-id": "b", "rt-60": "0.5", "drr": "3"}
    assert entry.location == "simulated_rirs/x.wav"
    base = make_rirs_noises(tmp_path, real_data)
    rir_list = base / "simulated_rirs" / "mediumroom" / "rir_list"
    rir_list.write_text(rir_list.read_text().replace("RIRS_NOISES/", "").replace("--room-id", "--rt-60 0.4 --room-id"))
    record = next(r for r in prepare_rirs(base, "simulated", tmp_path / "bank") if r.extra["room_set"] == "mediumroom")
    assert record.path == str(base / "simulated_rirs/mediumroom/Room001/Room001-00001.wav")
    assert record.extra["rt_60"] == 0.4
