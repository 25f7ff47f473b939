"""The real-corpus code paths end to end: archives in the publishers' layouts, built from real
recordings, served over loopback HTTP with injected faults, downloaded, verified, extracted and
prepared by the workflow; a tiny SSL checkpoint loaded with from_pretrained from a local folder.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fake_corpora import librispeech_transcripts, make_librispeech, make_musan, make_rirs_noises, make_urbansound8k
from helpers import TINY_ARCHITECTURE, tiny_model
from http_server import LoopbackServer
from workflow_utils import planned_jobs, snakemake, workflow_copy

SPLITS = {
    "train-clean-100": ["1988-24833-0000", "1988-24833-0001", "1988-24833-0002", "1988-24833-0003",
                        "2412-153948-0000", "2412-153948-0001", "2412-153948-0002"],
    "dev-clean": ["1088-134315-0000"],
    "test-clean": ["3752-4944-0000", "3752-4944-0001", "3752-4944-0002", "1272-141231-0002"],
}


def _tar(source_root: Path, member: str, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source_root / member, arcname=member)


def _zip(source_root: Path, member: str, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((source_root / member).rglob("*")):
            zf.write(path, path.relative_to(source_root).as_posix())


def _entry(server: LoopbackServer, archive: Path) -> dict:
    data = archive.read_bytes()
    return {"url": server.url(archive.name), "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(), "bytes": len(data)}


def _build_www(www: Path, staging: Path, real_data: Path) -> None:
    www.mkdir()
    for subset, ids in SPLITS.items():
        make_librispeech(staging / subset, real_data, subset, ids)
        _tar(staging / subset, "LibriSpeech", www / f"{subset}.tar.gz")
    make_musan(staging / "musan", real_data)
    _tar(staging / "musan", "musan", www / "musan.tar.gz")
    make_urbansound8k(staging / "us8k", real_data)
    _tar(staging / "us8k", "UrbanSound8K", www / "UrbanSound8K.tar.gz")
    make_rirs_noises(staging / "rirs", real_data)
    _zip(staging / "rirs", "RIRS_NOISES", www / "rirs_noises.zip")


def _catalog(server: LoopbackServer, www: Path) -> dict:
    librispeech = {name: _entry(server, www / f"{name}.tar.gz") for name in SPLITS}
    return {"datasets": {
        "librispeech": {"license": "CC BY 4.0", "citation": "Panayotov et al. 2015", "archives": librispeech,
                        "subsets": {n: {"archive": n, "paths": [f"LibriSpeech/{n}"]} for n in SPLITS}},
        "musan": {"archives": {"musan": _entry(server, www / "musan.tar.gz")},
                  "subsets": {"noise": {"archive": "musan", "paths": ["musan/noise"]}}},
        "urbansound8k": {"archives": {"UrbanSound8K": _entry(server, www / "UrbanSound8K.tar.gz")},
                         "subsets": {"all": {"archive": "UrbanSound8K", "paths": ["UrbanSound8K"]}}},
        "rirs_noises": {"archives": {"rirs_noises": _entry(server, www / "rirs_noises.zip")},
                        "subsets": {"real": {"archive": "rirs_noises", "paths": ["RIRS_NOISES/real_rirs_isotropic_noises"]}}},
    }}


def _save_checkpoints(root: Path) -> tuple[Path, Path]:
    """A pretrained-only SSL model (as on a hub) and a fine-tuned CTC model with its processor."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from asrcompress.models import save_model_dir

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_ARCHITECTURE)).save_pretrained(str(root / "ssl"))
    model, processor = tiny_model()
    save_model_dir(model, processor, root / "ctc")
    return root / "ssl", root / "ctc"


