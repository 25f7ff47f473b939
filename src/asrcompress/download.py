"""Downloads that resume, retry and verify, and archive extraction that refuses unsafe members.

:func:`download` fetches a catalog entry (:class:`RemoteFile`) into ``<dest>.part``, resuming with HTTP
``Range`` after a dropped connection and retrying server errors with exponential back-off, then checks its
size and checksums before renaming it onto ``dest`` and writing ``<dest>.verified.json``. Data without a
checksum is never accepted, so a file at ``dest`` is always one that matched the catalog.

:func:`extract_archive` lists every member first and refuses the whole archive if any member could write
outside the output folder; it extracts into a staging folder that replaces the output only on success.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import posixpath
import stat
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import requests

from .errors import PipelineError
from .io import atomic_directory, read_json, write_json

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 30.0
_RETRY_STATUS = frozenset({408, 425, 429})  # 4xx answers that mean "try again later", like 5xx
_CORRUPT_ERRORS = (tarfile.ReadError, EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile)
_ARCHIVE_FORMATS = ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.bz2", "tar.bz2"), (".tar", "tar"), (".zip", "zip"))
_TAR_MODES = {"tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar": "r:"}


class DownloadError(PipelineError):
    """A file could not be fetched, or what was fetched does not match its catalog entry."""


class ArchiveError(PipelineError):
    """An archive is truncated, corrupt, of unknown format, or has a member that would escape the output."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A catalog entry: where a file lives and what it must hash to."""

    url: str
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    bytes: int | None = None  # expected size, when the publisher states it
    # Checks whose expected value comes from a third party, not the publisher: a mismatch is logged, not fatal,
    # so one wrong community value cannot block a download the publisher's own checksum vouches for.
    advisory: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)

    @property
    def binding_size(self) -> int | None:
        """The size a transfer must reach before it is complete, when a publisher states it."""
        return None if "bytes" in self.advisory else self.bytes


@dataclasses.dataclass(frozen=True)
class DownloadRecord:
    """What was verified about a downloaded file; stored as its JSON marker."""

    url: str
    path: str
    bytes: int
    sha256: str
    md5: str
    verified: list[str]  # the checks that were made, e.g. ["bytes", "sha256"]


class _Retry(Exception):
    """A failure worth another attempt on the same URL (dropped connection, 5xx, 429)."""


class _GiveUp(Exception):
    """A failure that another attempt on the same URL will not fix (404, 403, bad URL)."""


def marker_path(dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".verified.json")


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# ---------------------------------------------------------------- verification


def _digests(path: Path) -> tuple[int, str, str]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha256.hexdigest(), md5.hexdigest()


def _expected(remote: RemoteFile) -> dict[str, str | int]:
    checks: dict[str, str | int] = {}
    if remote.bytes is not None:
        checks["bytes"] = remote.bytes
    if remote.sha256:
        checks["sha256"] = remote.sha256.strip().lower()
    if remote.md5:
        checks["md5"] = remote.md5.strip().lower()
    return checks


def _check(path: Path, remote: RemoteFile, source: str) -> DownloadRecord:
    """Hash ``path`` and compare with ``remote``; ``source`` (a URL or path) is named in the error."""
    size, sha256, md5 = _digests(path)
    actual: dict[str, str | int] = {"bytes": size, "sha256": sha256, "md5": md5}
    expected = _expected(remote)
    wrong = {key: f"{key} expected {value}, got {actual[key]}" for key, value in expected.items() if actual[key] != value}
    binding = [message for key, message in wrong.items() if key not in remote.advisory]
    if binding:
        raise DownloadError(f"{source}: does not match its catalog entry: {'; '.join(binding)}")
    for key, message in wrong.items():
        log.warning("%s: third-party %s does not match (the publisher's checksum does): %s", source, key, message)
    verified = [key for key in expected if key not in wrong]
    return DownloadRecord(url=remote.url, path=str(path), bytes=size, sha256=sha256, md5=md5, verified=verified)


def verify_file(path: str | os.PathLike[str], remote: RemoteFile) -> DownloadRecord:
    """Check size and checksums of a local file against ``remote``; raise :class:`DownloadError` on mismatch."""
    path = Path(path)
    _require_checksum(remote)
    if not path.is_file():
        raise DownloadError(f"{path}: no such file to verify")
    return _check(path, remote, str(path))


def _require_checksum(remote: RemoteFile) -> None:
    binding = [k for k in ("sha256", "md5") if getattr(remote, k) and k not in remote.advisory]
    if not binding:
        raise DownloadError(f"{remote.url}: catalog entry lacks a publisher checksum (sha256 or md5 not marked "
                            "advisory); refusing unverified data")


def _require_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create download directory {directory}: {exc.strerror or exc}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DownloadError(f"download directory {directory} is not writable")


def _recorded(dest: Path, remote: RemoteFile) -> DownloadRecord | None:
    """The marker's record if it vouches for ``dest`` as it is now and for the catalog entry as it is now."""
    marker = marker_path(dest)
    if not marker.is_file():
        return None
    try:
        record = DownloadRecord(**read_json(marker))
    except (ValueError, TypeError):
        return None  # unreadable or from another version: verify again rather than trust it
    actual = {"bytes": record.bytes, "sha256": record.sha256, "md5": record.md5}
    binding = {k: v for k, v in _expected(remote).items() if k not in remote.advisory}
    if record.bytes != dest.stat().st_size or any(actual[k] != v for k, v in binding.items()):
        return None
    return record


def _write_marker(dest: Path, record: DownloadRecord) -> DownloadRecord:
    record = dataclasses.replace(record, path=str(dest))
    write_json(marker_path(dest), dataclasses.asdict(record))
    return record


# ---------------------------------------------------------------- transfer


class _Progress:
    """Logs every tenth of a known size, or every 30 s, never per chunk."""

    def __init__(self, url: str, done: int, total: int | None) -> None:
        self.url, self.done, self.total = url, done, total
        self.tenth = self._tenth()
        self.last_log = time.monotonic()

    def _tenth(self) -> int:
        return 10 * self.done // self.total if self.total else 0

    def add(self, n: int) -> None:
        self.done += n
        tenth, now = self._tenth(), time.monotonic()
        if tenth > self.tenth or now - self.last_log >= _PROGRESS_EVERY_S:
            self.tenth, self.last_log = tenth, now
            percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            log.info("%s: %d bytes%s", self.url, self.done, percent)


def _get(session: requests.Session, url: str, offset: int, timeout_s: float) -> requests.Response:
    # identity: a server that gzips a .tar.gz on the fly would otherwise hand us different bytes
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return session.get(url, headers=headers, stream=True, timeout=(timeout_s, timeout_s))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retry(f"connection failed: {exc}") from exc
    except requests.RequestException as exc:
        raise _GiveUp(str(exc)) from exc


def _range_start(response: requests.Response) -> int | None:
    # "bytes 100-999/1000" -> 100
    value = response.headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    start = spec.split("-", 1)[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _write_body(response: requests.Response, part: Path, offset: int, chunk_bytes: int, url: str) -> None:
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    progress = _Progress(url, offset, offset + expected if expected is not None else None)
    written = 0
    try:
        with open(part, "ab" if offset else "wb") as handle:
            for chunk in response.iter_content(chunk_size=chunk_bytes):
                handle.write(chunk)
                written += len(chunk)
                progress.add(len(chunk))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _Retry(f"connection dropped after {offset + written} bytes: {exc}") from exc
    except OSError as exc:
        raise DownloadError(f"{part}: cannot write download: {exc}") from exc
    if expected is not None and written < expected:
        raise _Retry(f"body ended after {offset + written} of {offset + expected} bytes")


def _transfer(session: requests.Session, url: str, part: Path, remote: RemoteFile, timeout_s: float,
              chunk_bytes: int) -> None:
    """One attempt: fetch the rest of ``url`` onto ``part``, resuming from what is already there."""
    offset = part.stat().st_size if part.exists() else 0
    response = _get(session, url, offset, timeout_s)
    with response:
        status = response.status_code
        if status == 416 and offset:
            # The part may already be whole (we died between the last byte and the rename).
            try:
                _check(part, remote, url)
                log.info("%s: server has nothing past byte %d and the part verifies", url, offset)
                return
            except DownloadError:
                part.unlink()
                raise _Retry(f"HTTP 416 for a part of {offset} bytes that does not verify; restarting") from None
        if status == 206:
            if _range_start(response) != offset:
                part.unlink()
                raise _Retry(f"HTTP 206 answered a different range ({response.headers.get('Content-Range')})")
        elif status == 200:
            if offset:
                log.info("%s: server ignored the Range request; restarting from byte 0", url)
            offset = 0
        elif status >= 500 or status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}")
        else:
            raise _GiveUp(f"HTTP {status}")
        _write_body(response, part, offset, chunk_bytes, url)


def _fetch(session: requests.Session, url: str, part: Path, remote: RemoteFile, *, attempts: int, backoff_s: float,
           timeout_s: float, chunk_bytes: int) -> None:
    """Up to ``attempts`` tries on one URL; raises :class:`_GiveUp` with the last error when they are spent."""
    last = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        offset = part.stat().st_size if part.exists() else 0
        log.info("%s: attempt %d/%d%s", url, attempt + 1, attempts, f", resuming at byte {offset}" if offset else "")
        try:
            _transfer(session, url, part, remote, timeout_s, chunk_bytes)
            size = part.stat().st_size if part.exists() else 0
            if remote.binding_size is not None and size < remote.binding_size:
                raise _Retry(f"body ended after {size} of {remote.binding_size} bytes")
        except _GiveUp as exc:
            log.warning("%s: %s; not retrying this URL", url, exc)
            raise
        except _Retry as exc:
            last = str(exc)
            log.warning("%s: attempt %d/%d failed: %s", url, attempt + 1, attempts, last)
            continue
        log.info("%s: transfer complete (%d bytes)", url, part.stat().st_size)
        return
    raise _GiveUp(f"{last} after {attempts} attempts")


def download(remote: RemoteFile, dest: str | os.PathLike[str], *, attempts: int = 5, backoff_s: float = 2.0,
             timeout_s: float = 60.0, chunk_bytes: int = 1 << 16,
             session: requests.Session | None = None) -> DownloadRecord:
    """Fetch ``remote`` (its URL, then each mirror) to ``dest``, verified; a no-op if ``dest`` is already verified.

    A ``dest`` without a marker is verified in place (and fetched again if it does not match).
    Raises :class:`DownloadError` naming every URL tried and its last error, or naming the URL whose bytes
    did not match the catalog entry (then nothing is left at ``dest``).
    """
    dest = Path(dest)
    _require_checksum(remote)
    _require_writable_dir(dest.parent)
    if dest.is_file():
        record = _recorded(dest, remote)
        if record is not None:
            log.info("%s: already downloaded and verified", dest)
            return record
        try:
            return _write_marker(dest, _check(dest, remote, str(dest)))
        except DownloadError as exc:
            log.warning("%s; downloading it again", exc)
            marker_path(dest).unlink(missing_ok=True)
            dest.unlink()
    part = _part_path(dest)
    failures: list[str] = []
    own_session = session is None
    session = session or requests.Session()
    try:
        for url in remote.urls:
            try:
                _fetch(session, url, part, remote, attempts=attempts, backoff_s=backoff_s, timeout_s=timeout_s,
                       chunk_bytes=chunk_bytes)
            except _GiveUp as exc:
                failures.append(f"{url}: {exc}")
                continue
            try:
                record = _check(part, remote, url)
            except DownloadError as exc:  # corrupt in transit or on this server: another mirror may be right
                part.unlink(missing_ok=True)
                failures.append(str(exc))
                continue
            os.replace(part, dest)
            return _write_marker(dest, dataclasses.replace(record, url=url))
    finally:
        if own_session:
            session.close()
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


# ---------------------------------------------------------------- extraction


def archive_format(archive: str | os.PathLike[str]) -> str:
    """``tar.gz``, ``tar.bz2``, ``tar`` or ``zip``, from the file name."""
    name = Path(archive).name.lower()
    for suffix, kind in _ARCHIVE_FORMATS:
        if name.endswith(suffix):
            return kind
    known = ", ".join(suffix for suffix, _ in _ARCHIVE_FORMATS)
    raise ArchiveError(f"{archive}: unsupported archive format (expected one of {known})")


def _escapes(relative: str) -> bool:
    normal = posixpath.normpath(relative)
    return normal == ".." or normal.startswith("../")


def _unsafe_name(name: str) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        return "has an absolute path"
    if ".." in parts:
        return "has a '..' component"
    return None


def _unsafe_tar_member(member: tarfile.TarInfo) -> str | None:
    if reason := _unsafe_name(member.name):
        return reason
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or special file"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        if posixpath.isabs(member.linkname):
            return f"is a {kind} to an absolute path ({member.linkname})"
        # symlinks are relative to their folder, hardlinks to the archive root
        base = posixpath.dirname(member.name) if member.issym() else ""
        if _escapes(posixpath.join(base, member.linkname)):
            return f"is a {kind} that escapes the output folder ({member.linkname})"
    return None


def _unsafe_zip_member(info: zipfile.ZipInfo) -> str | None:
    if reason := _unsafe_name(info.filename):
        return reason
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symlink (not supported in zip archives)"
    return None


def _refuse(archive: Path, name: str, reason: str) -> ArchiveError:
    return ArchiveError(f"{archive}: refusing to extract: member {name!r} {reason}")


def _summary(archive: Path, kind: str, members: int, total: int) -> dict[str, Any]:
    sha256 = None
    marker = marker_path(archive)
    if marker.is_file():
        try:
            sha256 = read_json(marker).get("sha256")
        except ValueError:
            pass  # a broken marker only costs the provenance field
    return {"archive": archive.name, "format": kind, "members": members, "bytes": total, "sha256": sha256}


def _extract_tar(archive: Path, kind: str, out_dir: Path) -> dict[str, Any]:
    """One streaming pass (a 30 GB .tar.gz is decompressed once): each member is checked, then extracted into
    the staging folder; a refused member or a truncation anywhere discards the staging folder whole."""
    members, total = 0, 0
    with tarfile.open(archive, _TAR_MODES[kind]) as tar, atomic_directory(out_dir) as staging:
        for member in tar:
            if reason := _unsafe_tar_member(member):
                raise _refuse(archive, member.name, reason)
            # the data filter re-checks against the real folder, catching link chains a name check cannot see
            tar.extract(member, staging, filter="data")
            members += 1
            total += member.size if member.isreg() else 0
        summary = _summary(archive, kind, members, total)
        write_json(staging / ".extracted.json", summary)
    return summary


def _extract_zip(archive: Path, kind: str, out_dir: Path) -> dict[str, Any]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            if reason := _unsafe_zip_member(info):
                raise _refuse(archive, info.filename, reason)
        summary = _summary(archive, kind, len(infos), sum(info.file_size for info in infos if not info.is_dir()))
        with atomic_directory(out_dir) as staging:
            zf.extractall(staging)  # checks each member's CRC as it goes
            write_json(staging / ".extracted.json", summary)
    return summary


def extract_archive(archive: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Extract a .tar.gz/.tgz/.tar.bz2/.tar/.zip into ``out_dir``, all or nothing.

    Returns ``{archive, format, members, bytes, sha256}`` (also written as ``out_dir/.extracted.json``).
    Raises :class:`ArchiveError` for an unsafe member or a truncated or corrupt archive; either way no
    ``out_dir`` and no staging folder is left.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    kind = archive_format(archive)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive")
    extract = _extract_zip if kind == "zip" else _extract_tar
    try:
        summary = extract(archive, kind, out_dir)
    except tarfile.FilterError as exc:
        raise _refuse(archive, exc.tarinfo.name, f"was refused by the tar data filter ({exc})") from exc
    except _CORRUPT_ERRORS as exc:
        raise ArchiveError(f"{archive}: truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    log.info("%s: extracted %d members (%d bytes) to %s", archive, summary["members"], summary["bytes"], out_dir)
    return summary
