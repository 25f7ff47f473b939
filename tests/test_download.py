"""Downloads over a real loopback HTTP server and extraction of archives built from real recordings."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from http_server import LoopbackServer

from asrcompress.download import (
    ArchiveError,
    DownloadError,
    RemoteFile,
    download,
    extract_archive,
    marker_path,
    verify_file,
)

CHAPTER = ("1988", "24833")
FAST = {"backoff_s": 0.01, "timeout_s": 5.0, "chunk_bytes": 8192}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def librispeech_tgz(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev-clean.tar.gz in the LibriSpeech layout: one chapter as FLAC plus its .trans.txt."""
    speaker, chapter = CHAPTER
    with open(real_data / "speech" / "transcripts.tsv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if row["utt_id"].startswith(f"{speaker}-{chapter}-")]
    assert len(rows) == 4
    tree = tmp_path_factory.mktemp("librispeech_src")
    folder = tree / "LibriSpeech" / "dev-clean" / speaker / chapter
    folder.mkdir(parents=True)
    for row in rows:
        audio, rate = sf.read(real_data / row["path"], dtype="int16")
        sf.write(folder / f"{row['utt_id']}.flac", audio, rate, subtype="PCM_16")
    (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(f"{r['utt_id']} {r['text']}\n" for r in rows))
    archive = tmp_path_factory.mktemp("archives") / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "LibriSpeech", arcname="LibriSpeech")
    return archive


