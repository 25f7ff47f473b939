"""From a catalog subset's extracted folders to a manifest: one entry point per product.

The workflow knows subsets by layout (``asrcompress.catalog``); this module maps each layout
to its reader, so the rules stay generic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..manifest import Utterance
from .librispeech import prepare_librispeech
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


def prepare_corpus_bank(
    layout: str, subset: str, roots: Sequence[str], out_dir: str | Path, options: dict[str, Any], seed: int
) -> list[Utterance]:
    """A noise or RIR bank (``config.banks.corpora.<name>``) from one catalog subset."""
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
    raise ConfigError("banks.corpora", f"no bank can be made from a {layout!r} subset")
