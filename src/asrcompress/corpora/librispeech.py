"""LibriSpeech (OpenSLR 12) and the Libri-Light limited-resource splits, read in place into manifests.

Layout: ``<subset_root>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` beside
``<speaker>-<chapter>.trans.txt`` (lines ``<utt-id> <UPPER CASE TEXT>``). The Libri-Light
``librispeech_finetuning`` archive (``1h/{0..5}/{clean,other}/...``, ``9h/{clean,other}/...``) keeps the
same speaker/chapter layout, so one reader serves both; transcripts are found by a recursive walk.

Preparation copies no audio: manifest paths point at the extracted files, spelled as the caller gave the
roots (relative roots give relative paths). Durations come from the file headers (``soundfile.info``).

The helpers at the bottom (:func:`audio_properties`, :func:`seeded_subset`, :func:`write_prepared`) are
shared with the other real-corpus modules (noise corpora, RIRS_NOISES).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

from ..errors import PipelineError
from ..io import atomic_directory, write_json
from ..manifest import Utterance, write_manifest

logger = logging.getLogger(__name__)

AUDIO_SUFFIX = ".flac"
TRANSCRIPT_SUFFIX = ".trans.txt"
_UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class TranscriptLine:
    utt_id: str
    text: str
    source: str  # "<trans.txt path>:<line number>", for error messages


def read_transcript_file(path: Path) -> list[TranscriptLine]:
    """Parse one ``<speaker>-<chapter>.trans.txt``; every line must name an utterance of that chapter."""
    chapter_key = path.name[: -len(TRANSCRIPT_SUFFIX)]
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            where = f"{path}:{line_no}"
            parts = line.split(maxsplit=1)
            match = _UTT_ID.match(parts[0])
            if len(parts) != 2 or match is None:
                raise PipelineError(
                    f"{where}: malformed transcript line {line[:60]!r} (expected '<spk>-<chap>-<utt> TEXT')"
                )
            if f"{match.group(1)}-{match.group(2)}" != chapter_key:
                raise PipelineError(f"{where}: utterance {parts[0]!r} does not belong to chapter file {path.name}")
            lines.append(TranscriptLine(parts[0], parts[1].strip(), where))
    return lines


@dataclasses.dataclass(frozen=True)
class AudioProperties:
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_properties(path: str | os.PathLike[str]) -> AudioProperties:
    """Length, rate and channel count from the file header (no decoding); an unreadable or empty file is an
    error naming it."""
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for corrupt or missing files
        raise PipelineError(f"{path}: cannot read audio header ({err})") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise PipelineError(f"{path}: audio file holds no samples")
    return AudioProperties(int(info.frames), int(info.samplerate), int(info.channels))


def _chapter_utterances(trans_path: Path, subset: str, allow_missing_audio: bool) -> tuple[list[Utterance], int]:
    """The utterances of one chapter folder, and how many transcript lines had no audio (allowed only when
    ``allow_missing_audio``)."""
    folder = trans_path.parent
    audio_ids = {p.name[: -len(AUDIO_SUFFIX)] for p in folder.glob(f"*{AUDIO_SUFFIX}")}
    lines = read_transcript_file(trans_path)
    utterances, skipped = [], 0
    for line in lines:
        audio = folder / f"{line.utt_id}{AUDIO_SUFFIX}"
        if line.utt_id not in audio_ids:
            if allow_missing_audio:
                skipped += 1
                continue
            raise PipelineError(f"{line.source}: utterance {line.utt_id!r} has no audio file {audio}")
        speaker, chapter, _ = line.utt_id.split("-")
        utterances.append(
            Utterance(line.utt_id, str(audio), audio_properties(audio).duration, speaker, line.text,
                      extra={"subset": subset, "chapter": chapter})
        )
    return utterances, skipped


def read_librispeech(roots: Sequence[str | Path], subset: str, *, allow_missing_audio: bool = False) -> list[Utterance]:
    """Every utterance under ``roots`` (walked recursively for ``*.trans.txt``), sorted by id.

    Errors name the file at fault: a malformed transcript line, a transcript line without audio, an audio
    file without a transcript line, a root with no transcripts, an utterance id found twice.
    ``allow_missing_audio`` skips transcript lines that have no audio: the Libri-Light limited splits copy
    whole chapter transcripts beside a selection of the chapter's files (libri-light
    ``data_preparation/rebuild_limited_train/utils.py``, ``materialize``).
    """
    if not roots:
        raise PipelineError(f"LibriSpeech subset {subset!r}: no root folders given")
    found: dict[str, Utterance] = {}
    skipped = 0
    for root in roots:
        root_path = Path(root)
        if not root_path.is_dir():
            raise PipelineError(f"{root_path}: LibriSpeech root folder of subset {subset!r} does not exist")
        transcripts = sorted(root_path.rglob(f"*{TRANSCRIPT_SUFFIX}"))
        if not transcripts:
            raise PipelineError(
                f"{root_path}: no *{TRANSCRIPT_SUFFIX} files under this LibriSpeech root (subset {subset!r})"
            )
        in_root: set[str] = set()
        for trans_path in transcripts:
            chapter_utts, chapter_skipped = _chapter_utterances(trans_path, subset, allow_missing_audio)
            skipped += chapter_skipped
            for utt in chapter_utts:
                if utt.id in found:
                    raise PipelineError(f"{utt.path}: utterance id {utt.id!r} also found at {found[utt.id].path}")
                found[utt.id] = utt
                in_root.add(utt.path)
        _check_every_audio_file_is_transcribed(root_path, in_root)
    if skipped:
        logger.info("subset %s: skipped %d transcript lines without audio", subset, skipped)
    return [found[key] for key in sorted(found)]


def _check_every_audio_file_is_transcribed(root: Path, transcribed_paths: set[str]) -> None:
    for audio in sorted(root.rglob(f"*{AUDIO_SUFFIX}")):
        if str(audio) not in transcribed_paths:
            utt_id = audio.name[: -len(AUDIO_SUFFIX)]
            raise PipelineError(
                f"{audio}: audio file of utterance {utt_id!r} has no line in a {TRANSCRIPT_SUFFIX} beside it"
            )


def prepare_librispeech(
    roots_by_subset: Mapping[str, Sequence[str | Path]],
    out_dir: str | Path,
    *,
    max_utterances: int | None = None,
    seed: int = 0,
    partial_transcripts: Collection[str] = (),
) -> list[Utterance]:
    """Read every subset and write ``<out_dir>/manifest.jsonl`` and ``<out_dir>/summary.json``.

    ``partial_transcripts`` names the subsets whose transcripts may list utterances not shipped with them
    (Libri-Light's limited splits keep whole-chapter transcripts); those lines are skipped and counted there,
    and are an error everywhere else.

    ``max_utterances`` keeps a random subset of that size (drawn with ``numpy.random.default_rng(seed)``
    from the id-sorted list, so it is deterministic). Utterance ids must be unique across subsets.
    """
    if not roots_by_subset:
        raise PipelineError(f"{out_dir}: no LibriSpeech subsets given")
    everything: dict[str, Utterance] = {}
    for subset in sorted(roots_by_subset):
        lenient = subset in partial_transcripts
        for utt in read_librispeech(roots_by_subset[subset], subset, allow_missing_audio=lenient):
            if utt.id in everything:
                raise PipelineError(f"{utt.path}: utterance id {utt.id!r} also found at {everything[utt.id].path}")
            everything[utt.id] = utt
    available = [everything[key] for key in sorted(everything)]
    chosen = seeded_subset(available, max_utterances, seed, what="utterances")
    summary = {
        "corpus": "librispeech",
        "subsets": {subset: [str(root) for root in roots] for subset, roots in sorted(roots_by_subset.items())},
        "n_available": len(available),
        "max_utterances": max_utterances,
        "seed": seed,
        **counts_summary(chosen, group_key=lambda utt: utt.extra["subset"], group_name="per_subset"),
        "n_speakers": len({utt.speaker for utt in chosen}),
    }
    write_prepared(out_dir, chosen, summary)
    return chosen


# ---------------------------------------------------------------------------------------------------------
# Shared by the real-corpus modules.


def seeded_subset(items: Sequence[T], limit: int | None, seed: int, *, what: str = "items") -> list[T]:
    """``limit`` items drawn without replacement by ``default_rng(seed)``, kept in their input order; all of
    them when ``limit`` is None or not smaller than their number."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise PipelineError(f"asked for {limit} {what}: give a positive number or none")
    picked = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[i] for i in sorted(int(i) for i in picked)]


def counts_summary(utterances: Sequence[Utterance], *, group_key: Any, group_name: str) -> dict[str, Any]:
    """Counts and hours overall and per group (``group_key(utt)``), for ``summary.json``."""
    groups: dict[str, dict[str, float]] = {}
    for utt in utterances:
        group = groups.setdefault(str(group_key(utt)), {"count": 0, "hours": 0.0})
        group["count"] += 1
        group["hours"] += utt.duration / 3600
    return {
        "count": len(utterances),
        "hours": round(sum(utt.duration for utt in utterances) / 3600, 6),
        group_name: {
            key: {"count": int(value["count"]), "hours": round(value["hours"], 6)}
            for key, value in sorted(groups.items())
        },
    }


def write_prepared(out_dir: str | Path, utterances: Sequence[Utterance], summary: Mapping[str, Any]) -> None:
    """Write ``manifest.jsonl`` and ``summary.json`` into ``out_dir`` as one unit: a failure leaves no folder."""
    with atomic_directory(out_dir) as staging:
        write_manifest(staging / "manifest.jsonl", utterances)
        write_json(staging / "summary.json", dict(summary))
    logger.info("%s: %d records, %.3f h", out_dir, len(utterances), sum(u.duration for u in utterances) / 3600)
