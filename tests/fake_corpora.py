"""Tiny copies of real corpora's layouts, filled with the real recordings of tests/data.

Each builder writes the directory names and file formats the real archive extracts to (LibriSpeech FLAC
and ``trans.txt``, Libri-Light's limited splits, MUSAN, UrbanSound8K's CSV and folds, DEMAND's channel
files, RIRS_NOISES's Kaldi lists), so the same trees can be packed into archives for download tests.
The audio is real (its samples copied bit-exactly from the FLAC files of tests/data into the format the
corpus ships, cut, resampled or channel-duplicated); nothing is synthesised.
The constants say what each builder writes, so tests can derive what to expect.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
_LIBRISPEECH_ID = re.compile(r"^\d+-\d+-\d+$")

# --- LibriSpeech -------------------------------------------------------------------------------------------


def librispeech_transcripts(real_data: Path) -> dict[str, tuple[Path, str]]:
    """utt id -> (source FLAC, text) for the LibriSpeech utterances of tests/data with a proper LibriSpeech id
    (``1272-128104-0004_from8k`` is left out: upsampled from 8 kHz, transcript unverified)."""
    with open(real_data / "speech" / "transcripts.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {
        row["utt_id"]: (real_data / row["path"], row["text"])
        for row in rows
        if row["path"].startswith("speech/librispeech/") and _LIBRISPEECH_ID.match(row["utt_id"])
    }


def _chapter_of(utt_id: str) -> tuple[str, str]:
    speaker, chapter, _ = utt_id.split("-")
    return speaker, chapter


def _write_flac(source: Path, target: Path) -> None:
    data, rate = sf.read(str(source), dtype="int16")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(target), data, rate, format="FLAC", subtype="PCM_16")


def _write_transcript(folder: Path, speaker: str, chapter: str, lines: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{utt_id} {lines[utt_id]}\n" for utt_id in sorted(lines))
    (folder / f"{speaker}-{chapter}.trans.txt").write_text(text, encoding="utf-8")


def make_librispeech(
    root: Path, real_data: Path, subset: str = "dev-clean", utterance_ids: Sequence[str] | None = None
) -> Path:
    """``<root>/LibriSpeech/<subset>/<spk>/<chap>/`` with FLAC audio and ``<spk>-<chap>.trans.txt``."""
    available = librispeech_transcripts(real_data)
    chosen = sorted(available) if utterance_ids is None else list(utterance_ids)
    base = Path(root) / "LibriSpeech" / subset
    chapters: dict[tuple[str, str], dict[str, str]] = {}
    for utt_id in chosen:
        source, text = available[utt_id]
        speaker, chapter = _chapter_of(utt_id)
        _write_flac(source, base / speaker / chapter / f"{utt_id}.flac")
        chapters.setdefault((speaker, chapter), {})[utt_id] = text
    for (speaker, chapter), lines in chapters.items():
        _write_transcript(base / speaker / chapter, speaker, chapter, lines)
    return base


# Which utterances sit in which limited-resource folder. As in the real archive (libri-light
# rebuild_limited_train/utils.py copies whole chapter transcripts beside a selection of its files), a
# chapter can be split between 1h and 9h, and each copy of its trans.txt lists the whole chapter.
LIBRILIGHT_LAYOUT: dict[str, tuple[str, ...]] = {
    "1h/0/clean": ("1988-24833-0000", "1988-24833-0001", "2412-153948-0000"),
    "1h/0/other": ("1272-141231-0002",),
    "9h/clean": ("1988-24833-0002", "1988-24833-0003", "3752-4944-0000", "3752-4944-0001", "3752-4944-0002"),
}


def make_librilight_limited(root: Path, real_data: Path) -> Path:
    """``<root>/librispeech_finetuning/{1h/0/{clean,other},9h/clean}/<spk>/<chap>/``; returns the
    ``librispeech_finetuning`` folder."""
    available = librispeech_transcripts(real_data)
    base = Path(root) / "librispeech_finetuning"
    for folder, utt_ids in LIBRILIGHT_LAYOUT.items():
        for utt_id in utt_ids:
            speaker, chapter = _chapter_of(utt_id)
            _write_flac(available[utt_id][0], base / folder / speaker / chapter / f"{utt_id}.flac")
        for speaker, chapter in sorted({_chapter_of(u) for u in utt_ids}):
            whole_chapter = {u: text for u, (_, text) in available.items() if _chapter_of(u) == (speaker, chapter)}
            _write_transcript(base / folder / speaker / chapter, speaker, chapter, whole_chapter)
    return base


# --- MUSAN -------------------------------------------------------------------------------------------------

# (category, source, file stem, recording in tests/data)
MUSAN_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("noise", "free-sound", "noise-free-sound-0000", "noise/speechbrain_noise1.flac"),
    ("noise", "free-sound", "noise-free-sound-0001", "noise/speechbrain_noise2.flac"),
    ("noise", "sound-bible", "noise-sound-bible-0000", "noise/audiomentations_hens.flac"),
    ("music", "fma", "music-fma-0000", "noise/audiomentations_sheep.flac"),
    ("speech", "librivox", "speech-librivox-0000", "speech/librivox/sense_and_sensibility_01_austen_64kb-0870.flac"),
    ("speech", "librivox", "speech-librivox-0001", "speech/librivox/sense_and_sensibility_01_austen_64kb-0890.flac"),
    ("speech", "librivox", "speech-librivox-0002", "speech/librivox/sense_and_sensibility_01_austen_64kb-0920.flac"),
)
MUSAN_LICENSES = {
    "free-sound": "Creative Commons Attribution 3.0 (per-file attributions below)",
    "sound-bible": "Public Domain / Creative Commons Attribution 3.0 (per-file attributions below)",
    "fma": "Creative Commons Attribution 4.0 International",
    "librivox": "Public Domain",
}


def make_musan(root: Path, real_data: Path) -> Path:
    """``<root>/musan/<category>/<source>/*.wav`` with ``ANNOTATIONS`` and ``LICENSE`` per source."""
    base = Path(root) / "musan"
    annotations: dict[Path, list[str]] = {}
    for category, source, stem, recording in MUSAN_FILES:
        folder = base / category / source
        folder.mkdir(parents=True, exist_ok=True)
        _copy_as_wav(real_data / recording, folder / f"{stem}.wav")
        annotations.setdefault(folder, []).append(f"{stem} fake-annotation-from {Path(recording).name}")
    for folder, lines in annotations.items():
        (folder / "ANNOTATIONS").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "LICENSE").write_text(f"{MUSAN_LICENSES[folder.name]}\n\nBuilt by tests/fake_corpora.py\n")
    (base / "README").write_text("MUSAN layout filled with tests/data recordings (tests/fake_corpora.py)\n")
    return base


# --- UrbanSound8K ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Us8kClip:
    slice_file_name: str
    fold: int
    class_id: int
    class_name: str
    salience: int
    recording: str  # source recording in tests/data (16 kHz mono)
    offset_s: float
    seconds: float
    sample_rate: int
    channels: int

    @property
    def source_frames(self) -> int:
        return round(self.seconds * SAMPLE_RATE)


US8K_CLIPS: tuple[Us8kClip, ...] = (
    Us8kClip("100101-0-0-0.wav", 1, 0, "air_conditioner", 2, "noise/speechbrain_noise1.flac", 0.0, 3.0, 44100, 2),
    Us8kClip("100102-2-0-0.wav", 1, 2, "children_playing", 1, "noise/speechbrain_noise4.flac", 1.0, 2.5, 44100, 2),
    Us8kClip("100103-3-0-0.wav", 1, 3, "dog_bark", 1, "noise/speechbrain_noise3.flac", 0.0, 2.0, 44100, 2),
    Us8kClip("100104-9-0-0.wav", 2, 9, "street_music", 2, "noise/speechbrain_noise5.flac", 0.5, 4.0, 44100, 2),
    Us8kClip("100105-5-0-0.wav", 2, 5, "engine_idling", 2, "noise/speechbrain_noise2.flac", 0.0, 2.0, 44100, 2),
    Us8kClip("100105-5-0-1.wav", 2, 5, "engine_idling", 2, "noise/speechbrain_noise2.flac", 2.0, 1.5, 22050, 1),
)


def _resampled_excerpt(real_data: Path, clip: Us8kClip) -> np.ndarray:
    from scipy.signal import resample_poly

    data, rate = sf.read(str(real_data / clip.recording), dtype="float32")
    assert rate == SAMPLE_RATE
    start = round(clip.offset_s * SAMPLE_RATE)
    excerpt = data[start : start + clip.source_frames]
    factor = math.gcd(clip.sample_rate, SAMPLE_RATE)
    wave = resample_poly(excerpt, clip.sample_rate // factor, SAMPLE_RATE // factor).astype(np.float32)
    wave = np.clip(wave, -1.0, 32767 / 32768)
    return np.stack([wave] * clip.channels, axis=1) if clip.channels > 1 else wave


def make_urbansound8k(root: Path, real_data: Path) -> Path:
    """``<root>/UrbanSound8K/{metadata/UrbanSound8K.csv, audio/fold<k>/*.wav}``; clips resampled from
    16 kHz real noise to their ``sample_rate`` and duplicated to their channel count."""
    base = Path(root) / "UrbanSound8K"
    rows = []
    for clip in US8K_CLIPS:
        target = base / "audio" / f"fold{clip.fold}" / clip.slice_file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), _resampled_excerpt(real_data, clip), clip.sample_rate, subtype="PCM_16")
        fs_id = clip.slice_file_name.split("-")[0]
        rows.append([clip.slice_file_name, fs_id, f"{clip.offset_s:.6f}", f"{clip.offset_s + clip.seconds:.6f}",
                     clip.salience, clip.fold, clip.class_id, clip.class_name])
    (base / "metadata").mkdir(parents=True, exist_ok=True)
    with open(base / "metadata" / "UrbanSound8K.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        writer.writerows(rows)
    (base / "UrbanSound8K_README.txt").write_text("UrbanSound8K layout filled with tests/data noise\n")
    return base


# --- DEMAND ------------------------------------------------------------------------------------------------

DEMAND_ENVIRONMENTS = {"DKITCHEN": "noise/speechbrain_noise1.flac", "PCAFETER": "noise/speechbrain_noise4.flac"}
DEMAND_SECONDS = 1.0
DEMAND_CHANNEL_HOP_S = 0.5  # channel k starts k * hop into the source, so the 16 channels differ


def make_demand(root: Path, real_data: Path) -> Path:
    """``<root>/<ENV>/ch01.wav .. ch16.wav`` (16 kHz mono PCM16), as DEMAND's ``<ENV>_16k.zip`` files
    extract; returns ``root``."""
    base = Path(root)
    frames = int(DEMAND_SECONDS * SAMPLE_RATE)
    for env, recording in DEMAND_ENVIRONMENTS.items():
        data, rate = sf.read(str(real_data / recording), dtype="int16")
        (base / env).mkdir(parents=True, exist_ok=True)
        for channel in range(1, 17):
            start = int(channel * DEMAND_CHANNEL_HOP_S * rate)
            sf.write(str(base / env / f"ch{channel:02d}.wav"), data[start : start + frames], rate, subtype="PCM_16")
    return base


# --- RIRS_NOISES (OpenSLR 28) ------------------------------------------------------------------------------

# (rir id, room id, RIR files in tests/data: one per channel)
RIRS_REAL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("air_type1_air_binaural_aula_carolina_1_1_3_0_1", "air_type1_air_binaural_aula_carolina",
     ("rir/rir_clap_seminar_room.flac", "rir/rir_clap_seminar_room.flac")),
    ("air_type1_air_binaural_booth_0_1_1", "air_type1_air_binaural_booth",
     ("rir/freesound_757865_basement_clap.flac",)),
)
RIRS_SECOND_CHANNEL_DELAY = 8  # samples: the second channel of a 2-channel RIR is the first, delayed and scaled
# size -> ((room, RIR files in tests/data, one per RIR), ...)
RIRS_SIMULATED: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "smallroom": (
        ("Room001", ("rir/lhotse_real_8ch_ch0.flac", "rir/audiomentations_impulse_response_0.flac")),
        ("Room002", ("rir/rir_clap_seminar_room.flac",)),
    ),
    "mediumroom": (("Room001", ("rir/audiomentations_impulse_response_0.flac",)),),
    "largeroom": (("Room001", ("rir/freesound_757865_basement_clap.flac",)),),
}


def rirs_simulated_entries() -> list[tuple[str, str, str, str]]:
    """(rir id, room id, path inside RIRS_NOISES, recording in tests/data) of every simulated RIR the builder
    writes."""
    entries = []
    for size, rooms in RIRS_SIMULATED.items():
        for room, files in rooms:
            for index, recording in enumerate(files, start=1):
                rel = f"simulated_rirs/{size}/{room}/{room}-{index:05d}.wav"
                entries.append((f"{size}-{room}-{index:05d}", f"{size}-{room}", rel, recording))
    return entries


def _write_multichannel_rir(real_data: Path, files: Sequence[str], target: Path) -> None:
    channels = [sf.read(str(real_data / name), dtype="float32")[0] for name in files]
    if len(channels) == 1:
        _copy_as_wav(real_data / files[0], target)
        return
    length = max(len(c) for c in channels) + RIRS_SECOND_CHANNEL_DELAY * (len(channels) - 1)
    stacked = np.zeros((length, len(channels)), dtype=np.float32)
    for index, wave in enumerate(channels):
        delay = index * RIRS_SECOND_CHANNEL_DELAY
        stacked[delay : delay + len(wave), index] = wave * (0.8**index)
    sf.write(str(target), stacked, SAMPLE_RATE, subtype="PCM_16")


def make_rirs_noises(root: Path, real_data: Path) -> Path:
    """``<root>/RIRS_NOISES/`` with ``real_rirs_isotropic_noises/{rir_list,noise_list}``,
    ``simulated_rirs/<size>/{rir_list,RoomNNN/*.wav}`` and ``pointsource_noises/noise_list``; list paths
    start with ``RIRS_NOISES/`` as in the real corpus."""
    base = Path(root) / "RIRS_NOISES"
    real = base / "real_rirs_isotropic_noises"
    real.mkdir(parents=True, exist_ok=True)
    lines = []
    for rir_id, room, files in RIRS_REAL:
        _write_multichannel_rir(real_data, files, real / f"{rir_id}.wav")
        lines.append(f"--rir-id {rir_id} --room-id {room} RIRS_NOISES/real_rirs_isotropic_noises/{rir_id}.wav")
    (real / "rir_list").write_text("\n".join(lines) + "\n")
    iso_noise = "air_type1_air_binaural_aula_carolina_noise_1.wav"
    _copy_excerpt(real_data / "noise/speechbrain_noise2.flac", real / iso_noise, 2.0)
    (real / "noise_list").write_text(
        f"--noise-id 00001 --noise-type isotropic --bg-fg-type background --room-linkage {RIRS_REAL[0][1]} "
        f"RIRS_NOISES/real_rirs_isotropic_noises/{iso_noise}\n"
    )
    by_size: dict[str, list[str]] = {}
    for rir_id, room, rel, recording in rirs_simulated_entries():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_as_wav(real_data / recording, target)
        by_size.setdefault(rel.split("/")[1], []).append(f"--rir-id {rir_id} --room-id {room} RIRS_NOISES/{rel}")
    for size, size_lines in by_size.items():
        (base / "simulated_rirs" / size / "rir_list").write_text("\n".join(size_lines) + "\n")
    point = base / "pointsource_noises"
    point.mkdir(parents=True, exist_ok=True)
    _copy_excerpt(real_data / "noise/speechbrain_noise3.flac", point / "noise1.wav", 2.0)
    (point / "noise_list").write_text(
        "--noise-id noise1 --noise-type point-source --bg-fg-type foreground "
        "RIRS_NOISES/pointsource_noises/noise1.wav\n"
    )
    (base / "README").write_text("RIRS_NOISES layout filled with tests/data recordings (tests/fake_corpora.py)\n")
    return base


def _copy_as_wav(source: Path, target: Path) -> None:
    """The recording's PCM16 samples, bit-exact, as the PCM16 WAV the real corpus ships."""
    data, rate = sf.read(str(source), dtype="int16")
    sf.write(str(target), data, rate, format="WAV", subtype="PCM_16")


def _copy_excerpt(source: Path, target: Path, seconds: float) -> None:
    data, rate = sf.read(str(source), dtype="int16")
    sf.write(str(target), data[: int(seconds * rate)], rate, subtype="PCM_16")
