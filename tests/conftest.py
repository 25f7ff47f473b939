"""Shared fixtures: real recordings from ../shared/data (LibriSpeech, measured RIRs, noise)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASRCOMPRESS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "speech" / "transcripts.tsv").exists():
        pytest.fail(f"real test audio not found at {SHARED_DATA} (set ASRCOMPRESS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def transcripts(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "speech" / "transcripts.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="session")
def librispeech_wav(shared_data: Path) -> Path:
    return shared_data / "speech" / "librispeech" / "1988-24833-0000.wav"
