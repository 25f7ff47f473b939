"""The tidy results table ``wer.csv``: its columns, the series and family of a row, and the one reader.

The aggregate stage (:mod:`.tables`) writes the table; the figures (:mod:`.plots`), the per-study tables
and RESULTS.md (:mod:`.results_tables`) read it through :func:`read_wer_table`, so a table from an older
run (without ``decoder``, ``family`` or ``series``) means the same to all of them.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd

from .compression import registry
from .errors import ConfigError, PipelineError
from .scoring import ALL_SUBSETS

# One row per (model, variant, decoder, subset, condition), in this column order.
COLUMNS = [
    "model", "variant", "series", "method", "family", "level", "decoder", "subset",
    "condition", "kind", "noise", "snr_db", "rt60_s",
    "wer", "wer_ci_low", "wer_ci_high", "cer", "cer_ci_low", "cer_ci_high", "ser",
    "substitutions", "deletions", "insertions", "n_utts", "n_words",
    "baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high", "p_value",
    "snr_db_measured", "rt60_measured_s", "n_skipped",
    "recovery_steps", "training_steps", "size_mb", "packed_mb", "parameters", "nonzero_params", "sparsity",
    "gmacs_per_s", "cpu_latency_ms", "cpu_rtf", "gpu_latency_ms", "ort_latency_ms", "onnx_status",
    "rtf", "audio_s", "decode_wall_s", "device", "backend",
]
# The paired comparison with the baseline cell, filled after every cell is scored.
COMPARISON_COLUMNS = ("baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high", "p_value")
# Read as text so that levels keep their spelling ("2:4", "0.3") and a NaN level stays empty.
TEXT_COLUMNS = ("model", "variant", "method", "level", "condition", "kind", "noise", "device",
                "family", "series", "decoder", "subset")
# Columns that older tables lack (or left empty), with the value they had implicitly.
FILLED_DEFAULTS = {"decoder": "greedy", "subset": ALL_SUBSETS, "recovery_steps": 0}
UNKNOWN_FAMILY = "unknown"  # a method since renamed or removed still gets its row


def series_of(variant: str) -> str:
    """The variant id without its first step's level: the line that joins one method's levels in a figure.

    >>> series_of("magnitude~0.6+dynamic_int8")
    'magnitude+dynamic_int8'
    >>> series_of("nm_sparsity~2of4+qat~4+ft60")
    'nm_sparsity+qat~4+ft60'
    >>> series_of("none")
    'none'
    """
    first, *rest = str(variant).split("+")
    return "+".join([first.split("~")[0], *rest])


@functools.lru_cache(maxsize=None)
def family_of(method: str) -> str:
    """The family of a chain's first method (a chain like magnitude+dynamic_int8 is a pruning variant).

    >>> family_of("magnitude+dynamic_int8")
    'pruning'
    >>> family_of("no_such_method")
    'unknown'
    """
    try:
        return registry.get(str(method).split("+")[0]).family
    except ConfigError:
        return UNKNOWN_FAMILY


def _filled(table: pd.DataFrame, column: str, values: pd.Series) -> pd.Series:
    """``table[column]`` with its missing values (or the whole column, when absent) taken from ``values``."""
    present = table[column] if column in table else pd.Series(np.nan, index=table.index, dtype=object)
    return present.where(present.notna(), values)


def with_defaults(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the columns newer tables carry, filled in the way older tables meant them."""
    table = table.copy()
    for column, default in FILLED_DEFAULTS.items():
        table[column] = table[column].fillna(default) if column in table else default
    missing_family = table["family"].isna() if "family" in table else pd.Series(True, index=table.index)
    families = table.loc[missing_family, "method"].dropna().map(family_of)  # the registry for the rows that need it
    table["family"] = _filled(table, "family", families)
    table["series"] = _filled(table, "series", table["variant"].map(series_of))
    if "training_steps" not in table:  # tables from before distillation steps were counted: recovery only
        table["training_steps"] = table["recovery_steps"]
    for column in COMPARISON_COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table


def read_wer_table(wer_csv: str | os.PathLike[str], required: tuple[str, ...] = ("model", "variant", "method")
                   ) -> pd.DataFrame:
    """wer.csv with defaults filled in; a table without rows or without a ``required`` column is an error
    that names the file."""
    try:
        table = pd.read_csv(wer_csv, dtype={column: str for column in TEXT_COLUMNS})
    except pd.errors.EmptyDataError:  # not even a header
        table = pd.DataFrame()
    except FileNotFoundError:
        raise PipelineError(f"{wer_csv}: no such results table (run the aggregate rule first)") from None
    if table.empty:
        raise PipelineError(f"{wer_csv}: the results table has no rows (nothing was scored)")
    missing = [column for column in required if column not in table]
    if missing:
        raise PipelineError(f"{wer_csv}: the table lacks the column(s) {', '.join(missing)}")
    return with_defaults(table)
