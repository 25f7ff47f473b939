"""The five study configurations and the one beyond them: valid, and a dry run plans the whole DAG once their
downloads exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asrcompress.catalog import load_catalog
from asrcompress.config import build_grid, check_schema
from asrcompress.models import ModelSpec

from workflow_utils import REPO, planned_jobs, workflow_copy

STUDIES = sorted((REPO / "config" / "studies").glob("E*.yaml"))
PAPER_CONFIGS = [*STUDIES, REPO / "config" / "studies" / "beyond.yaml"]  # beyond: every method, one grid
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _grid(path: Path):
    config = yaml.safe_load(path.read_text())
    check_schema(config, SCHEMA)
    return config, build_grid(config, load_catalog(REPO / config["catalog"]))


def test_there_are_five_studies():
    assert [p.stem.split("_")[0] for p in STUDIES] == ["E1", "E2", "E3", "E4", "E5"]


def _fake_resources(workdir: Path, config: dict, grid) -> None:
    """What the download, extract and fetch_model rules would leave, as empty stand-ins."""
    for archive in grid.archives:
        (workdir / archive.download_path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / archive.download_path).touch()
        (workdir / f"{archive.download_path}.verified.json").write_text("{}")
        (workdir / archive.extract_dir).mkdir(parents=True, exist_ok=True)
    for name, entry in config["models"].items():
        spec = ModelSpec.from_config(name, entry)
        if spec.init == "pretrained" and not spec.is_local:
            (workdir / spec.source).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("study", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_study_dry_run_plans_everything_but_the_downloads(tmp_path, study):
    config, grid = _grid(study)
    workdir = workflow_copy(tmp_path)
    _fake_resources(workdir, config, grid)
    jobs = planned_jobs(workdir, "--configfile", f"config/studies/{study.name}")
    rules = {rule for rule, _ in jobs}
    assert not rules & {"download", "extract", "fetch_model", "demo_corpus"}, rules
    assert {"prepare_split", "corpus_bank", "augment", "finetune", "compress", "decode", "score", "aggregate"} <= rules
    n_cells = len(grid.models) * len(grid.variants) * len(grid.conditions)
    assert sum(rule == "decode" for rule, _ in jobs) == n_cells
    if study.stem == "beyond":  # the largest configuration, the one the dry-run benchmark times
        assert len(jobs) >= 1000 and len(grid.variants) >= 35 and n_cells >= 900
        assert sum(rule == "score" for rule, _ in jobs) == len(grid.variants)  # score.one_job_per: variant
    fine_tunes = any(entry.get("finetune", True) for entry in config["models"].values())
    needs = {"test"}
    if fine_tunes or any(v.trains for v in grid.variants):
        needs |= {"train", "dev"}
    if any(v.needs_training_data for v in grid.variants):  # calibration reads the train split only
        needs.add("train")
    assert {wc for rule, wc in jobs if rule == "prepare_split"} == {f"split={split}" for split in needs}


@pytest.mark.parametrize("study", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_study_without_downloads_plans_them_from_the_catalog(tmp_path, study):
    config, grid = _grid(study)
    workdir = workflow_copy(tmp_path)
    jobs = planned_jobs(workdir, "--configfile", f"config/studies/{study.name}")
    downloads = {wc for rule, wc in jobs if rule == "download"}
    needs_training = any(entry.get("finetune", True) for entry in config["models"].values())
    needs_training = needs_training or any(v.needs_training_data for v in grid.variants)
    used = [s for split, subsets in grid.splits.items() if needs_training or split == "test" for s in subsets]
    used += [bank.subset for bank in grid.corpus_banks.values()]
    assert downloads == {f"dataset={s.archive.dataset}, filename={s.archive.filename}" for s in used}
    hub_models = [n for n, e in config["models"].items() if not ModelSpec.from_config(n, e).is_local]
    assert {wc for rule, wc in jobs if rule == "fetch_model"} == {f"model={n}" for n in hub_models}


def test_the_dry_run_of_the_largest_config_imports_neither_torch_nor_transformers(tmp_path):
    """Every cluster job parses the workflow again: the parse reads the method catalogue's light records and
    never imports the libraries the jobs compute with (each costs seconds to import)."""
    workdir = workflow_copy(tmp_path)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "--cores", "2", "--dry-run", "--quiet", "all",
         "--configfile", "config/studies/beyond.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake.workflow" in imported and "asrcompress.config" in imported  # the trace covers the parse
    heavy = sorted(m for m in imported if m.split(".")[0] in {"torch", "transformers", "torchaudio", "torchao",
                                                               "matplotlib", "seaborn"})
    assert heavy == [], heavy
