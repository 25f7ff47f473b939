"""Benchmark the real-corpus path on this machine: download + verification, extraction, preparation.

A loopback HTTP server (the one the tests use) serves a large file, once cleanly and once with the
connection dropped half-way; then a LibriSpeech-layout archive of many FLAC utterances (copies of the
real recordings in tests/data) is extracted and prepared into a manifest.

Usage: .venv/bin/python benchmarks/data_benchmark.py [--mb 512] [--utterances 2000]
Writes benchmarks/results/data.md and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from asrcompress.corpora.librispeech import prepare_librispeech  # noqa: E402
from asrcompress.download import RemoteFile, download, extract_archive  # noqa: E402
from fake_corpora import make_librispeech  # noqa: E402
from http_server import LoopbackServer  # noqa: E402
from reporting import publish  # noqa: E402

REAL_DATA = REPO / "tests" / "data"


def _big_file(path: Path, megabytes: int) -> RemoteFile:
    chunk = os.urandom(1 << 20)
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(chunk)
            sha256.update(chunk)
            md5.update(chunk)
    return RemoteFile(url="", sha256=sha256.hexdigest(), md5=md5.hexdigest(), bytes=megabytes << 20)


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _librispeech_archive(root: Path, n_utterances: int) -> Path:
    """``n_utterances`` FLAC files in LibriSpeech layout: the 12 real utterances, copied under new chapters."""
    base = make_librispeech(root / "seed", REAL_DATA, "train-clean-100")
    sources = sorted(base.rglob("*.flac"))
    target = root / "big" / "LibriSpeech" / "train-clean-100"
    for index in range(n_utterances):
        speaker, chapter, utt = 1000 + index // 400, index // 20, index % 20
        folder = target / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        utt_id = f"{speaker}-{chapter}-{utt:04d}"
        os.link(sources[index % len(sources)], folder / f"{utt_id}.flac")
        with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as handle:
            handle.write(f"{utt_id} A SENTENCE NUMBER {index}\n")
    archive = root / "train-clean-100.tar.gz"
    with tarfile.open(archive, "w:gz", dereference=True, compresslevel=1) as tar:  # real copies, not hard links
        tar.add(root / "big" / "LibriSpeech", arcname="LibriSpeech")
    return archive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--utterances", type=int, default=2000)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        remote = _big_file(root / "www" / "big.bin", args.mb)
        with LoopbackServer(root / "www") as server:
            remote = RemoteFile(url=server.url("big.bin"), sha256=remote.sha256, md5=remote.md5, bytes=remote.bytes)
            clean = _timed(lambda: download(remote, root / "dl" / "a.bin"))
            server.drop_after("big.bin", remote.bytes // 2)
            resumed = _timed(lambda: download(remote, root / "dl" / "b.bin", backoff_s=0.1))
            ranges = [asked for name, asked in server.requests if asked]
        rows.append((f"download {args.mb} MiB over loopback, size + sha256 + md5 verified",
                     f"{clean:.1f} s ({args.mb / clean:.0f} MiB/s)"))
        rows.append(("same, connection dropped at 50% then resumed with a Range request",
                     f"{resumed:.1f} s ({args.mb / resumed:.0f} MiB/s; resumed at {ranges[0]})"))
        archive = _librispeech_archive(root / "ls", args.utterances)
        size_mb = archive.stat().st_size / 2**20
        extract = _timed(lambda: extract_archive(archive, root / "corpora" / "train-clean-100"))
        rows.append((f"extract a LibriSpeech-layout tar.gz ({args.utterances} FLAC, {size_mb:.0f} MiB), traversal checks included",
                     f"{extract:.1f} s ({size_mb / extract:.0f} MiB/s)"))
        subset = root / "corpora" / "train-clean-100" / "LibriSpeech" / "train-clean-100"
        prepare = _timed(lambda: prepare_librispeech({"librispeech/train-clean-100": [subset]}, root / "manifest"))
        rows.append((f"prepare its manifest ({args.utterances} utterances, durations from headers)",
                     f"{prepare:.1f} s ({args.utterances / prepare:.0f} utterances/s)"))
    table = "| step | time |\n|---|---|\n" + "\n".join(f"| {step} | {value} |" for step, value in rows) + "\n"
    publish(table, REPO / "benchmarks" / "results" / "data.md")


if __name__ == "__main__":
    main()
