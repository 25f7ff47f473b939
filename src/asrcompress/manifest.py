"""The one utterance record shared by every stage, and its JSONL reading and writing.

A manifest is a JSON-lines file, one :class:`Utterance` per line. Paths inside are
stored as written by the producing stage (relative to the working directory of the
workflow), so results stay relocatable with the whole results/ tree.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .errors import PipelineError
from .io import atomic_path

REQUIRED_FIELDS = ("id", "path", "duration", "speaker", "text")


@dataclasses.dataclass
class Utterance:
    """One utterance: the fields every stage relies on, plus stage-specific ``extra``."""

    id: str
    path: str
    duration: float
    speaker: str
    text: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        record = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        record.update(self.extra)
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: str = "<manifest>") -> "Utterance":
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise PipelineError(f"{source}: record {record.get('id', '?')!r} lacks {', '.join(missing)}")
        extra = {k: v for k, v in record.items() if k not in REQUIRED_FIELDS}
        return cls(
            id=str(record["id"]),
            path=str(record["path"]),
            duration=float(record["duration"]),
            speaker=str(record["speaker"]),
            text=str(record["text"]),
            extra=extra,
        )

    def with_(self, **changes: Any) -> "Utterance":
        extra = dict(self.extra)
        extra.update(changes.pop("extra", {}))
        return dataclasses.replace(self, extra=extra, **changes)


def read_manifest(path: str | os.PathLike[str]) -> list[Utterance]:
    """Read a JSONL manifest; a malformed line raises an error naming the file and line."""
    utterances = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"{where}: not valid JSON ({err.msg})") from err
            utt = Utterance.from_dict(record, source=where)
            if utt.id in seen:
                raise PipelineError(f"{where}: duplicate utterance id {utt.id!r}")
            seen.add(utt.id)
            utterances.append(utt)
    return utterances


def write_manifest(path: str | os.PathLike[str], utterances: Iterable[Utterance]) -> None:
    """Write a manifest atomically, sorted by id so identical inputs give identical bytes."""
    ordered = sorted(utterances, key=lambda utt: utt.id)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for utt in ordered:
                handle.write(utt.to_json() + "\n")


def resolve_audio(utt: Utterance, manifest_path: str | os.PathLike[str]) -> Path:
    """An utterance's audio path: absolute, or relative to the workflow's working directory."""
    path = Path(utt.path)
    if path.is_absolute() or path.exists():
        return path
    return Path(manifest_path).parent / path
