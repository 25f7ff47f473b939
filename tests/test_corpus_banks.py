"""Corpus banks through the workflow's entry point: catalog subsets resolved to folders, as extracted."""

from __future__ import annotations

import pytest

from asrcompress.banks import Bank
from asrcompress.catalog import load_catalog
from asrcompress.corpora.prepare import prepare_corpus_bank

from fake_corpora import make_demand, make_musan, make_rirs_noises, make_urbansound8k
from workflow_utils import REPO

CATALOG = load_catalog(REPO / "config" / "catalog.yaml")
BUILDERS = {"musan": make_musan, "urbansound8k": make_urbansound8k, "demand": make_demand,
            "rirs_noises": make_rirs_noises}


@pytest.mark.parametrize("ref, options", [
    ("musan/noise", {}),
    ("urbansound8k/all", {"exclude_classes": ["children_playing", "street_music"]}),
    ("demand/DKITCHEN", {"channel": 3}),
    ("rirs_noises/real", {}),
    ("rirs_noises/simulated", {"max_files": 2}),
])
def test_each_catalog_bank_subset_prepares_from_its_extracted_folder_and_loads(tmp_path, real_data, ref, options):
    subset = CATALOG.subset(ref, "test")
    extract_dir = tmp_path / subset.archive.extract_dir
    # DEMAND ships one zip per environment, each extracting to <ENV>/: build all, as the zips would land
    BUILDERS[subset.layout](extract_dir, real_data)
    roots = [str(tmp_path / root) for root in subset.roots]
    records = prepare_corpus_bank(subset.layout, subset.name, roots, tmp_path / "bank", options, seed=0)
    assert records
    if subset.layout == "demand":
        assert {r.id for r in records} == {"demand-DKITCHEN-ch03"}
    if subset.layout == "urbansound8k":
        assert any(r.extra["channels"] == 2 for r in records)  # the stereo clips the noise mixer downmixes
    if "exclude_classes" in options:
        assert not {r.extra["class"] for r in records} & set(options["exclude_classes"])
    if "max_files" in options:
        assert len(records) == 2
    bank = Bank.load(tmp_path / "bank" / "manifest.jsonl", 16000)
    for index in range(len(bank)):
        for channel in range(bank.channels(index)):
            wave = bank.wave(index, channel)
            assert wave.ndim == 1 and len(wave) > 0  # resampled to 16 kHz and one channel, whatever the source
        if bank.channels(index) == 2:
            expected = (bank.wave(index, 0).astype("float64") + bank.wave(index, 1)) / 2
            assert abs(bank.mono(index) - expected).max() < 1e-6


def test_musan_speech_becomes_babble_of_n_talkers_with_the_license(tmp_path, real_data):
    subset = CATALOG.subset("musan/speech", "test")
    make_musan(tmp_path / subset.archive.extract_dir, real_data)
    roots = [str(tmp_path / root) for root in subset.roots]
    records = prepare_corpus_bank("musan", "speech", roots, tmp_path / "bank", {"babble": {"talkers": 2, "files": 3,
                                  "seconds": 2}}, seed=0, name="musan-babble", license="CC BY 4.0")
    assert [r.id for r in records] == ["babble-000", "babble-001", "babble-002"]
    for record in records:
        assert len(record.extra["talkers"]) == 2 and record.duration == 2.0
        assert (tmp_path / "bank" / f"{record.id}.wav").exists()
    again = prepare_corpus_bank("musan", "speech", roots, tmp_path / "again", {"babble": {"talkers": 2, "files": 3,
                                "seconds": 2}}, seed=0, name="musan-babble")
    assert [(tmp_path / "bank" / f"{r.id}.wav").read_bytes() for r in records] == \
        [(tmp_path / "again" / f"{r.id}.wav").read_bytes() for r in again]


def test_records_without_their_own_license_get_the_datasets(tmp_path, real_data):
    subset = CATALOG.subset("urbansound8k/all", "test")
    make_urbansound8k(tmp_path / subset.archive.extract_dir, real_data)
    records = prepare_corpus_bank("urbansound8k", "all", [str(tmp_path / r) for r in subset.roots], tmp_path / "bank", {},
                                  0, license=CATALOG.datasets["urbansound8k"].license)
    assert {r.extra["license"] for r in records} == {CATALOG.datasets["urbansound8k"].license}