def _config(ssl: Path, ctc: Path) -> dict:
    return {
        "seed": 0,
        "catalog": "config/test_catalog.yaml",
        "corpus": {"kind": "catalog", "splits": {
            "train": {"subsets": ["librispeech/train-clean-100"]},
            "dev": {"subsets": ["librispeech/dev-clean"]},
            "test": {"subsets": ["librispeech/test-clean"]},
        }},
        "banks": {"corpora": {
            "musan-noise": {"subset": "musan/noise"},
            "us8k": {"subset": "urbansound8k/all", "exclude_classes": ["children_playing", "street_music"]},
            "slr28-real": {"subset": "rirs_noises/real"},
        }},
        "conditions": {
            "clean": True,
            "noise": {"types": ["musan-noise"], "snr_db": [10]},
            "reverb": {"rooms": ["slr28-real"]},
            "random": {"pimentel": {"noise": ["musan-noise", "us8k"], "rir": "slr28-real"}},
        },
        "models": {
            "ssl-tiny": {"init": "pretrained", "pretrained_id": str(ssl)},
            "ctc-tiny": {"init": "pretrained", "pretrained_id": str(ctc), "finetune": False},
        },
        "finetune": {"steps": 4, "batch_seconds": 20, "learning_rate": 0.001, "warmup_steps": 1, "eval_every": 4,
                     "checkpoint_every": 2},
        "compression": [{"method": "none"}, {"method": "dynamic_int8"}],
        "decode": {"batch_seconds": 30},
        "score": {"bootstrap_resamples": 50},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("real")
    _build_www(root / "www", root / "staging", real_data)
    with LoopbackServer(root / "www") as server:
        yield root, server


@pytest.fixture(scope="module")
def finished(served):
    root, server = served
    (root / "work").mkdir()
    workdir = workflow_copy(root / "work")
    (workdir / "config" / "test_catalog.yaml").write_text(yaml.safe_dump(_catalog(server, root / "www")))
    ssl, ctc = _save_checkpoints(root / "checkpoints")
    config = _config(ssl, ctc)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # Faults on the way: the test set's connection drops mid-file; MUSAN's server fails once.
    server.drop_after("test-clean.tar.gz", 300_000)
    server.fail("musan.tar.gz", 500, times=1)
    result = snakemake(workdir, timeout=1200)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir, server, config, ctc


@pytest.mark.slow
def test_downloads_resume_after_a_drop_retry_after_a_500_and_are_verified(finished):
    workdir, server, _, _ = finished
    requests = server.requests
    resumed = [asked for name, asked in requests if name == "test-clean.tar.gz" and asked]
    assert resumed and int(resumed[0].removeprefix("bytes=").rstrip("-")) > 0
    assert [name for name, _ in requests].count("musan.tar.gz") == 2
    for archive in (workdir / "resources" / "downloads").rglob("*.verified.json"):
        record = json.loads(archive.read_text())
        data = (workdir / record["path"]).read_bytes()  # an absolute record path stays absolute under /
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert "sha256" in record["verified"] and "md5" in record["verified"]
    assert not list((workdir / "resources").rglob("*.part")) and not list((workdir / "resources").rglob("*.partial"))


@pytest.mark.slow
def test_prepared_splits_point_at_the_extracted_flac_with_their_transcripts(finished, real_data):
    workdir = finished[0]
    texts = {utt: text for utt, (_, text) in librispeech_transcripts(real_data).items()}
    for split, subset in [("train", "train-clean-100"), ("dev", "dev-clean"), ("test", "test-clean")]:
        rows = [json.loads(line) for line in (workdir / "results" / "data" / split / "manifest.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(SPLITS[subset])
        for row in rows:
            assert row["path"].startswith(f"resources/corpora/librispeech/{subset}/LibriSpeech/{subset}/")
            assert row["path"].endswith(".flac") and (workdir / row["path"]).exists()
            assert row["text"] == texts[row["id"]] and row["subset"] == f"librispeech/{subset}"


@pytest.mark.slow
def test_corpus_banks_and_the_random_protocol(finished):
    workdir = finished[0]
    us8k = [json.loads(line) for line in (workdir / "results/banks/noise/us8k/manifest.jsonl").read_text().splitlines()]
    assert us8k and not {r["class"] for r in us8k} & {"children_playing", "street_music"}
    rirs = [json.loads(line) for line in (workdir / "results/banks/rir/slr28-real/manifest.jsonl").read_text().splitlines()]
    assert any(r["channels"] == 2 for r in rirs)
    rows = [json.loads(line) for line in (workdir / "results/conditions/random/pimentel/manifest.jsonl").read_text().splitlines()]
    assert len(rows) == len(SPLITS["test-clean"])
    for row in rows:
        assert row["drawn_kind"] in ("clean", "noise", "reverb", "noise+reverb")
        if "noise" in row["drawn_kind"]:
            assert 0 <= row["snr_db_target"] <= 20 and abs(row["snr_db_measured"] - row["snr_db_target"]) < 0.1
        if "reverb" in row["drawn_kind"]:
            assert row["rir"] in {r["id"] for r in rirs}


@pytest.mark.slow
def test_table_has_both_models_and_the_as_is_model_kept_its_weights(finished):
    workdir, _, config, ctc = finished
    table = pd.read_csv(workdir / "results" / "tables" / "wer.csv")
    assert set(table["model"]) == {"ssl-tiny", "ctc-tiny"}
    assert set(table["condition"]) == {"clean", "noise/musan-noise/10", "reverb/slr28-real", "random/pimentel"}
    assert len(table) == 2 * 2 * 4 and (table["n_utts"] == len(SPLITS["test-clean"])).all()
    assert set(table["subset"]) == {"all"}  # one test subset: no per-subset copy of the same rows
    trained = json.loads((workdir / "results/models/ssl-tiny/baseline/card.json").read_text())
    assert trained["finetuned"] and trained["result"]["steps"] == 4
    as_is = json.loads((workdir / "results/models/ctc-tiny/baseline/card.json").read_text())
    assert as_is["finetuned"] is False and as_is["result"] is None
    from safetensors.torch import load_file

    saved, original = (load_file(str(p / "model.safetensors")) for p in (workdir / "results/models/ctc-tiny/baseline", ctc))
    assert saved.keys() == original.keys() and all(torch.equal(saved[k], original[k]) for k in saved)


@pytest.mark.slow
def test_touched_downloads_and_corpora_trigger_no_rerun(finished):
    workdir = finished[0]
    for path in (workdir / "resources").glob("*/*/*"):
        path.touch()
    assert planned_jobs(workdir) == []


def _data_only_workdir(served, tmp_path: Path, **test_clean: str) -> tuple[Path, dict]:
    """A fresh workflow copy whose catalog entry for test-clean is overridden by ``test_clean``."""
    root, server = served
    (tmp_path / "work").mkdir()
    workdir = workflow_copy(tmp_path / "work")
    catalog = _catalog(server, root / "www")
    catalog["datasets"]["librispeech"]["archives"]["test-clean"].update(test_clean)
    (workdir / "config" / "test_catalog.yaml").write_text(yaml.safe_dump(catalog))
    config = _config(tmp_path, tmp_path)
    config["models"] = {"m": {"init": "scratch", "architecture": TINY_ARCHITECTURE}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir, catalog


@pytest.mark.slow
def test_a_checksum_mismatch_stops_the_download_and_leaves_nothing(served, tmp_path):
    server = served[1]
    workdir, _ = _data_only_workdir(served, tmp_path, sha256="0" * 64)
    result = snakemake(workdir, "resources/corpora/librispeech/test-clean")
    assert result.returncode != 0
    log = (workdir / "logs" / "download" / "librispeech" / "test-clean.tar.gz.log").read_text()
    assert "sha256" in log and "0" * 64 in log and server.url("test-clean.tar.gz") in log
    downloads = workdir / "resources" / "downloads" / "librispeech"
    assert not downloads.exists() or list(downloads.iterdir()) == []  # no archive, no .part, no marker
    assert not (workdir / "resources" / "corpora" / "librispeech" / "test-clean").exists()


@pytest.mark.slow
def test_an_archive_copied_in_by_hand_is_verified_in_place_without_network(served, tmp_path):
    """The offline route: archives fetched elsewhere and copied into resources/downloads/."""
    root = served[0]
    # the discard port: nothing listens there
    workdir, catalog = _data_only_workdir(served, tmp_path, url="http://127.0.0.1:9/test-clean.tar.gz")
    copied = workdir / "resources" / "downloads" / "librispeech" / "test-clean.tar.gz"
    copied.parent.mkdir(parents=True)
    copied.write_bytes((root / "www" / "test-clean.tar.gz").read_bytes())
    result = snakemake(workdir, "resources/corpora/librispeech/test-clean")
    assert result.returncode == 0, result.stderr[-3000:]
    assert copied.read_bytes() == (root / "www" / "test-clean.tar.gz").read_bytes()
    record = json.loads((copied.parent / "test-clean.tar.gz.verified.json").read_text())
    assert record["sha256"] == catalog["datasets"]["librispeech"]["archives"]["test-clean"]["sha256"]
    log = (workdir / "logs" / "download" / "librispeech" / "test-clean.tar.gz.log").read_text()
    assert "attempt" not in log  # verified in place: no HTTP request was tried
    assert sorted(p.name for p in (workdir / "resources/corpora/librispeech/test-clean/LibriSpeech/test-clean").iterdir())
