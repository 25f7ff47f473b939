"""The repository stands alone: nothing refers to data beside the clone, and tests/data is what its README says."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
README = DATA / "README.md"
# Spelled in pieces so that this file does not match itself.
OUTSIDE = (".." + "/shared", "shared" + "/data", "ASRCOMPRESS_" + "SHARED")
LISTED = re.compile(r"^\| `([^`]+)` \|")  # first cell of a row of the README's file tables


def _repository_files() -> list[Path]:
    """Tracked files, and untracked ones git does not ignore (they are about to be committed)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True)
    if listing.returncode != 0:
        pytest.skip(f"not a git checkout: {listing.stderr.decode(errors='replace').strip()}")
    names = sorted({name for name in listing.stdout.decode().split("\0") if name})
    return [REPO / name for name in names if (REPO / name).is_file()]


def test_no_repository_file_refers_to_data_outside_the_clone():
    files = _repository_files()
    assert REPO / "tests" / "conftest.py" in files
    hits = []
    for path in files:
        content = path.read_bytes()
        for needle in OUTSIDE:
            if needle.encode() in content:
                line = content[: content.index(needle.encode())].count(b"\n") + 1
                hits.append(f"{path.relative_to(REPO)}:{line}: {needle}")
    assert not hits, "files that refer to data outside the repository:\n" + "\n".join(hits)


def test_tests_and_benchmarks_read_nothing_beside_the_repository():
    code = [p for p in _repository_files() if p.suffix == ".py" and p.parts[len(REPO.parts)] in ("tests", "benchmarks")]
    assert code
    parent = "REPO" + ".parent"  # in pieces, as above
    hits = [str(p.relative_to(REPO)) for p in code if parent in p.read_text(encoding="utf-8")]
    assert not hits, f"paths built from the repository's parent folder in {hits}"


def _listed() -> list[str]:
    return [m.group(1) for line in README.read_text(encoding="utf-8").splitlines() if (m := LISTED.match(line))]


def test_the_data_readme_lists_exactly_the_files_in_tests_data():
    listed = _listed()
    assert len(listed) == len(set(listed)), "a file is listed twice"
    present = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p != README)
    assert sorted(listed) == present, (
        f"listed but missing: {sorted(set(listed) - set(present))}; present but not listed: "
        f"{sorted(set(present) - set(listed))}"
    )


def test_the_recordings_are_16khz_mono_pcm16_flac_and_the_transcripts_cover_the_speech():
    audio = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix not in (".md", ".tsv"))
    assert len(audio) >= 30
    for path in audio:
        info = sf.info(str(path))
        assert (path.suffix, info.format, info.subtype, info.samplerate, info.channels) == (
            ".flac", "FLAC", "PCM_16", 16000, 1), path
    with open(DATA / "speech" / "transcripts.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    speech = sorted(p for p in audio if p.parts[len(DATA.parts)] == "speech")
    assert sorted(DATA / row["path"] for row in rows) == speech
    assert len({row["utt_id"] for row in rows}) == len(rows) and all(row["text"].strip() for row in rows)
