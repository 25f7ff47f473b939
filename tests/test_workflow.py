"""The real workflow, end to end, on the tiny config (marked slow; part of make test)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from workflow_utils import REPO, planned_jobs, snakemake, tiny_config, workflow_copy, write_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("run"), tiny_config())
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_whole_dag_produces_the_table_and_figures(finished_run):
    table = pd.read_csv(finished_run / "results" / "tables" / "wer.csv")
    config = tiny_config()
    n_conditions = 1 + 2 * 2 + 1 + 1
    assert len(table) == 4 * n_conditions
    for column in ["model", "method", "level", "condition", "noise", "snr_db", "rt60_s", "wer", "cer", "n_utts",
                   "n_words", "size_mb", "packed_mb", "nonzero_params", "rtf", "wer_ci_low", "wer_ci_high",
                   "gmacs_per_s", "cpu_latency_ms", "cpu_rtf", "recovery_steps"]:
        assert column in table.columns, column
    chained = "structured~0.3+dynamic_int8+ft2"
    assert set(table["variant"]) == {"none", "dynamic_int8", "magnitude~0.5", chained}
    per_variant = table.groupby("variant").first()
    assert (per_variant["cpu_latency_ms"] > 0).all() and (per_variant["gmacs_per_s"] > 0).all()
    assert per_variant.loc[chained, "gmacs_per_s"] < 0.75 * per_variant.loc["none", "gmacs_per_s"]
    assert per_variant.loc[chained, "parameters"] < per_variant.loc["none", "parameters"]
    assert per_variant.loc[chained, "recovery_steps"] == 2 and per_variant.loc["none", "recovery_steps"] == 0
    assert per_variant.loc["dynamic_int8", "packed_mb"] < 0.6 * per_variant.loc["none", "packed_mb"]  # convs stay fp32
    assert (table["n_utts"] == config["corpus"]["demo"]["splits"]["test"]["n_utterances"]).all()
    noisy = table[table["kind"] == "noise"]
    assert (noisy["snr_db_measured"] - noisy["snr_db"]).abs().max() < 0.1
    sizes = table.groupby("variant")["size_mb"].first()
    assert sizes["dynamic_int8"] < sizes["none"]
    pruned = table[table["variant"] == "magnitude~0.5"]["nonzero_params"].iloc[0]
    assert pruned < table[table["variant"] == "none"]["nonzero_params"].iloc[0]
    for figure in ["wer_vs_snr", "wer_per_condition", "wer_vs_sparsity", "wer_vs_size", "wer_vs_gmacs", "wer_vs_latency"]:
        assert (finished_run / "results" / "figures" / f"{figure}.png").stat().st_size > 5000
    gallery = finished_run / "results" / "gallery" / "noise+reverb" / "white" / "10" / "0.3"
    assert len(list(gallery.glob("*.png"))) == 2 and len(list(gallery.glob("*.clean.wav"))) == 2
    card = json.loads((finished_run / "results" / "models" / "tiny" / "baseline" / "card.json").read_text())
    assert card["result"]["steps"] == 8 and len(card["result"]["history"]) == 2
    assert "dev WER" in (finished_run / "logs" / "finetune" / "tiny.log").read_text()
    for rule in ["demo_corpus", "augment", "finetune", "compress", "decode", "score", "aggregate", "plot"]:
        assert list((finished_run / "benchmarks").rglob("*.tsv")), rule


@pytest.mark.slow
def test_second_run_has_nothing_to_do_and_is_fast(finished_run):
    assert planned_jobs(finished_run) == []
    started = time.time()
    result = snakemake(finished_run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
    assert time.time() - started < 30  # the benchmark measures the real figure (no-op rerun)


@pytest.mark.slow
def test_changing_one_snr_reruns_only_that_condition(finished_run):
    config = tiny_config()
    config["conditions"]["noise"]["snr_db"] = [20, 7]
    write_config(finished_run, config)
    jobs = planned_jobs(finished_run)
    rules = sorted({rule for rule, _ in jobs})
    assert rules == ["aggregate", "all", "augment", "decode", "gallery", "plot", "score"], jobs
    touched = {wc for rule, wc in jobs if rule in ("augment", "decode", "score", "gallery")}
    assert all("/7" in wc for wc in touched), touched
    assert len([j for j in jobs if j[0] == "augment"]) == 2  # white and babble at 7 dB
    assert len([j for j in jobs if j[0] == "decode"]) == 2 * len(config["compression"])
    write_config(finished_run, tiny_config())


@pytest.mark.slow
def test_same_config_gives_bitwise_identical_test_sets_and_wer(finished_run, tmp_path):
    again = workflow_copy(tmp_path, tiny_config())
    result = snakemake(again, "results/tables/wer.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    for wav in sorted((finished_run / "results" / "conditions").rglob("*.wav"))[:20]:
        twin = again / wav.relative_to(finished_run)
        assert wav.read_bytes() == twin.read_bytes(), wav
    columns = ["variant", "condition", "wer", "cer", "substitutions", "deletions", "insertions"]
    a = pd.read_csv(finished_run / "results" / "tables" / "wer.csv")[columns]
    b = pd.read_csv(again / "results" / "tables" / "wer.csv")[columns]
    pd.testing.assert_frame_equal(a, b)


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_corrupt_test_audio_stops_augment_naming_the_file_or_is_skipped(tmp_path):
    config = tiny_config()
    workdir = workflow_copy(tmp_path, config)
    assert snakemake(workdir, "results/data/test").returncode == 0
    victim = sorted((workdir / "results" / "data" / "test" / "wav").glob("*.wav"))[2]
    victim.write_bytes(b"RIFF garbage, not a wave file")
    target = "results/conditions/noise/white/20"
    result = snakemake(workdir, target)
    assert result.returncode != 0
    log = (workdir / "logs" / "augment" / "noise" / "white" / "20.log").read_text()
    assert victim.name in log and "cannot read audio" in log
    assert not (workdir / target).exists() and not list((workdir / target).parent.glob("20*"))

    config["on_bad_audio"] = "skip"
    write_config(workdir, config)
    assert snakemake(workdir, target).returncode == 0
    summary = json.loads((workdir / target / "summary.json").read_text())
    assert summary["n_skipped"] == 1 and victim.name in summary["skipped"][0]["path"]
