"""OpenSLR 28 (RIRS_NOISES) room impulse responses read in place into RIR banks.

The corpus describes itself in Kaldi list files, one RIR per line::

    --rir-id <id> --room-id <room> [--receiver-position-id ..] [--source-position-id ..] [--rt-60 ..] [--drr ..] <wav>

(format of Kaldi's ``steps/data/reverberate_data_dir.py``). The lists are
``real_rirs_isotropic_noises/rir_list`` and ``simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list``;
their wav paths start with ``RIRS_NOISES/`` (relative to the folder holding the corpus, as Kaldi recipes
run beside it), and paths without that prefix are taken relative to the corpus folder. The bank is built
from the lists, not by globbing, so it holds exactly what the corpus declares.

No audio is copied. Multichannel real RIRs stay as they are: ``extra["channels"]`` records the count and
the mixer picks a channel.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import PipelineError
from ..manifest import Utterance
from .librispeech import audio_properties, counts_summary, seeded_subset, write_prepared
from .noise_corpora import value_counts

logger = logging.getLogger(__name__)

CORPUS_DIR_NAME = "RIRS_NOISES"
REAL_SET = "real_rirs_isotropic_noises"
SIMULATED_SETS = ("smallroom", "mediumroom", "largeroom")
KINDS = ("real", "simulated")
_FLOAT_OPTIONS = ("rt-60", "drr")


@dataclasses.dataclass(frozen=True)
class ListEntry:
    """One line of a Kaldi RIR or noise list: its ``--key value`` options (keys without dashes) and location."""

    options: Mapping[str, str]
    location: str
    source: str  # "<list file>:<line number>", for error messages


def parse_list_line(line: str, source: str) -> ListEntry:
    """Split ``--key value`` pairs (or ``--key=value``) from the one positional field, the wav path."""
    tokens = line.split()
    options: dict[str, str] = {}
    positional: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            if not eq:
                if index + 1 >= len(tokens) or tokens[index + 1].startswith("--"):
                    raise PipelineError(f"{source}: option {token} has no value")
                index += 1
                value = tokens[index]
            if not key or key in options:
                raise PipelineError(f"{source}: option {token!r} is empty or repeated")
            options[key] = value
        else:
            positional.append(token)
        index += 1
    if len(positional) != 1:
        raise PipelineError(
            f"{source}: expected exactly one wav path after the options, found {len(positional)} fields "
            f"({' '.join(positional)[:80]!r}); piped commands are not supported"
        )
    return ListEntry(options, positional[0], source)


def read_list_file(path: Path) -> list[ListEntry]:
    if not path.is_file():
        raise PipelineError(f"{path}: RIRS_NOISES list file does not exist")
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                entries.append(parse_list_line(line, f"{path}:{line_no}"))
    if not entries:
        raise PipelineError(f"{path}: RIRS_NOISES list file is empty")
    return entries


def resolve_location(root: Path, location: str) -> Path:
    """A list's wav path on disk: ``RIRS_NOISES/x`` and ``x`` both mean ``<root>/x``."""
    parts = PurePosixPath(location).parts
    if PurePosixPath(location).is_absolute():
        return Path(location)
    if parts and parts[0] == CORPUS_DIR_NAME:
        parts = parts[1:]
    return root.joinpath(*parts)


def _rir_record(root: Path, entry: ListEntry, kind: str, room_set: str) -> Utterance:
    for required in ("rir-id", "room-id"):
        if required not in entry.options:
            raise PipelineError(f"{entry.source}: line lacks --{required}")
    wav = resolve_location(root, entry.location)
    if not wav.is_file():
        raise PipelineError(f"{entry.source}: wav file {wav} (listed as {entry.location!r}) does not exist")
    props = audio_properties(wav)
    room = entry.options["room-id"]
    extra: dict[str, Any] = {
        "room": room,
        "room_set": room_set,
        "kind": kind,
        "channels": props.channels,
        "native_sample_rate": props.sample_rate,
    }
    for key, value in entry.options.items():
        if key in ("rir-id", "room-id"):
            continue
        name = key.replace("-", "_")
        if key in _FLOAT_OPTIONS:
            try:
                extra[name] = float(value)
            except ValueError as err:
                raise PipelineError(f"{entry.source}: --{key} {value!r} is not a number") from err
        else:
            extra[name] = value
    return Utterance(entry.options["rir-id"], str(wav), props.duration, room, "", extra=extra)


def list_files(root: Path, kind: str) -> list[tuple[str, Path]]:
    """(room set, list file) pairs of a kind."""
    if kind == "real":
        return [(REAL_SET, root / REAL_SET / "rir_list")]
    if kind == "simulated":
        return [(size, root / "simulated_rirs" / size / "rir_list") for size in SIMULATED_SETS]
    raise PipelineError(f"RIRS_NOISES kind {kind!r} is not one of {', '.join(KINDS)}")


def read_rirs(root: str | Path, kind: str) -> list[Utterance]:
    """Every RIR the lists of ``kind`` declare, sorted by id; errors name the list file and line."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: RIRS_NOISES folder does not exist")
    found: dict[str, tuple[Utterance, str]] = {}
    for room_set, list_path in list_files(root, kind):
        for entry in read_list_file(list_path):
            record = _rir_record(root, entry, kind, room_set)
            if record.id in found:
                raise PipelineError(f"{entry.source}: --rir-id {record.id!r} already listed at {found[record.id][1]}")
            found[record.id] = (record, entry.source)
    return [found[key][0] for key in sorted(found)]


def _filter_rooms(records: list[Utterance], rooms: Sequence[str] | None, root: Path) -> list[Utterance]:
    """Keep records whose room id or room set (``smallroom``, ``real_rirs_isotropic_noises``...) is in ``rooms``."""
    if rooms is None:
        return records
    known_sets = sorted({r.extra["room_set"] for r in records})
    known_rooms = sorted({r.extra["room"] for r in records})
    unknown = sorted(set(rooms) - set(known_sets) - set(known_rooms))
    if unknown:
        examples = ", ".join(known_rooms[:8]) + (", ..." if len(known_rooms) > 8 else "")
        raise PipelineError(
            f"{root}: unknown room(s) {', '.join(unknown)}; give room sets ({', '.join(known_sets)}) "
            f"or room ids ({examples})"
        )
    wanted = set(rooms)
    return [r for r in records if r.extra["room"] in wanted or r.extra["room_set"] in wanted]


def prepare_rirs(
    root: str | Path,
    kind: str,
    out_dir: str | Path,
    *,
    rooms: Sequence[str] | None = None,
    max_files: int | None = None,
    seed: int = 0,
) -> list[Utterance]:
    """Write a RIR bank of ``kind`` ("real" or "simulated") from ``root`` (the ``RIRS_NOISES`` folder):
    ``<out_dir>/manifest.jsonl`` (id = ``--rir-id``, speaker = ``--room-id``) and ``summary.json``.

    ``rooms`` keeps the named room ids or room sets; ``max_files`` then keeps a random subset of that size
    (``numpy.random.default_rng(seed)`` over the id-sorted list).
    """
    available = _filter_rooms(read_rirs(root, kind), rooms, Path(root))
    if not available:
        raise PipelineError(f"{root}: no {kind} RIRs left after choosing rooms {rooms}")
    chosen = seeded_subset(available, max_files, seed, what="RIRs")
    summary = {
        "corpus": "rirs_noises",
        "kind": kind,
        "root": str(root),
        "rooms": list(rooms) if rooms is not None else None,
        "max_files": max_files,
        "seed": seed,
        "n_available": len(available),
        **counts_summary(chosen, group_key=lambda r: r.extra["room_set"], group_name="per_room_set"),
        "n_rooms": len({r.speaker for r in chosen}),
        "channels": value_counts(r.extra["channels"] for r in chosen),
        "sample_rates": value_counts(r.extra["native_sample_rate"] for r in chosen),
    }
    write_prepared(out_dir, chosen, summary)
    return chosen
