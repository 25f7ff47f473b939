"""The real workflow, end to end, on the tiny config (marked slow; part of make test)."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from workflow_utils import REPO, planned_jobs, snakemake, tiny_config, workflow_copy, write_config


@pytest.fixture
def finished_run(tiny_run):
    """The session's local run of the tiny config (tests here restore its config after editing it)."""
    return tiny_run


@pytest.mark.slow
def test_whole_dag_produces_the_table_and_figures(finished_run):
    table = pd.read_csv(finished_run / "results" / "tables" / "wer.csv")
    config = tiny_config()
    n_conditions = 1 + 2 * 2 + 1 + 1
    assert len(table) == 4 * 2 * n_conditions  # variants x decoders x conditions
    for column in ["model", "method", "level", "condition", "noise", "snr_db", "rt60_s", "wer", "cer", "n_utts",
                   "n_words", "size_mb", "packed_mb", "nonzero_params", "rtf", "wer_ci_low", "wer_ci_high",
                   "gmacs_per_s", "cpu_latency_ms", "cpu_rtf", "recovery_steps", "decoder", "subset", "family",
                   "series", "delta_wer", "p_value"]:
        assert column in table.columns, column
    assert set(table["decoder"]) == {"greedy", "lm"} and set(table["subset"]) == {"all"}
    baseline = table[table["variant"] == "none"]
    assert (baseline["delta_wer"] == 0).all() and baseline["p_value"].isna().all()
    compared = table[table["variant"] != "none"]
    assert compared["p_value"].between(0, 1).all()
    assert ((compared["wer"] - compared["baseline_wer"] - compared["delta_wer"]).abs() < 1e-4).all()
    chained = "structured~0.3+dynamic_int8+ft2"
    assert set(table["variant"]) == {"none", "dynamic_int8", "magnitude~0.5", chained}
    per_variant = table.groupby("variant").first()
    assert (per_variant["cpu_latency_ms"] > 0).all() and (per_variant["gmacs_per_s"] > 0).all()
    assert per_variant.loc[chained, "gmacs_per_s"] < 0.75 * per_variant.loc["none", "gmacs_per_s"]
    assert per_variant.loc[chained, "parameters"] < per_variant.loc["none", "parameters"]
    assert per_variant.loc[chained, "recovery_steps"] == 2 and per_variant.loc["none", "recovery_steps"] == 0
    assert per_variant.loc["dynamic_int8", "packed_mb"] < 0.6 * per_variant.loc["none", "packed_mb"]  # convs stay fp32
    # every variant through the export stage: the int8 ones are ONNX Runtime graphs already and decode there
    assert (per_variant["ort_latency_ms"] > 0).all()
    graphs = {"dynamic_int8", chained}
    assert set(per_variant.loc[sorted(graphs), "onnx_status"]) == {"native"}
    assert set(per_variant.drop(index=sorted(graphs))["onnx_status"]) <= {"ok", "mismatch"}  # tiny: near-ties
    record = json.loads((finished_run / "results" / "onnx" / "tiny" / "none" / "export.json").read_text())
    assert record["max_logit_diff"] < 1e-4 and record["transcripts_checked"] > 0
    assert (table[table["variant"].isin(graphs)]["backend"] == "onnxruntime").all()
    assert (table[~table["variant"].isin(graphs)]["backend"] == "torch").all()
    assert (table["n_utts"] == config["corpus"]["demo"]["splits"]["test"]["n_utterances"]).all()
    noisy = table[table["kind"] == "noise"]
    assert (noisy["snr_db_measured"] - noisy["snr_db"]).abs().max() < 0.1
    sizes = table.groupby("variant")["size_mb"].first()
    assert sizes["dynamic_int8"] < sizes["none"]
    pruned = table[table["variant"] == "magnitude~0.5"]["nonzero_params"].iloc[0]
    assert pruned < table[table["variant"] == "none"]["nonzero_params"].iloc[0]
    for figure in ["wer_vs_snr", "wer_per_condition", "wer_by_condition_kind", "wer_vs_sparsity", "wer_vs_gmacs",
                   "rel_wer_vs_size", "distillation", "degradation_heatmap", "pareto_latency"]:
        # The tiny config has no distilled student: that figure is a placeholder saying so.
        assert (finished_run / "results" / "figures" / f"{figure}.png").stat().st_size > (2000 if figure == "distillation" else 5000)
        assert (finished_run / "results" / "figures" / f"{figure}.pdf").read_bytes()[:4] == b"%PDF"
    results_md = (finished_run / "results" / "RESULTS.md").read_text()
    assert "## tiny/greedy" in results_md and "## tiny/lm" in results_md and "|Snt|" in results_md.replace(" ", "")
    for layout in ["grid", "E1"]:
        assert (finished_run / "results" / "tables" / f"{layout}.md").stat().st_size > 100
    snapshot = (finished_run / "results" / "tables" / "config.yaml").read_text()
    assert "train-2gram" in snapshot and "bootstrap_resamples: 100" in snapshot
    scores = finished_run / "results" / "scores" / "tiny" / "none" / "lm"
    trn = (scores / "clean.ref.trn").read_text().splitlines()
    assert len(trn) == config["corpus"]["demo"]["splits"]["test"]["n_utterances"] and trn[0].endswith(")")
    assert (scores / "clean.pra").read_text().startswith("id: (")
    lm = json.loads((finished_run / "results" / "lm" / "train-2gram" / "summary.json").read_text())
    assert lm["n_sentences"] == config["corpus"]["demo"]["splits"]["train"]["n_utterances"] and lm["ngrams"]["2"] > 0
    gallery = finished_run / "results" / "gallery" / "noise+reverb" / "white" / "10" / "0.3"
    assert len(list(gallery.glob("*.png"))) == 2 and len(list(gallery.glob("*.clean.wav"))) == 2
    card = json.loads((finished_run / "results" / "models" / "tiny" / "baseline" / "card.json").read_text())
    assert card["result"]["steps"] == 8 and len(card["result"]["history"]) == 2
    assert "dev WER" in (finished_run / "logs" / "finetune" / "tiny.log").read_text()
    job_records = [p.relative_to(finished_run / "results" / "benchmarks").as_posix()
                   for p in (finished_run / "results" / "benchmarks").rglob("*.tsv")]
    for rule in ["demo_corpus", "augment", "finetune", "compress", "decode", "score", "aggregate", "plot"]:
        assert any(rule in record for record in job_records), rule


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
    assert rules == ["aggregate", "all", "augment", "config_snapshot", "decode", "gallery", "plot", "results_md", "score",
                     "study_tables"], jobs
    touched = {wc for rule, wc in jobs if rule in ("augment", "decode", "score", "gallery")}
    assert all("/7" in wc for wc in touched), touched
    assert len([j for j in jobs if j[0] == "augment"]) == 2  # white and babble at 7 dB
    assert len([j for j in jobs if j[0] == "decode"]) == 2 * len(config["compression"])
    assert len([j for j in jobs if j[0] == "score"]) == 2 * 2 * len(config["compression"])  # two decoders
    write_config(finished_run, tiny_config())


