"""Study tables and RESULTS.md from small tidy tables whose every number is worked out by hand."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from asrcompress.errors import PipelineError
from asrcompress.wer_table import series_of, with_defaults
from asrcompress.results_tables import (
    LAYOUTS,
    Layout,
    format_with_ci,
    pooled_rate,
    ratio_pct,
    relative_change_pct,
    results_markdown,
    speedup,
    wide_table,
    word_error_breakdown,
    write_results_md,
    write_study_tables,
)

# wer.csv's columns (the contract; tables.COLUMNS writes them), before the newer ones tidy() adds
COLUMNS = (
    "model variant method level condition kind noise snr_db rt60_s wer wer_ci_low wer_ci_high cer cer_ci_low "
    "cer_ci_high ser substitutions deletions insertions n_utts n_words snr_db_measured rt60_measured_s n_skipped "
    "recovery_steps size_mb packed_mb parameters nonzero_params sparsity gmacs_per_s cpu_latency_ms cpu_rtf "
    "gpu_latency_ms rtf audio_s decode_wall_s device"
).split()

KINDS = {"clean": "clean", "noise": "noise", "reverb": "reverb", "noise+reverb": "noise+reverb", "random": "random"}
FAMILIES = {"none": "baseline", "magnitude": "pruning", "dynamic_int8": "quantization", "qat": "quantization",
            "layer_removal": "depth", "distillation": "distillation", "structured": "structured"}


def tidy(variant: str, condition: str, *, errors: tuple[int, int, int] = (5, 2, 1), n_words: int = 100,
         **fields) -> dict:
    """One wer.csv row: ``errors`` = (substitutions, deletions, insertions), WER consistent with them."""
    method = fields.pop("method", variant.split("~")[0].split("+")[0])
    s, d, i = errors
    wer = (s + d + i) / n_words
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update(
        model="m", variant=variant, training_steps=0, method=method, level=math.nan, condition=condition,
        kind=KINDS[condition.split("/")[0]], wer=wer, wer_ci_low=wer - 0.01, wer_ci_high=wer + 0.02,
        cer=wer / 2, cer_ci_low=wer / 2 - 0.01, cer_ci_high=wer / 2 + 0.01, ser=0.5,
        substitutions=s, deletions=d, insertions=i, n_utts=10, n_words=n_words,
        size_mb=100.0, packed_mb=100.0, parameters=2_000_000, gmacs_per_s=10.0, cpu_latency_ms=100.0,
        family=FAMILIES[method.split("+")[0]], series=series_of(variant), decoder="greedy", subset="all",
    )
    row.update(fields)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def parse_markdown(text: str, after: str = "") -> list[dict[str, str]]:
    """The first pipe table after the line ``after``, as dicts keyed by its header."""
    lines = text.splitlines()
    start = lines.index(after) + 1 if after else 0
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif table:
            break
    header, _rule, *body = table
    return [dict(zip(header, row)) for row in body]


# ----------------------------------------------------------------------------------------------
# Pure helpers


def test_pooled_rate_counts_every_word_once():
    # 10/100 and 90/300: pooled 100/400 = 0.25, where the mean of the two WERs would be 0.2
    assert pooled_rate([10, 90], [100, 300]) == pytest.approx(0.25)
    assert math.isnan(pooled_rate([0], [0]))


def test_relative_size_and_speedup_against_the_baseline():
    assert relative_change_pct(0.25, 0.20) == pytest.approx(25.0)
    assert ratio_pct(25.0, 100.0) == pytest.approx(25.0)
    assert speedup(50.0, 100.0) == pytest.approx(2.0)
    assert math.isnan(relative_change_pct(0.1, 0.0))  # a perfect baseline has no relative change


def test_word_error_breakdown_in_percent_of_reference_words():
    assert word_error_breakdown(100, 5, 2, 1) == pytest.approx(
        {"corr": 93.0, "sub": 5.0, "del": 2.0, "ins": 1.0, "err": 8.0})


def test_ci_formatting():
    assert format_with_ci("wer", 0.123, 0.110, 0.136) == "12.3 [11.0, 13.6]"
    assert format_with_ci("wer", 0.123, math.nan, 0.136) == "12.3"  # no interval known: the bare value
    assert format_with_ci("delta_wer", 0.012, -0.003, 0.02) == "+1.2 [-0.3, 2.0]"


def test_old_tables_get_the_new_columns():
    old = frame(tidy("magnitude~0.6+dynamic_int8", "clean", method="magnitude+dynamic_int8"))
    old = old.drop(columns=["family", "series", "decoder", "subset"])
    filled = with_defaults(old).iloc[0]
    assert (filled["family"], filled["series"]) == ("pruning", "magnitude+dynamic_int8")
    assert (filled["decoder"], filled["subset"]) == ("greedy", "all")
    assert math.isnan(filled["delta_wer"])


# ----------------------------------------------------------------------------------------------
# Wide tables


def test_grid_follows_first_appearance_with_ci_and_blank_missing_cells():
    table = frame(
        tidy("none", "reverb/0.3", errors=(20, 0, 0)), tidy("none", "clean", errors=(10, 0, 0)),
        tidy("qat~4", "reverb/0.3", errors=(30, 0, 0)),  # no clean row: that cell stays empty
        tidy("magnitude~0.5", "clean", errors=(12, 0, 0)), tidy("magnitude~0.5", "reverb/0.3", errors=(25, 0, 0)),
    )
    wide = wide_table(table, LAYOUTS["grid"])
    assert list(wide.columns) == ["variant", "reverb/0.3", "clean", "training steps"]  # model/decoder/subset: constant, dropped
    assert list(wide["variant"]) == ["none", "qat~4", "magnitude~0.5"]  # not alphabetical
    assert wide.loc[0, "reverb/0.3"] == "20.0 [19.0, 22.0]"
    assert wide.loc[1, "clean"] == ""
    assert wide.loc[2, "clean"] == "12.0 [11.0, 14.0]"


def test_layout_fields_percent_filters_and_extra():
    table = frame(tidy("none", "clean", decoder="greedy"), tidy("none", "clean", decoder="lm", errors=(1, 0, 0)),
                  tidy("qat~4", "clean", parameters=1_500_000))
    layout = Layout(rows=["variant"], columns=["condition"], percent=False, extra=["parameters"],
                    filters={"decoder": "greedy"})
    wide = wide_table(table, layout)
    assert wide.to_dict("list") == {"variant": ["none", "qat~4"], "WER": ["0.080", "0.080"],
                                    "params (M)": ["2.00", "1.50"]}


def test_e1_pools_each_kind_over_its_conditions():
    table = frame(
        tidy("none", "clean", errors=(5, 0, 0)),
        tidy("none", "noise/white/10", errors=(10, 0, 0), n_words=100),
        tidy("none", "noise/babble/0", errors=(60, 20, 10), n_words=300),
        tidy("magnitude~0.5", "clean", errors=(8, 0, 0), level="0.5", sparsity=0.5),
        tidy("layer_removal~4", "clean"),  # depth is not E1's: left out
    )
    wide = wide_table(table, dataclasses.replace(LAYOUTS["E1"], with_ci=True))
    assert list(wide["variant"]) == ["none", "magnitude~0.5"]
    assert list(wide.columns[:3]) == ["variant", "clean", "noise"]
    assert wide.loc[0, "noise"] == "25.0"  # 100 errors / 400 words; pooled, so no interval
    assert wide.loc[0, "clean"] == "5.0 [4.0, 7.0]"  # one condition keeps its interval
    assert wide.loc[1, "noise"] == ""
    assert wide.loc[1, "sparsity %"] == "50.0"


def test_e3_relative_wer_and_size_against_the_baseline():
    table = frame(
        tidy("none", "clean", errors=(20, 0, 0), packed_mb=80.0),
        tidy("none", "noise/white/10", errors=(50, 0, 0), packed_mb=80.0),
        tidy("qat~4", "clean", errors=(25, 0, 0), packed_mb=20.0),
        tidy("qat~2", "clean", errors=(40, 0, 0), packed_mb=10.0),
    )
    wide = wide_table(table, LAYOUTS["E3"])
    assert wide.to_dict("list") == {
        "variant": ["none", "qat~4", "qat~2"],
        "WER": ["20.0", "25.0", "40.0"],
        "rel. WER %": ["+0.0", "+25.0", "+100.0"],
        "packed MB": ["80.00", "20.00", "10.00"],
        "size %": ["100.0", "25.0", "12.5"],
    }


def test_selecting_rows_keeps_the_baseline_as_reference():
    table = frame(tidy("none", "clean", errors=(20, 0, 0)), tidy("qat~4", "clean", errors=(30, 0, 0)))
    layout = Layout(columns=(), also=("relative_wer_pct",), filters={"variant": "qat~4"})
    assert wide_table(table, layout).to_dict("list") == {"variant": ["qat~4"], "WER": ["30.0"], "rel. WER %": ["+50.0"]}


def test_e2_shows_each_subset_when_there_are_several():
    subsets = ("librispeech/test-clean", "librispeech/test-other")
    table = frame(*(tidy(v, "clean", subset=s, level=lvl) for v, lvl in (("none", math.nan), ("structured~0.4", "0.4"))
                    for s in subsets))
    wide = wide_table(table, LAYOUTS["E2"])
    assert list(wide.columns) == ["series", "level", *subsets, "GMACs/s", "params (M)"]
    assert list(wide["level"]) == ["", "0.4"]


def test_e4_puts_decoders_side_by_side_with_two_decimals():
    table = frame(
        tidy("none", "clean", errors=(3, 0, 0), decoder="greedy"), tidy("none", "clean", errors=(2, 0, 0), decoder="lm"),
        tidy("layer_removal~12", "clean", errors=(5, 0, 0), decoder="greedy", gpu_latency_ms=8.0),
        tidy("layer_removal~12", "clean", errors=(4, 0, 0), decoder="lm", gpu_latency_ms=8.0),
    )
    wide = wide_table(table, LAYOUTS["E4"])
    assert list(wide.columns) == ["variant", "greedy", "lm", "GPU latency ms", "CPU latency ms", "GMACs/s", "training steps"]
    assert wide.loc[1].tolist() == ["layer_removal~12", "5.00", "4.00", "8.0", "100.0", "10.000", "0"]
    assert wide.loc[0, "GPU latency ms"] == ""


def test_e5_speedup_against_the_teacher():
    table = frame(tidy("none", "clean", cpu_latency_ms=100.0),
                  tidy("distil_deep_thin", "clean", method="distillation", cpu_latency_ms=40.0, parameters=24_000_000))
    wide = wide_table(table, LAYOUTS["E5"])
    assert wide[["variant", "params (M)", "speed-up"]].values.tolist() == [
        ["none", "2.00", "1.00x"], ["distil_deep_thin", "24.00", "2.50x"]]


# ----------------------------------------------------------------------------------------------
# Files


def write_csv(path: Path, table: pd.DataFrame) -> Path:
    table.to_csv(path, index=False)
    return path


def test_study_tables_explain_a_layout_the_table_cannot_fill(tmp_path):
    wer_csv = write_csv(tmp_path / "wer.csv", frame(tidy("none", "clean"), tidy("layer_removal~4", "clean")))
    written = write_study_tables(wer_csv, tmp_path / "tables", ["E4", "grid"])
    assert sorted(p.name for p in written) == ["E4.csv", "E4.md", "grid.csv", "grid.md"]
    e4 = (tmp_path / "tables" / "E4.md").read_text()
    reason = [line for line in e4.splitlines() if line.startswith("No table:")]
    assert reason == ["No table: no LM decoder in the table (greedy only), so there is no WER+LM column."]
    assert (tmp_path / "tables" / "E4.csv").read_text().splitlines() == ["model,variant,GPU latency ms,CPU latency ms,GMACs/s,training steps"]
    grid = parse_markdown((tmp_path / "tables" / "grid.md").read_text())
    assert grid == [{"variant": "none", "WER": "8.0 [7.0, 10.0]", "training steps": "0"},
                    {"variant": "layer_removal~4", "WER": "8.0 [7.0, 10.0]", "training steps": "0"}]
    assert pd.read_csv(tmp_path / "tables" / "grid.csv")["variant"].tolist() == ["none", "layer_removal~4"]


def test_an_empty_table_is_an_error_naming_the_file_and_writes_nothing(tmp_path):
    wer_csv = tmp_path / "wer.csv"
    wer_csv.write_text(",".join(COLUMNS) + "\n")
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match=rf"{wer_csv}.*no rows"):
        write_study_tables(wer_csv, out, list(LAYOUTS))
    with pytest.raises(PipelineError, match=rf"{wer_csv}.*no rows"):
        write_results_md(wer_csv, out / "RESULTS.md", environment={"date": "2025-01-01"})
    assert not out.exists()


def test_unknown_layout_is_named(tmp_path):
    wer_csv = write_csv(tmp_path / "wer.csv", frame(tidy("none", "clean")))
    with pytest.raises(PipelineError, match="E9"):
        write_study_tables(wer_csv, tmp_path / "t", ["E9"])


def test_results_md_in_espnet_style(tmp_path):
    table = frame(tidy("none", "clean", errors=(5, 2, 1), n_words=100, ser=0.3, wer_ci_low=0.06, wer_ci_high=0.1),
                  tidy("qat~4", "reverb/0.3", errors=(10, 0, 0), size_mb=50.0, packed_mb=12.5, gpu_latency_ms=3.25))
    wer_csv = write_csv(tmp_path / "wer.csv", table)
    environment = {"date": "2025-01-01", "python": "3.11.7", "torch": "2.9.1", "git_commit": "abc123"}
    out = write_results_md(wer_csv, tmp_path / "RESULTS.md", config_name="study.yaml", environment=environment)
    text = out.read_text()
    assert text.splitlines()[:7] == ["# RESULTS", "## Environments", "- date: `2025-01-01`", "- python version: `3.11.7`",
                                     "- torch version: `2.9.1`", "- git commit: `abc123`", "- config: `study.yaml`"]
    assert "## m/greedy" in text and "## m/cost" in text
    wer = parse_markdown(text, "### WER")
    assert wer[0] == {"dataset": "none/clean", "Snt": "10", "Wrd": "100", "Corr": "93.0", "Sub": "5.0", "Del": "2.0",
                      "Ins": "1.0", "Err": "8.0", "S.Err": "30.0", "95% CI": "[6.0, 10.0]"}
    assert wer[1]["dataset"] == "qat~4/reverb/0.3"  # subset "all" is left out of the name
    cer = parse_markdown(text, "### CER")
    assert cer[0] == {"dataset": "none/clean", "Snt": "10", "Err": "4.0", "95% CI": "[3.0, 5.0]"}
    cost = parse_markdown(text, "### Cost")
    assert cost[1] == {"variant": "qat~4", "size MB": "50.00", "packed MB": "12.50", "GMACs/s": "10.000",
                       "CPU latency ms": "100.0", "GPU latency ms": "3.2", "params (M)": "2.00"}
    assert cost[0]["GPU latency ms"] == ""
    assert results_markdown(table, title="RESULTS", config_name="study.yaml", environment=environment) == text


def test_results_md_names_subsets_and_decoders_and_shows_paired_deltas():
    table = frame(
        tidy("none", "clean", subset="librispeech/test-clean"),
        tidy("qat~4", "clean", subset="librispeech/test-other", decoder="lm",
             baseline_wer=0.05, delta_wer=0.03, delta_ci_low=0.01, delta_ci_high=0.05, p_value=0.004),
    )
    text = results_markdown(table, title="RESULTS", config_name="", environment={"date": "d"})
    assert "## m/greedy" in text and "## m/lm" in text
    greedy = parse_markdown(text, "## m/greedy")
    assert greedy[0]["dataset"] == "none/librispeech/test-clean/clean"
    lm = parse_markdown(text, "## m/lm")
    assert lm[0]["ΔErr vs baseline"] == "+3.0 [1.0, 5.0]" and lm[0]["p"] == "0.004"
    assert "- config:" not in text


def test_a_single_row_is_named_by_its_most_specific_level():
    wide = wide_table(frame(tidy("none", "clean")), Layout(rows=("model", "series", "level")))
    assert list(wide.columns) == ["series", "WER"]  # one model, no level: the series names the row


def test_training_steps_count_a_students_distillation_and_its_recovery():
    from asrcompress.tables import training_steps

    student = {"recipe": {"steps": [{"method": "distillation", "level": None, "params": {"distill_steps": 400}}],
                          "recovery": {"steps": 300}}}
    pruned = {"recipe": {"steps": [{"method": "magnitude", "level": 0.5, "params": {}}], "recovery": {"steps": 60}}}
    converted = {"recipe": {"steps": [{"method": "dynamic_int8", "level": None, "params": {}}], "recovery": None}}
    assert [training_steps(c) for c in (student, pruned, converted, {})] == [700, 60, 0, 0]
