"""Shared fixtures: the real recordings in tests/data (LibriSpeech, LibriVox, measured RIRs, noise; see
tests/data/README.md for their sources and licenses)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real recordings shipped with the repository (16 kHz mono FLAC, PCM16 samples)."""
    if not (REAL_DATA / "speech" / "transcripts.tsv").exists():
        pytest.fail(f"real test audio not found at {REAL_DATA} (part of the repository: is the checkout complete?)")
    return REAL_DATA


@pytest.fixture(scope="session")
def transcripts(real_data: Path) -> list[dict[str, str]]:
    with open(real_data / "speech" / "transcripts.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="session")
def librispeech_audio(real_data: Path) -> Path:
    return real_data / "speech" / "librispeech" / "1988-24833-0000.flac"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, real_data, transcripts) -> tuple[str, str]:
    """(train, dev) manifests: eight real LibriSpeech utterances cut to 1.5 s (dev: two of them), for
    tests that train a tiny model for a few steps."""
    import soundfile as sf

    from asrcompress.audio import write_audio
    from asrcompress.manifest import Utterance, write_manifest

    root = tmp_path_factory.mktemp("corpus")
    utts = []
    for row in transcripts[:8]:
        wave, rate = sf.read(str(real_data / row["path"]), dtype="float32")
        path = root / f"{row['utt_id']}.wav"
        write_audio(path, wave[: int(1.5 * rate)], rate)
        utts.append(Utterance(row["utt_id"], str(path), 1.5, "s", " ".join(row["text"].split()[:4])))
    write_manifest(root / "train.jsonl", utts)
    write_manifest(root / "dev.jsonl", utts[:2])
    return str(root / "train.jsonl"), str(root / "dev.jsonl")


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Path:
    """The seeded tiny model saved as a fine-tuned baseline folder (modules needing another shape override it)."""
    import torch

    from asrcompress.models import save_model_dir
    from helpers import tiny_model

    torch.manual_seed(0)
    model, processor = tiny_model()
    path = tmp_path_factory.mktemp("baseline")
    save_model_dir(model, processor, path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine extra threads only wait for cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole workflow run locally on the tiny config, once per session: the SLURM test compares its
    cluster run with it, and the workflow tests inspect it (restoring its config after any edit)."""
    from workflow_utils import snakemake, tiny_config, workflow_copy

    workdir = workflow_copy(tmp_path_factory.mktemp("run"), tiny_config())
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir
