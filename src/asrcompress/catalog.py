"""The data catalog: where each corpus comes from and where it lands on disk.

``config/catalog.yaml`` lists datasets, their archives (URL, mirrors, the publisher's checksum,
size) and their subsets (which archive, which folders inside it). Archives download to
``resources/downloads/<dataset>/<file name>`` and extract to ``resources/corpora/<dataset>/<archive>/``;
a subset is a list of folders in there. A subset is named ``<dataset>/<subset>`` in experiment configs.
"""

from __future__ import annotations

import dataclasses
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from .errors import ConfigError

RESOURCES = "resources"

# How a dataset's files are laid out, which decides its preparation. A dataset may override it
# with a `layout:` key (a mirror of LibriSpeech under another name, say).
LAYOUTS = {
    "librispeech": "librispeech",
    "librilight_limited": "librispeech",
    "musan": "musan",
    "urbansound8k": "urbansound8k",
    "demand": "demand",
    "rirs_noises": "rirs_noises",
}
SPEECH_LAYOUTS = ("librispeech",)
# The options of `banks.corpora.<name>` each layout understands; any other is a config error, not ignored.
BANK_OPTIONS: dict[str, frozenset[str]] = {
    "musan": frozenset({"babble"}),
    "urbansound8k": frozenset({"include_classes", "exclude_classes"}),
    "demand": frozenset({"channel"}),
    "rirs_noises": frozenset({"rooms", "max_files", "rt60_range_s"}),
    "folder": frozenset({"folder", "kind", "license", "rt60_range_s"}),
}
NOISE_LAYOUTS = ("musan", "urbansound8k", "demand")
RIR_LAYOUTS = ("rirs_noises",)


@dataclasses.dataclass(frozen=True)
class Archive:
    dataset: str
    name: str
    url: str
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    bytes: int | None = None
    advisory: tuple[str, ...] = ()  # values from third parties: checked, but a mismatch only warns

    @property
    def filename(self) -> str:
        return posixpath.basename(urlparse(self.url).path)

    @property
    def download_path(self) -> str:
        return f"{RESOURCES}/downloads/{self.dataset}/{self.filename}"

    @property
    def marker_path(self) -> str:
        """Written by the download once the file verified; the workflow's handle on the archive."""
        return f"{self.download_path}.verified.json"

    @property
    def extract_dir(self) -> str:
        return f"{RESOURCES}/corpora/{self.dataset}/{self.name}"

    def remote(self):
        from .download import RemoteFile  # requests: the workflow reads the catalogue at parse time, not this

        return RemoteFile(url=self.url, mirrors=self.mirrors, sha256=self.sha256, md5=self.md5, bytes=self.bytes,
                          advisory=self.advisory)