@pytest.mark.slow
def test_restyling_figures_reruns_only_plotting(finished_run):
    config = tiny_config()
    config["report"]["style"] = {"context": "talk", "dpi": 90}
    write_config(finished_run, config)
    jobs = planned_jobs(finished_run)
    assert sorted({rule for rule, _ in jobs}) == ["all", "config_snapshot", "plot"], jobs
    write_config(finished_run, tiny_config())


@pytest.mark.slow
def test_a_new_beam_width_redecodes_but_reuses_variants_and_test_sets(finished_run):
    config = tiny_config()
    config["decode"]["decoders"]["lm"]["beam_width"] = 4
    write_config(finished_run, config)
    rules = {rule for rule, _ in planned_jobs(finished_run)}
    assert "decode" in rules and not rules & {"compress", "augment", "finetune", "language_model"}, rules
    write_config(finished_run, tiny_config())


@pytest.mark.slow
def test_same_config_gives_bitwise_identical_test_sets_and_wer(finished_run, tmp_path):
    """A second run from nothing, on a cut grid of the tiny config (two variants, three conditions, every stage)
    so that it costs a third of the first: its test sets and WER rows equal the first run's."""
    config = tiny_config()
    config["compression"] = [{"method": "none"}, {"method": "dynamic_int8"}]
    config["conditions"] = {"clean": True, "noise": {"types": ["white"], "snr_db": [5]}, "reverb": {"rt60_s": [0.3]}}
    again = workflow_copy(tmp_path, config)
    result = snakemake(again, "results/tables/wer.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    wavs = sorted((again / "results" / "conditions").rglob("*.wav"))
    conditions = {str(w.parent.parent.relative_to(again / "results" / "conditions")) for w in wavs}
    assert conditions == {"noise/white/5", "reverb/0.3"}, conditions  # clean reads the test split in place
    for wav in wavs[::5]:
        twin = finished_run / wav.relative_to(again)
        assert wav.read_bytes() == twin.read_bytes(), wav
    key = ["variant", "decoder", "condition"]
    columns = [*key, "wer", "cer", "substitutions", "deletions", "insertions", "delta_wer", "delta_ci_low",
               "delta_ci_high", "p_value"]
    b = pd.read_csv(again / "results" / "tables" / "wer.csv")[columns]
    a = b[key].merge(pd.read_csv(finished_run / "results" / "tables" / "wer.csv")[columns], on=key, how="left")
    assert len(b) == 2 * 2 * 3
    pd.testing.assert_frame_equal(a, b, check_dtype=False)  # whole numbers read as int in the smaller table


def test_onnxruntime_backend_decodes_from_the_exports(tmp_path):
    """decode.backend onnxruntime: every decode job reads its variant's export folder."""
    config = tiny_config()
    config["decode"]["backend"] = "onnxruntime"
    workdir = workflow_copy(tmp_path, config)
    result = snakemake(workdir, "--rulegraph")
    assert result.returncode == 0, result.stderr[-3000:]
    edges = result.stdout
    ids = dict((name, node) for node, name in __import__("re").findall(r'(\d+)\[label = "(\w+)"', edges))
    assert f"{ids['export_onnx']} -> {ids['decode']}" in edges
    config["onnx"] = {"export": False}
    write_config(workdir, config)
    result = snakemake(workdir, "--dry-run")
    assert result.returncode != 0 and "decode.backend" in result.stdout + result.stderr


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


@pytest.mark.slow
def test_one_decode_job_per_variant_writes_what_one_job_per_condition_writes(finished_run, tmp_path):
    """decode.one_job_per: variant (the demo's setting) plans a decode job per variant, and its hypotheses are
    byte-identical to the per-condition jobs' of the tiny run."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    config = tiny_config()
    config["decode"]["one_job_per"] = "variant"
    write_config(copy, config)
    jobs = planned_jobs(copy)
    assert len([j for j in jobs if j[0] == "decode"]) == len(config["compression"]), jobs
    before = {p.relative_to(copy): p.read_bytes() for p in (copy / "results" / "hyps").rglob("*.jsonl")}
    result = snakemake(copy, "results/tables/wer.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    after = {p.relative_to(copy): p.read_bytes() for p in (copy / "results" / "hyps").rglob("*.jsonl")}
    assert after == before
    assert planned_jobs(copy, "results/tables/wer.csv") == []
