"""From a catalog subset's extracted folders (or any folder) to a manifest: one entry point per product.

The workflow knows subsets by layout (``asrcompress.catalog``); this module maps each layout
to its reader, so the rules stay generic. RIR banks get their acoustics measured here, once:
the RT60 (Schroeder) and DRR of every RIR go into the bank manifest, and ``rt60_range_s`` keeps a bin.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import soundfile as sf

from ..acoustics import check_rir, rir_metrics
from ..audio import peak_normalize, read_audio, write_audio
from ..conditions import check_noise
from ..errors import ConfigError
from ..io import atomic_directory, read_json, write_json
from ..manifest import Utterance, read_manifest, resolve_audio, write_manifest
from .folder import prepare_folder_bank
from .librispeech import prepare_librispeech, write_prepared
from .noise_corpora import prepare_demand, prepare_musan, prepare_urbansound8k
from .rirs_noises import prepare_rirs


def prepare_speech_split(
    roots_by_subset: Mapping[str, Sequence[str]], out_dir: str | Path, *, max_utterances: int | None, seed: int,
    partial_transcripts: Sequence[str] = (),
) -> list[Utterance]:
    """A train/dev/test manifest from LibriSpeech-layout subsets (``<dataset>/<subset>`` -> folders).

    ``partial_transcripts``: the subsets whose catalog entry says their transcripts cover more than their audio.
    """
    return prepare_librispeech(roots_by_subset, out_dir, max_utterances=max_utterances, seed=seed,
                               partial_transcripts=set(partial_transcripts))


def _prepare_records(layout: str, subset: str, roots: Sequence[str], out_dir: Path, options: dict[str, Any],
                     seed: int, name: str) -> list[Utterance]:
    root = Path(roots[0])
    if layout == "musan":
        return prepare_musan(root.parent, root.name, out_dir)
    if layout == "urbansound8k":
        return prepare_urbansound8k(root, out_dir, exclude_classes=options.get("exclude_classes", ()),
                                    include_classes=options.get("include_classes"))
    if layout == "demand":  # one archive per environment, so one environment per subset
        return prepare_demand(root.parent, out_dir, environments=[root.name], channel=options.get("channel", 1))
    if layout == "rirs_noises":
        return prepare_rirs(root.parent, subset, out_dir, rooms=options.get("rooms"),
                            max_files=options.get("max_files"), seed=seed)
    if layout == "folder":
        return prepare_folder_bank(root, name, out_dir, license=options.get("license", "unknown"))
    raise ConfigError("banks.corpora", f"no bank can be made from a {layout!r} subset")


def _with_acoustics(records: list[Utterance], manifest: Path) -> list[Utterance]:
    """Each RIR checked (energy, length) and measured at its own rate, channel by channel: the microphones of a
    multichannel RIR see different rooms acoustically. ``rt60_measured_s``/``drr_db`` hold the median over
    channels (what bins use), ``*_per_channel`` the values the mixer records for the channel it draws."""
    measured = []
    for record in records:
        path = resolve_audio(record, manifest)
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        per_channel = []
        for channel in range(data.shape[1]):
            rir = np.ascontiguousarray(data[:, channel])
            check_rir(rir, rate, f"{path} (channel {channel})")
            per_channel.append(rir_metrics(rir, rate))
        extra = {key: round(float(np.median([m[key] for m in per_channel])), 4) for key in per_channel[0]}
        if len(per_channel) > 1:
            extra.update({f"{key}_per_channel": [m[key] for m in per_channel] for key in ("rt60_measured_s", "drr_db")})
        measured.append(record.with_(extra=extra))
    return measured


def _check_noise_files(records: list[Utterance], manifest: Path, sample_rate: int) -> None:
    """Every noise file usable before the bank exists, not only the ones a condition happens to draw."""
    for record in records:
        path = resolve_audio(record, manifest)
        check_noise(read_audio(path, sample_rate, resample=True), sample_rate, str(path))


def _babble(records: list[Utterance], manifest: Path, out_dir: Path, spec: dict[str, Any], seed: int,
            sample_rate: int) -> list[Utterance]:
    """Babble files, each the sum of ``talkers`` random speech files (MUSAN speech), written into the bank."""
    rng = np.random.default_rng(seed)
    n_samples = int(spec.get("seconds", 30) * sample_rate)
    made = []
    for index in range(int(spec.get("files", 4))):
        picks = rng.choice(len(records), size=min(int(spec["talkers"]), len(records)), replace=False)
        mix = np.zeros(n_samples)
        for pick in sorted(int(p) for p in picks):
            talk = read_audio(resolve_audio(records[pick], manifest), sample_rate, resample=True)
            talk = np.resize(talk, n_samples)  # tiled: a talker shorter than the file keeps talking
            mix += talk / (np.sqrt(np.mean(talk.astype(np.float64) ** 2)) + 1e-9)
        name = f"babble-{index:03d}"
        write_audio(out_dir / f"{name}.wav", peak_normalize(mix.astype(np.float32), 0.9), sample_rate)
        made.append(Utterance(name, str(out_dir / f"{name}.wav"), n_samples / sample_rate, "babble", "", extra={
            "talkers": [records[int(p)].id for p in sorted(picks)], "license": records[0].extra.get("license")}))
    return made


def prepare_corpus_bank(
    layout: str, subset: str, roots: Sequence[str], out_dir: str | Path, options: dict[str, Any], seed: int,
    name: str = "bank", kind: str = "noise", license: str | None = None, sample_rate: int = 16000,
) -> list[Utterance]:
    """A noise or RIR bank (``config.banks.corpora.<name>``) from one catalog subset or a folder.

    ``license`` (the dataset's, from the catalog) is recorded on every file that does not state its own.
    """
    out_dir = Path(out_dir)
    raw = out_dir.with_name(out_dir.name + ".raw")  # the reader's manifest, before measuring, filtering, mixing
    shutil.rmtree(raw, ignore_errors=True)
    try:
        _prepare_records(layout, subset, roots, raw, options, seed, name)
        records = read_manifest(raw / "manifest.jsonl")
        records = [r if r.extra.get("license") else r.with_(extra={"license": license or "unknown"}) for r in records]
        summary = read_json(raw / "summary.json")
        if kind != "rir":
            _check_noise_files(records, raw / "manifest.jsonl", sample_rate)
            with atomic_directory(out_dir) as staging:
                if "babble" in options:
                    made = _babble(records, raw / "manifest.jsonl", staging, options["babble"], seed, sample_rate)
                    records = [r.with_(path=str(out_dir / Path(r.path).name)) for r in made]
                    summary = {**summary, "babble": dict(options["babble"]), "n_babble_files": len(records)}
                write_manifest(staging / "manifest.jsonl", records)
                write_json(staging / "summary.json", summary)
            return records
        records = _with_acoustics(records, raw / "manifest.jsonl")
        if "rt60_range_s" in options:
            low, high = options["rt60_range_s"]
            records = [r for r in records if low <= r.extra["rt60_measured_s"] <= high]
            if not records:
                raise ConfigError(f"banks.corpora.{name}.rt60_range_s",
                                  f"no RIR of the bank has an RT60 in [{low}, {high}] s")
        rt60s = [r.extra["rt60_measured_s"] for r in records]
        summary = {**summary, "n_kept": len(records), "rt60_range_s": options.get("rt60_range_s"),
                   "rt60_measured_s": {"min": min(rt60s), "median": float(np.median(rt60s)), "max": max(rt60s)}}
        write_prepared(out_dir, records, summary)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    return records