@pytest.fixture(scope="session")
def rir_zip(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("archives") / "rirs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for rir in sorted((real_data / "rir").glob("*.flac")):
            zf.write(rir, f"rirs/{rir.name}")
    return archive


@pytest.fixture
def server(tmp_path: Path, librispeech_tgz: Path) -> Iterator[LoopbackServer]:
    """Serves tmp_path/www, which holds dev-clean.tar.gz."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(librispeech_tgz, www / librispeech_tgz.name)
    with LoopbackServer(www) as running:
        yield running


def catalog(path: Path, url: str, *mirrors: str, **overrides: object) -> RemoteFile:
    data = path.read_bytes()
    fields: dict = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(), "bytes": len(data)}
    fields.update(overrides)
    return RemoteFile(url, mirrors=mirrors, **fields)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- download


def test_clean_download_verifies_writes_marker_and_is_idempotent(server, librispeech_tgz, tmp_path):
    remote = catalog(librispeech_tgz, server.url("dev-clean.tar.gz"))
    dest = tmp_path / "downloads" / "dev-clean.tar.gz"

    record = download(remote, dest, **FAST)

    assert dest.read_bytes() == librispeech_tgz.read_bytes()
    assert record.verified == ["bytes", "sha256", "md5"]
    assert (record.sha256, record.md5, record.bytes) == (remote.sha256, remote.md5, remote.bytes)
    assert json.loads(marker_path(dest).read_text()) == {
        "url": remote.url, "path": str(dest), "bytes": remote.bytes, "sha256": remote.sha256, "md5": remote.md5,
        "verified": ["bytes", "sha256", "md5"],
    }
    assert leftovers(dest.parent) == ["dev-clean.tar.gz", "dev-clean.tar.gz.verified.json"]
    assert server.requests == [("dev-clean.tar.gz", None)]

    assert download(remote, dest, **FAST) == record
    assert len(server.requests) == 1  # answered from the marker, no network


def test_existing_file_without_marker_is_verified_in_place(librispeech_tgz, tmp_path):
    dest = tmp_path / "dev-clean.tar.gz"
    shutil.copy(librispeech_tgz, dest)
    # nothing listens on this URL: success proves no request was made
    remote = catalog(librispeech_tgz, "http://127.0.0.1:9/dev-clean.tar.gz", bytes=None, md5=None)

    record = download(remote, dest, attempts=1, **FAST)

    assert record.verified == ["sha256"]
    assert json.loads(marker_path(dest).read_text())["sha256"] == remote.sha256
    assert verify_file(dest, remote).sha256 == remote.sha256


def test_dropped_connection_resumes_with_range(server, librispeech_tgz, tmp_path, caplog):
    caplog.set_level("INFO", logger="asrcompress.download")
    server.drop_after("dev-clean.tar.gz", 100_000)
    remote = catalog(librispeech_tgz, server.url("dev-clean.tar.gz"))
    dest = tmp_path / "dev-clean.tar.gz"

    record = download(remote, dest, **FAST)

    (_, no_range), (_, resumed) = server.requests
    assert no_range is None and resumed.startswith("bytes=") and resumed.endswith("-")
    assert 0 < int(resumed[len("bytes="):-1]) <= 100_000
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == remote.sha256 == record.sha256
    assert "resuming at byte" in caplog.text
    assert not dest.with_name("dev-clean.tar.gz.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, librispeech_tgz, tmp_path):
    server.drop_after("dev-clean.tar.gz", 50_000)
    server.ignore_range("dev-clean.tar.gz")
    remote = catalog(librispeech_tgz, server.url("dev-clean.tar.gz"))
    dest = tmp_path / "dev-clean.tar.gz"

    download(remote, dest, **FAST)

    assert server.requests[1][1] is not None  # a Range was asked and answered with the whole body
    assert dest.read_bytes() == librispeech_tgz.read_bytes()


def test_complete_part_answered_416_is_verified_without_a_body(server, librispeech_tgz, tmp_path):
    remote = catalog(librispeech_tgz, server.url("dev-clean.tar.gz"))
    dest = tmp_path / "dev-clean.tar.gz"
    shutil.copy(librispeech_tgz, tmp_path / "dev-clean.tar.gz.part")

    download(remote, dest, **FAST)

    assert server.requests == [("dev-clean.tar.gz", f"bytes={remote.bytes}-")]
    assert dest.read_bytes() == librispeech_tgz.read_bytes()


def test_oversized_part_answered_416_restarts_from_zero(server, librispeech_tgz, tmp_path):
    remote = catalog(librispeech_tgz, server.url("dev-clean.tar.gz"))
    dest = tmp_path / "dev-clean.tar.gz"
    (tmp_path / "dev-clean.tar.gz.part").write_bytes(librispeech_tgz.read_bytes() + b"junk")

    download(remote, dest, **FAST)

    assert [r for _, r in server.requests] == [f"bytes={remote.bytes + 4}-", None]
    assert dest.read_bytes() == librispeech_tgz.read_bytes()


def test_checksum_mismatch_names_url_and_digests_and_leaves_nothing(server, librispeech_tgz, tmp_path):
    url = server.url("dev-clean.tar.gz")
    actual = hashlib.sha256(librispeech_tgz.read_bytes()).hexdigest()
    remote = RemoteFile(url, sha256="0" * 64)
    dest = tmp_path / "dl" / "dev-clean.tar.gz"

    with pytest.raises(DownloadError) as caught:
        download(remote, dest, **FAST)

    message = str(caught.value)
    assert url in message and "0" * 64 in message and actual in message
    assert leftovers(dest.parent) == []


def test_a_corrupt_copy_on_one_server_falls_back_to_the_next_mirror(server, librispeech_tgz, tmp_path):
    corrupt = tmp_path / "www" / "corrupt.tar.gz"
    corrupt.write_bytes(librispeech_tgz.read_bytes()[:-10] + b"0123456789")  # same size, wrong bytes
    remote = catalog(librispeech_tgz, server.url("corrupt.tar.gz"), server.url("dev-clean.tar.gz"))
    record = download(remote, tmp_path / "dl" / "dev-clean.tar.gz", **FAST)
    assert record.url == server.url("dev-clean.tar.gz")
    assert (tmp_path / "dl" / "dev-clean.tar.gz").read_bytes() == librispeech_tgz.read_bytes()


def test_third_party_values_only_warn_but_cannot_stand_alone(server, librispeech_tgz, tmp_path, caplog):
    url = server.url("dev-clean.tar.gz")
    wrong_third_party = catalog(librispeech_tgz, url, sha256="1" * 64, bytes=123, advisory=("sha256", "bytes"))
    record = download(wrong_third_party, tmp_path / "dl" / "a.tar.gz", **FAST)
    assert record.verified == ["md5"]
    assert "third-party sha256 does not match" in caplog.text
    with pytest.raises(DownloadError, match="lacks a publisher checksum"):
        download(RemoteFile(url, sha256=record.sha256, advisory=("sha256",)), tmp_path / "dl" / "b.tar.gz", **FAST)


def test_404_is_not_retried(server, tmp_path):
    url = server.url("missing.tar.gz")
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        download(RemoteFile(url, md5="0" * 32), tmp_path / "x.tar.gz", attempts=5, **FAST)
    assert url in str(caught.value)
    assert len(server.requests) == 1


def test_500_is_retried_attempts_times_then_reported(server, librispeech_tgz, tmp_path):
    server.fail("dev-clean.tar.gz", 500)
    url = server.url("dev-clean.tar.gz")
    with pytest.raises(DownloadError, match="HTTP 500 after 3 attempts") as caught:
        download(catalog(librispeech_tgz, url), tmp_path / "dev-clean.tar.gz", attempts=3, **FAST)
    assert url in str(caught.value)
    assert len(server.requests) == 3
    assert leftovers(tmp_path) == ["www"]


def test_transient_500_then_success(server, librispeech_tgz, tmp_path):
    server.fail("dev-clean.tar.gz", 500, times=2)
    dest = tmp_path / "dev-clean.tar.gz"
    download(catalog(librispeech_tgz, server.url("dev-clean.tar.gz")), dest, attempts=3, **FAST)
    assert len(server.requests) == 3
    assert dest.read_bytes() == librispeech_tgz.read_bytes()


def test_mirror_used_when_primary_fails(server, librispeech_tgz, tmp_path):
    primary, mirror = server.url("gone/dev-clean.tar.gz"), server.url("dev-clean.tar.gz")
    record = download(catalog(librispeech_tgz, primary, mirror), tmp_path / "dev-clean.tar.gz", **FAST)
    assert record.url == mirror
    assert json.loads(marker_path(tmp_path / "dev-clean.tar.gz").read_text())["url"] == mirror
    assert [name for name, _ in server.requests] == ["gone/dev-clean.tar.gz", "dev-clean.tar.gz"]


def test_all_urls_failing_lists_each_with_its_error(server, librispeech_tgz, tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/dev-clean.tar.gz"
    missing = server.url("gone.tar.gz")
    with pytest.raises(DownloadError) as caught:
        download(catalog(librispeech_tgz, missing, closed), tmp_path / "d.tar.gz", attempts=2, **FAST)
    message = str(caught.value)
    assert f"{missing}: HTTP 404" in message
    assert closed in message and "after 2 attempts" in message


def test_missing_checksum_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="lacks a publisher checksum"):
        download(RemoteFile(server.url("dev-clean.tar.gz"), bytes=10), tmp_path / "x", **FAST)
    assert server.requests == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a 0o500 directory")
def test_unwritable_destination_is_refused_naming_the_directory(server, librispeech_tgz, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DownloadError, match="not writable") as caught:
            download(catalog(librispeech_tgz, server.url("dev-clean.tar.gz")), locked / "x.tar.gz", **FAST)
        assert str(locked) in str(caught.value)
    finally:
        locked.chmod(0o700)
    assert server.requests == []


def test_uncreatable_destination_is_refused_naming_the_directory(server, librispeech_tgz, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DownloadError, match="cannot create download directory") as caught:
        download(catalog(librispeech_tgz, server.url("dev-clean.tar.gz")), blocker / "sub" / "x.tar.gz", **FAST)
    assert str(blocker / "sub") in str(caught.value)
    assert server.requests == []


# ---------------------------------------------------------------- extraction


def test_downloaded_librispeech_tgz_extracts_to_the_corpus_layout(server, librispeech_tgz, real_data, tmp_path):
    archive = tmp_path / "dev-clean.tar.gz"
    record = download(catalog(librispeech_tgz, server.url("dev-clean.tar.gz")), archive, **FAST)
    out = tmp_path / "corpus"

    summary = extract_archive(archive, out)

    chapter = out / "LibriSpeech" / "dev-clean" / "1988" / "24833"
    flacs = sorted(chapter.glob("*.flac"))
    assert [f.stem for f in flacs] == [f"1988-24833-000{i}" for i in range(4)]
    for flac in flacs:  # lossless round trip: the samples are the original recording's
        original, _ = sf.read(real_data / "speech" / "librispeech" / f"{flac.stem}.flac", dtype="int16")
        extracted, rate = sf.read(flac, dtype="int16")
        assert rate == 16000 and np.array_equal(extracted, original)
    lines = (chapter / "1988-24833.trans.txt").read_text().splitlines()
    assert lines[0] == "1988-24833-0000 THE TWO STRAY KITTENS GRADUALLY MAKE THEMSELVES AT HOME"
    file_bytes = sum(p.stat().st_size for p in chapter.iterdir())
    assert summary == {"archive": "dev-clean.tar.gz", "format": "tar.gz", "members": 9, "bytes": file_bytes,
                       "sha256": record.sha256}  # 4 folders + 4 flac + 1 trans.txt
    assert json.loads((out / ".extracted.json").read_text()) == summary
    assert not (tmp_path / "corpus.partial").exists()


def test_rir_zip_extracts_byte_identical(rir_zip, real_data, tmp_path):
    summary = extract_archive(rir_zip, tmp_path / "rirs")
    sources = sorted((real_data / "rir").glob("*.flac"))
    assert len(sources) == 4
    for rir in sources:
        assert (tmp_path / "rirs" / "rirs" / rir.name).read_bytes() == rir.read_bytes()
    assert summary["format"] == "zip" and summary["members"] == len(sources) and summary["sha256"] is None
    assert summary["bytes"] == sum(w.stat().st_size for w in sources)
    assert (tmp_path / "rirs" / ".extracted.json").is_file()


def test_truncated_tgz_is_refused_and_leaves_nothing(librispeech_tgz, tmp_path):
    archive = tmp_path / "dev-clean.tar.gz"
    data = librispeech_tgz.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt") as caught:
        extract_archive(archive, tmp_path / "out")
    assert str(archive) in str(caught.value)
    assert leftovers(tmp_path) == ["dev-clean.tar.gz"]


def test_tar_truncated_inside_a_member_fails_during_extraction_and_cleans_up(librispeech_tgz, tmp_path):
    # plain tar: listing reads only headers, so a cut inside a member's data shows up while extracting it
    archive = tmp_path / "dev-clean.tar"
    with tarfile.open(librispeech_tgz) as tgz, tarfile.open(archive, "w") as tar:
        for member in tgz.getmembers():
            tar.addfile(member, tgz.extractfile(member) if member.isreg() else None)
    with tarfile.open(archive) as tar:
        biggest = max(tar.getmembers(), key=lambda m: m.size)
    with open(archive, "r+b") as handle:
        handle.truncate(biggest.offset_data + biggest.size // 2)
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["dev-clean.tar"]


def test_corrupt_zip_member_is_refused_and_leaves_nothing(rir_zip, tmp_path):
    data = bytearray(rir_zip.read_bytes())
    with zipfile.ZipFile(rir_zip) as zf:
        info = zf.infolist()[-1]
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle] ^= 0xFF
    archive = tmp_path / "rirs.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["rirs.zip"]


def _tar_with(path: Path, good: Path, bad: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(good, arcname="data/good.flac")  # a safe member first: it must not be written either
        tar.addfile(bad, io.BytesIO(b"pwned\n") if bad.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(b"pwned\n") if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("bad, reason", [
    (_member("../evil.txt"), "'..' component"),
    (_member("data/../../evil.txt"), "'..' component"),
    (_member("/tmp/evil.txt"), "absolute path"),
    (_member("data/link", tarfile.SYMTYPE, "../../evil.txt"), "symlink that escapes"),
    (_member("data/abs_link", tarfile.SYMTYPE, "/etc/passwd"), "symlink to an absolute path"),
    (_member("data/hard", tarfile.LNKTYPE, "../evil.txt"), "hardlink that escapes"),
    (_member("data/null", tarfile.CHRTYPE), "device or special file"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-escape", "symlink-absolute", "hardlink-escape", "device"])
def test_unsafe_tar_member_refuses_whole_archive(bad, reason, real_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar_with(work / "evil.tar.gz", real_data / "rir" / "rir_clap_seminar_room.flac", bad)
    with pytest.raises(ArchiveError, match=reason) as caught:
        extract_archive(archive, work / "out")
    assert str(archive) in str(caught.value) and repr(bad.name) in str(caught.value)
    assert leftovers(work) == ["evil.tar.gz"]
    assert leftovers(tmp_path) == ["work"]  # nothing landed beside the output either


def test_zip_with_dotdot_member_is_refused(real_data, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(real_data / "rir" / "rir_clap_seminar_room.flac", "rirs/clap.flac")
        zf.writestr("../x", b"pwned\n")
    with pytest.raises(ArchiveError, match="'\\.\\./x'.*'\\.\\.' component"):
        extract_archive(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["evil.zip"]


def test_unknown_archive_suffix_is_refused(tmp_path):
    (tmp_path / "corpus.rar").write_bytes(b"Rar!")
    with pytest.raises(ArchiveError, match="unsupported archive format"):
        extract_archive(tmp_path / "corpus.rar", tmp_path / "out")