@dataclasses.dataclass(frozen=True)
class Subset:
    dataset: str
    name: str
    layout: str
    archive: Archive
    paths: tuple[str, ...]
    partial_transcripts: bool = False  # transcripts list utterances the archive does not ship (Libri-Light)

    @property
    def ref(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def roots(self) -> list[str]:
        """The folders of this subset, relative to the workflow's working directory."""
        return [f"{self.archive.extract_dir}/{path}".rstrip("/") for path in self.paths]


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    layout: str
    homepage: str
    license: str
    citation: str
    archives: dict[str, Archive]
    subsets: dict[str, Subset]


@dataclasses.dataclass(frozen=True)
class Catalog:
    datasets: dict[str, Dataset]
    source: str = "<catalog>"

    def subset(self, ref: str, key: str) -> Subset:
        """``<dataset>/<subset>`` as written in an experiment config; ``key`` names where it was written."""
        dataset_name, _, subset_name = str(ref).partition("/")
        dataset = self.datasets.get(dataset_name)
        if dataset is None:
            raise ConfigError(key, f"{ref!r}: no dataset {dataset_name!r} in {self.source}; "
                                   f"known: {', '.join(sorted(self.datasets))}")
        if subset_name not in dataset.subsets:
            raise ConfigError(key, f"{ref!r}: dataset {dataset_name!r} has no subset {subset_name!r}; "
                                   f"known: {', '.join(sorted(dataset.subsets))}")
        return dataset.subsets[subset_name]

    def archive_by_filename(self, dataset: str, filename: str) -> Archive:
        for archive in self.datasets[dataset].archives.values():
            if archive.filename == filename:
                return archive
        raise KeyError(f"{dataset}/{filename} is not in {self.source}")

    def archive(self, dataset: str, name: str) -> Archive:
        return self.datasets[dataset].archives[name]

    @property
    def all_archives(self) -> list[Archive]:
        return [a for d in self.datasets.values() for a in d.archives.values()]


def _require(entry: dict[str, Any], field: str, key: str) -> Any:
    if not isinstance(entry, dict) or entry.get(field) in (None, ""):
        raise ConfigError(f"{key}.{field}", "missing")
    return entry[field]


def _archive(dataset: str, name: str, entry: dict[str, Any], key: str) -> Archive:
    url = str(_require(entry, "url", key))
    if urlparse(url).scheme not in ("http", "https"):
        raise ConfigError(f"{key}.url", f"{url!r} is not an http(s) URL")
    sha256, md5 = entry.get("sha256"), entry.get("md5")
    advisory = tuple(entry.get("advisory") or ())
    unknown = sorted(set(advisory) - {"bytes", "sha256", "md5"})
    if unknown:
        raise ConfigError(f"{key}.advisory", f"{unknown}: only bytes, sha256 and md5 can be advisory")
    if not any(value and kind not in advisory for kind, value in (("sha256", sha256), ("md5", md5))):
        raise ConfigError(key, "has no publisher checksum (sha256 or md5 that is not advisory): unverified downloads are refused")
    return Archive(dataset, name, url, tuple(entry.get("mirrors") or ()), sha256 or None, md5 or None,
                   int(entry["bytes"]) if entry.get("bytes") else None, advisory)


def parse_catalog(raw: Any, source: str = "<catalog>") -> Catalog:
    """Check and load a catalog mapping; every error names the catalog key at fault."""
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise ConfigError(f"{source}: datasets", "the catalog must hold a 'datasets' mapping")
    datasets: dict[str, Dataset] = {}
    for name, entry in raw["datasets"].items():
        key = f"{source}: datasets.{name}"
        layout = entry.get("layout") or LAYOUTS.get(name)
        if layout not in LAYOUTS.values():
            raise ConfigError(f"{key}.layout", f"{layout!r} is not a known layout: {', '.join(sorted(set(LAYOUTS.values())))}")
        archives = {a: _archive(name, a, e, f"{key}.archives.{a}") for a, e in (_require(entry, "archives", key)).items()}
        subsets = {}
        for subset_name, subset in _require(entry, "subsets", key).items():
            skey = f"{key}.subsets.{subset_name}"
            archive_name = _require(subset, "archive", skey)
            if archive_name not in archives:
                raise ConfigError(f"{skey}.archive", f"{archive_name!r} is not an archive of {name}")
            paths = tuple(subset.get("paths") or ("",))
            if any(Path(p).is_absolute() or ".." in Path(p).parts for p in paths):
                raise ConfigError(f"{skey}.paths", "paths must stay inside the extracted archive")
            subsets[subset_name] = Subset(name, subset_name, layout, archives[archive_name], paths,
                                          bool(entry.get("partial_transcripts", False)))
        datasets[name] = Dataset(name, layout, str(entry.get("homepage", "")), str(entry.get("license", "")),
                                 str(entry.get("citation", "")), archives, subsets)
    return Catalog(datasets, source)


def load_catalog(path: str | Path) -> Catalog:
    path = Path(path)
    if not path.exists():
        raise ConfigError("catalog", f"catalog file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("catalog", f"{path} is not valid YAML ({err})") from err
    return parse_catalog(raw, str(path))
