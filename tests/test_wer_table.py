"""The one reader of wer.csv: what an older table means is the same to the figures, the study tables and RESULTS.md."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from asrcompress import plots, results_tables
from asrcompress.errors import PipelineError
from asrcompress.wer_table import COLUMNS, UNKNOWN_FAMILY, family_of, read_wer_table, series_of


def old_table(path):
    """A wer.csv written before the family, series, decoder and subset columns existed, with a method that is gone."""
    rows = [
        {"model": "m", "variant": "none", "method": "none", "level": "", "condition": "clean", "kind": "clean",
         "wer": 0.1, "n_words": 100, "recovery_steps": 0},
        {"model": "m", "variant": "nm_sparsity~2of4+ft60", "method": "nm_sparsity", "level": "2:4",
         "condition": "clean", "kind": "clean", "wer": 0.2, "n_words": 100, "recovery_steps": 60},
        {"model": "m", "variant": "retired~0.5", "method": "retired", "level": "0.5", "condition": "clean",
         "kind": "clean", "wer": 0.3, "n_words": 100, "recovery_steps": None},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_series_and_family():
    assert series_of("structured_transformer~0.4+ft60") == "structured_transformer+ft60"
    assert family_of("none") == "baseline"
    assert family_of("nm_sparsity") == "sparsity"
    assert family_of("gone+dynamic_int8") == UNKNOWN_FAMILY


def test_an_old_table_is_filled_in_alike_for_every_reader(tmp_path):
    path = old_table(tmp_path / "wer.csv")
    table = read_wer_table(path).set_index("variant")
    assert table["family"].to_dict() == {"none": "baseline", "nm_sparsity~2of4+ft60": "sparsity",
                                         "retired~0.5": UNKNOWN_FAMILY}
    assert table.loc["nm_sparsity~2of4+ft60", "series"] == "nm_sparsity+ft60"
    assert table.loc["nm_sparsity~2of4+ft60", "level"] == "2:4"  # read as text, not as a time or a number
    assert set(table["decoder"]) == {"greedy"} and set(table["subset"]) == {"all"}
    assert table.loc["retired~0.5", "recovery_steps"] == 0 and table.loc["retired~0.5", "training_steps"] == 0
    assert math.isnan(table.loc["none", "delta_wer"])
    figures = plots.load_table(path).set_index("variant")
    studies = results_tables.load_table(path).set_index("variant")
    for column in ("family", "series", "decoder", "subset", "recovery_steps"):
        assert figures[column].to_dict() == studies[column].to_dict() == table[column].to_dict(), column


def test_a_row_that_has_its_family_keeps_it(tmp_path):
    path = tmp_path / "wer.csv"
    pd.DataFrame([{"model": "m", "variant": "x~1", "method": "x", "family": "custom", "series": "x",
                   "condition": "clean", "kind": "clean", "wer": 0.1}]).to_csv(path, index=False)
    assert read_wer_table(path).loc[0, "family"] == "custom"


def test_the_written_columns_are_what_the_reader_knows():
    assert len(COLUMNS) == len(set(COLUMNS))
    assert {"family", "series", "decoder", "subset", "training_steps", "baseline_wer"} <= set(COLUMNS)


def test_bad_tables_name_the_file(tmp_path):
    with pytest.raises(PipelineError, match=r"missing\.csv.*no such results table"):
        read_wer_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PipelineError, match=r"empty\.csv.*no rows"):
        read_wer_table(empty)
    headless = tmp_path / "headless.csv"
    pd.DataFrame([{"model": "m", "wer": 0.1}]).to_csv(headless, index=False)
    with pytest.raises(PipelineError, match=r"headless\.csv.*lacks the column\(s\) variant, method"):
        read_wer_table(headless)
