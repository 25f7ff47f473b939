"""The data catalog and the config checks that use it."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from asrcompress.catalog import LAYOUTS, load_catalog, parse_catalog
from asrcompress.config import build_grid
from asrcompress.errors import ConfigError

from workflow_utils import REPO

CATALOG = REPO / "config" / "catalog.yaml"
STUDY = yaml.safe_load((REPO / "config" / "studies" / "E1_pimentel.yaml").read_text())


def test_shipped_catalog_covers_the_issue_corpora_with_checksums():
    catalog = load_catalog(CATALOG)
    assert set(catalog.datasets) == set(LAYOUTS)
    librispeech = catalog.datasets["librispeech"]
    assert set(librispeech.subsets) == {"dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
                                        "train-clean-360", "train-other-500"}
    assert set(catalog.datasets["librilight_limited"].subsets) == {"10h", "1h", "10min"}
    assert {"noise", "music", "speech"} <= set(catalog.datasets["musan"].subsets)
    assert {"real", "simulated"} <= set(catalog.datasets["rirs_noises"].subsets)
    for archive in catalog.all_archives:
        assert archive.url.startswith("https://") and (archive.md5 or archive.sha256), archive
        assert archive.download_path == f"resources/downloads/{archive.dataset}/{archive.filename}"
    for dataset in catalog.datasets.values():
        assert dataset.license and dataset.citation and dataset.homepage, dataset.name
    test_clean = catalog.subset("librispeech/test-clean", "k")
    assert test_clean.roots == ["resources/corpora/librispeech/test-clean/LibriSpeech/test-clean"]
    assert test_clean.archive.sha256 and len(test_clean.archive.sha256) == 64 and test_clean.archive.bytes > 3e8


def _raw():
    return yaml.safe_load(CATALOG.read_text())


@pytest.mark.parametrize("break_it, key", [
    (lambda d: d["librispeech"]["archives"]["dev-clean"].update(md5=None, sha256=None), "archives.dev-clean"),
    (lambda d: d["librispeech"]["archives"]["dev-clean"].update(url="ftp://x/dev-clean.tar.gz"), "dev-clean.url"),
    (lambda d: d["librispeech"]["archives"]["dev-clean"].pop("url"), "dev-clean.url"),
    (lambda d: d["librispeech"]["subsets"]["dev-clean"].update(archive="nope"), "subsets.dev-clean.archive"),
    (lambda d: d["musan"]["subsets"]["noise"].update(paths=["../etc"]), "subsets.noise.paths"),
    (lambda d: d.update(mystery={"archives": {}, "subsets": {}}), "datasets.mystery.layout"),
])
def test_catalog_errors_name_the_entry(break_it, key):
    raw = _raw()
    break_it(raw["datasets"])
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_catalog(raw, "catalog.yaml")


@pytest.mark.parametrize("break_it, key, message", [
    (lambda c: c["corpus"]["splits"]["test"].update(subsets=["librispeech/test-cleen"]), "corpus.splits.test.subsets[0]",
     "no subset 'test-cleen'"),
    (lambda c: c["corpus"]["splits"]["test"].update(subsets=["musan/noise"]), "corpus.splits.test.subsets[0]",
     "not transcribed speech"),
    (lambda c: c["banks"]["corpora"]["us8k"].update(subset="librispeech/dev-clean"), "banks.corpora.us8k.subset",
     "not a noise or RIR subset"),
    (lambda c: c["conditions"]["noise"].update(types=["musan-nois"]), "conditions", "noise bank 'musan-nois' is unknown"),
    (lambda c: c["conditions"]["reverb"].update(rooms=["slr28-reel"]), "conditions", "RIR bank 'slr28-reel' is unknown"),
    (lambda c: c["conditions"]["random"]["pimentel"].update(rir="nowhere"), "conditions.random.pimentel",
     "RIR bank 'nowhere'"),
    (lambda c: c["models"]["w2v2-large-robust-ft960"].pop("finetune"), "corpus.splits", "give train and dev"),
    (lambda c: c["banks"]["corpora"]["musan-noise"].update(babble={"talkers": 3}), "banks.corpora.musan-noise.babble",
     "babble is made from speech"),
])
def test_study_config_errors_name_the_key(break_it, key, message):
    config = copy.deepcopy(STUDY)
    break_it(config)
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}'.*{re.escape(message)}"):
        build_grid(config, load_catalog(CATALOG))
