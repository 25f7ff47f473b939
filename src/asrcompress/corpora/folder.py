"""A bank from any folder of audio files (your own noise recordings or measured RIRs).

Files are found recursively (wav, flac, ogg); the audio stays where it is and the manifest points at it,
as for the corpus banks. ``speaker`` holds ``<bank>/<sub-folder>`` so a folder per class keeps its classes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError
from ..manifest import Utterance
from .librispeech import audio_properties, write_prepared

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def prepare_folder_bank(root: str | Path, name: str, out_dir: str | Path, *, license: str = "unknown") -> list[Utterance]:
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: bank folder {name!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise PipelineError(f"{root}: bank folder {name!r} holds no {'/'.join(AUDIO_SUFFIXES)} file")
    records = []
    for path in files:
        props = audio_properties(path)
        relative = path.relative_to(root)
        group = relative.parent.as_posix() if relative.parent != Path(".") else "."
        utt_id = relative.with_suffix("").as_posix().replace("/", "--")
        records.append(Utterance(utt_id, str(path), props.duration, f"{name}/{group}", "", extra={
            "license": license, "native_sample_rate": props.sample_rate, "channels": props.channels}))
    write_prepared(out_dir, records, {"bank": name, "folder": str(root), "n_files": len(records),
                                      "hours": round(sum(r.duration for r in records) / 3600, 4)})
    return records
