"""Real noise corpora (MUSAN, UrbanSound8K, DEMAND) read in place into noise banks.

A bank is the format of :mod:`asrcompress.banks`: ``manifest.jsonl`` of
:class:`~asrcompress.manifest.Utterance` records whose ``speaker`` holds the source or class and whose
``text`` is empty. Here the records point at the extracted files (no audio is copied; paths are spelled
as the caller gave the root). Files keep their native rate and channel count, recorded in ``extra``
(``native_sample_rate``, ``channels``), because the bank reader resamples and picks a channel later.

Files shorter than ``min_duration_s`` (default: the 25 ms every audio reader rejects) are left out and
listed in ``summary.json``: UrbanSound8K holds a few clips of a few milliseconds.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from ..audio import MIN_DURATION_S
from ..errors import PipelineError
from ..manifest import Utterance
from .librispeech import audio_properties, counts_summary, write_prepared

logger = logging.getLogger(__name__)

MUSAN_CATEGORIES = ("noise", "music", "speech")
US8K_CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)
US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
DEMAND_CHANNELS = range(1, 17)


def _bank_record(utt_id: str, path: Path, speaker: str, extra: dict[str, Any]) -> Utterance:
    props = audio_properties(path)
    return Utterance(
        utt_id, str(path), props.duration, speaker, "",
        extra={**extra, "native_sample_rate": props.sample_rate, "channels": props.channels},
    )


def _drop_short(records: list[Utterance], min_duration_s: float) -> tuple[list[Utterance], list[str]]:
    kept = [r for r in records if r.duration >= min_duration_s]
    dropped = sorted(r.id for r in records if r.duration < min_duration_s)
    if dropped:
        logger.warning(
            "left out %d files shorter than %.3f s: %s", len(dropped), min_duration_s, ", ".join(dropped[:10])
        )
    return kept, dropped


def _write_bank(out_dir: str | Path, records: list[Utterance], dropped: list[str], min_duration_s: float,
                summary: dict[str, Any]) -> list[Utterance]:
    if not records:
        raise PipelineError(f"{out_dir}: every file is shorter than {min_duration_s} s; the bank would be empty")
    records = sorted(records, key=lambda r: r.id)
    summary = {
        **summary,
        **counts_summary(records, group_key=lambda r: r.speaker, group_name="per_source"),
        "min_duration_s": min_duration_s,
        "left_out_too_short": dropped,
        "sample_rates": value_counts(r.extra["native_sample_rate"] for r in records),
        "channels": value_counts(r.extra["channels"] for r in records),
    }
    write_prepared(out_dir, records, summary)
    return records


def value_counts(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def _check_unique(records: list[Utterance]) -> None:
    seen: dict[str, str] = {}
    for record in records:
        if record.id in seen:
            raise PipelineError(f"{record.path}: id {record.id!r} also used by {seen[record.id]}")
        seen[record.id] = record.path


# --- MUSAN (OpenSLR 17) ------------------------------------------------------------------------------------


def _first_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.strip()
    return None


def _annotations(path: Path) -> dict[str, str]:
    """``ANNOTATIONS``: one line per file, its name first; the rest is kept verbatim (its columns differ
    between categories)."""
    if not path.is_file():
        return {}
    notes = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.strip().split(maxsplit=1)
            if parts:
                notes[parts[0]] = parts[1] if len(parts) > 1 else ""
    return notes


def prepare_musan(
    root: str | Path, category: str, out_dir: str | Path, *, min_duration_s: float = MIN_DURATION_S
) -> list[Utterance]:
    """``<root>/<category>/<source>/*.wav`` (``root`` is the ``musan`` folder) into a bank; ``speaker`` is
    ``musan-<category>/<source>``."""
    if category not in MUSAN_CATEGORIES:
        raise PipelineError(f"MUSAN category {category!r} is not one of {', '.join(MUSAN_CATEGORIES)}")
    category_dir = Path(root) / category
    if not category_dir.is_dir():
        raise PipelineError(f"{category_dir}: MUSAN category folder does not exist")
    records = []
    for source_dir in sorted(p for p in category_dir.iterdir() if p.is_dir()):
        license_line = _first_line(source_dir / "LICENSE")
        notes = _annotations(source_dir / "ANNOTATIONS")
        for wav in sorted(source_dir.glob("*.wav")):
            extra: dict[str, Any] = {"category": category, "source": source_dir.name, "license": license_line}
            if wav.stem in notes:
                extra["annotation"] = notes[wav.stem]
            records.append(_bank_record(wav.stem, wav, f"musan-{category}/{source_dir.name}", extra))
    if not records:
        raise PipelineError(f"{category_dir}: no <source>/*.wav files in this MUSAN category folder")
    _check_unique(records)
    kept, dropped = _drop_short(records, min_duration_s)
    summary = {"corpus": "musan", "category": category, "root": str(root)}
    return _write_bank(out_dir, kept, dropped, min_duration_s, summary)


# --- UrbanSound8K ------------------------------------------------------------------------------------------


def _check_class_names(names: Collection[str], known: Collection[str], what: str, csv_path: Path) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise PipelineError(
            f"{csv_path}: unknown UrbanSound8K class(es) {', '.join(unknown)} in {what}; "
            f"valid classes: {', '.join(sorted(known))}"
        )


def _read_us8k_rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path}: UrbanSound8K metadata file does not exist")
    with open(csv_path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in US8K_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{csv_path}: metadata lacks column(s) {', '.join(missing)}")
        return list(reader)


def prepare_urbansound8k(
    root: str | Path,
    out_dir: str | Path,
    *,
    exclude_classes: Sequence[str] = (),
    include_classes: Sequence[str] | None = None,
    min_duration_s: float = MIN_DURATION_S,
) -> list[Utterance]:
    """``<root>/metadata/UrbanSound8K.csv`` and ``<root>/audio/fold<k>/<slice>`` (``root`` is the
    ``UrbanSound8K`` folder) into a bank; ``speaker`` is ``us8k/<class>``, ids ``us8k-<slice stem>``.

    ``include_classes`` (None: all) then ``exclude_classes`` choose the classes. The Pimentel et al. protocol
    leaves out ``children_playing`` and ``street_music`` (speech-like and music), which is the caller's choice.
    """
    root = Path(root)
    csv_path = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_us8k_rows(csv_path)
    known = set(US8K_CLASSES) | {row["class"] for row in rows}
    _check_class_names(exclude_classes, known, "exclude_classes", csv_path)
    if include_classes is not None:
        _check_class_names(include_classes, known, "include_classes", csv_path)
    wanted = (set(include_classes) if include_classes is not None else known) - set(exclude_classes)
    records = []
    for line_no, row in enumerate(rows, start=2):  # line 1 is the header
        if row["class"] not in wanted:
            continue
        audio = root / "audio" / f"fold{row['fold']}" / row["slice_file_name"]
        if not audio.is_file():
            raise PipelineError(
                f"{csv_path}:{line_no}: audio file {audio} of {row['slice_file_name']!r} does not exist"
            )
        try:
            extra = {
                "class": row["class"],
                "class_id": int(row["classID"]),
                "fold": int(row["fold"]),
                "salience": int(row["salience"]),
                "freesound_id": row["fsID"],
            }
        except (TypeError, ValueError) as err:
            raise PipelineError(f"{csv_path}:{line_no}: malformed row for {row['slice_file_name']!r} ({err})") from err
        records.append(_bank_record(f"us8k-{Path(row['slice_file_name']).stem}", audio, f"us8k/{row['class']}", extra))
    if not records:
        raise PipelineError(
            f"{csv_path}: no clips left after choosing classes "
            f"(include={include_classes}, exclude={list(exclude_classes)})"
        )
    _check_unique(records)
    kept, dropped = _drop_short(records, min_duration_s)
    summary = {
        "corpus": "urbansound8k",
        "root": str(root),
        "classes": sorted(wanted),
        "excluded_classes": sorted(set(exclude_classes)),
    }
    return _write_bank(out_dir, kept, dropped, min_duration_s, summary)


# --- DEMAND ------------------------------------------------------------------------------------------------


def prepare_demand(
    root: str | Path,
    out_dir: str | Path,
    *,
    environments: Sequence[str] | None = None,
    channel: int = 1,
    min_duration_s: float = MIN_DURATION_S,
) -> list[Utterance]:
    """``<root>/<ENV>/ch01.wav .. ch16.wav`` into a bank of one channel per environment; ``speaker`` is
    ``demand/<ENV>``, ids ``demand-<ENV>-chNN``. ``environments`` None takes every folder holding that channel."""
    if channel not in DEMAND_CHANNELS:
        raise PipelineError(f"DEMAND channel {channel} is not in 1..16")
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: DEMAND folder does not exist")
    name = f"ch{channel:02d}.wav"
    present = sorted(p.name for p in root.iterdir() if (p / name).is_file())
    if environments is None:
        chosen = present
    else:
        missing = sorted(set(environments) - set(present))
        if missing:
            raise PipelineError(
                f"{root}: DEMAND environment(s) {', '.join(missing)} have no {name}; "
                f"found: {', '.join(present) or 'none'}"
            )
        chosen = sorted(set(environments))
    if not chosen:
        raise PipelineError(f"{root}: no <ENV>/{name} files in this DEMAND folder")
    records = [
        _bank_record(f"demand-{env}-ch{channel:02d}", root / env / name, f"demand/{env}",
                     {"environment": env, "channel": channel})
        for env in chosen
    ]
    kept, dropped = _drop_short(records, min_duration_s)
    summary = {"corpus": "demand", "root": str(root), "channel": channel}
    return _write_bank(out_dir, kept, dropped, min_duration_s, summary)
