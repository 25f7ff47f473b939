"""The aggregate stage: the tidy results table from every cell's files, one row per (model, variant, decoder,
subset, condition); its columns and reader are :mod:`.wer_table`.

Besides each cell's own scores, every row carries the paired comparison with the uncompressed baseline
on the same utterances (difference in WER, its bootstrap CI, a p-value), so that "is this variant worse
under babble noise?" is answered with uncertainty, not by eye.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd

from .conditions import Condition
from .io import atomic_path, read_json
from .scoring import ALL_SUBSETS
from .stats import paired_bootstrap
from .wer_table import COLUMNS, COMPARISON_COLUMNS, family_of, series_of

SCORE_COLUMNS = ("wer", "wer_ci_low", "wer_ci_high", "cer", "cer_ci_low", "cer_ci_high", "ser",
                 "substitutions", "deletions", "insertions", "n_utts", "n_words")
# A cell is compared with the baseline cell of the same model, decoder, subset and condition.
PAIR_KEYS = ["model", "decoder", "subset", "condition"]


@dataclasses.dataclass(frozen=True)
class ResultFiles:
    """The files of one (model, variant, decoder, condition) cell."""

    model: str
    variant: str
    decoder: str
    condition: str
    score: str
    utterances: str
    timing: str
    card: str
    condition_summary: str
    export: str | None = None  # the variant's ONNX export record (onnx.export)


def training_steps(card: dict) -> int:
    """Every optimiser step a variant trained after the baseline: its methods' own training (a student's
    distillation) plus recovery fine-tuning; 0 for a conversion."""
    recipe = card.get("recipe") or {}
    own = sum(int((step.get("params") or {}).get("distill_steps", 0)) for step in recipe.get("steps", []))
    return own + int((recipe.get("recovery") or {}).get("steps", 0))


def rows(files: ResultFiles) -> list[dict]:
    """The whole test set's row, then one per corpus subset (test-clean, test-other, ...) if it has several."""
    score, timing, card, summary = (read_json(p) for p in (files.score, files.timing, files.card, files.condition_summary))
    export = read_json(files.export) if files.export else {}
    decoder_timing = timing["decoders"][files.decoder]
    shared = {
        "model": files.model,
        "variant": files.variant,
        "series": series_of(files.variant),
        "method": card["method"],
        "family": family_of(card["method"]),
        "level": card["level"],
        "decoder": files.decoder,
        **Condition.parse(files.condition).describe(),
        "snr_db_measured": summary.get("snr_db_measured_mean"),
        "rt60_measured_s": summary.get("rt60_measured_s_mean"),
        "n_skipped": summary.get("n_skipped", 0),
        "recovery_steps": ((card.get("recipe") or {}).get("recovery") or {}).get("steps", 0),
        "training_steps": training_steps(card),
        "size_mb": card["size_mb"],
        "packed_mb": card["packed_mb"],
        "parameters": card["parameters"],
        "nonzero_params": card["nonzero_parameters"],
        "sparsity": card["sparsity"],
        "gmacs_per_s": card["gmacs_per_audio_s"],
        "cpu_latency_ms": card["cpu_latency_ms"],
        "cpu_rtf": card["cpu_rtf"],
        "gpu_latency_ms": card["gpu_latency_ms"],
        "ort_latency_ms": export.get("ort_latency_ms"),
        "onnx_status": export.get("status"),
        "rtf": decoder_timing["rtf"],
        "audio_s": timing["audio_s"],
        "decode_wall_s": decoder_timing["wall_s"],
        "device": timing["device"],
        "backend": timing.get("backend", "torch"),
    }
    parts = [(ALL_SUBSETS, score), *sorted((score.get("subsets") or {}).items())]
    return [{**shared, "subset": subset, **{k: part[k] for k in SCORE_COLUMNS}} for subset, part in parts]


def utterance_errors(path: str) -> pd.DataFrame:
    """Per-utterance word errors and reference words, indexed by utterance id."""
    table = pd.read_csv(path, sep="\t", dtype={"id": str, "subset": str}, keep_default_na=False)
    table["errors"] = table["sub"] + table["del"] + table["ins"]
    return table.set_index("id")[["subset", "errors", "words"]]


def paired_columns(variant: pd.DataFrame, baseline: pd.DataFrame, subset: str, n_resamples: int, seed: int) -> dict:
    """The paired bootstrap comparison of one cell with its baseline cell, on the utterances both decoded."""
    if subset != ALL_SUBSETS:
        variant, baseline = variant[variant["subset"] == subset], baseline[baseline["subset"] == subset]
    common = variant.index.intersection(baseline.index)
    result = paired_bootstrap(variant.loc[common, "errors"], baseline.loc[common, "errors"], variant.loc[common, "words"],
                              n_resamples, seed=seed)
    return {"delta_wer": result.delta, "delta_ci_low": result.ci_low, "delta_ci_high": result.ci_high, "p_value": result.p_value}


def add_baseline_comparisons(table: pd.DataFrame, cells: Sequence[ResultFiles], baseline: str | None,
                             n_resamples: int, seed: int) -> pd.DataFrame:
    """Fill baseline_wer and the paired-test columns (NaN everywhere when the config has no baseline)."""
    table = table.copy()
    for column in COMPARISON_COLUMNS:
        table[column] = float("nan")
    if baseline is None or table.empty:
        return table
    utterances = {(c.model, c.variant, c.decoder, c.condition): c.utterances for c in cells}
    loaded: dict[str, pd.DataFrame] = {}

    def errors(path: str) -> pd.DataFrame:
        if path not in loaded:
            loaded[path] = utterance_errors(path)
        return loaded[path]

    base_wer = table[table["variant"] == baseline].set_index(PAIR_KEYS)["wer"]
    for index, row in table.iterrows():
        key = tuple(row[k] for k in PAIR_KEYS)
        if key not in base_wer.index:
            continue
        table.at[index, "baseline_wer"] = base_wer.loc[key]
        base_path = utterances.get((row["model"], baseline, row["decoder"], row["condition"]))
        own_path = utterances[(row["model"], row["variant"], row["decoder"], row["condition"])]
        if row["variant"] == baseline:
            table.loc[index, ["delta_wer", "delta_ci_low", "delta_ci_high"]] = 0.0
            continue
        for column, value in paired_columns(errors(own_path), errors(base_path), row["subset"], n_resamples, seed).items():
            table.at[index, column] = value
    return table


def aggregate(cells: Sequence[ResultFiles], out_csv: str, baseline: str | None = None, n_resamples: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    # Rows keep the config's order (variants, decoders, then conditions), which the figures and tables follow.
    table = pd.DataFrame([r for c in cells for r in rows(c)], columns=[c for c in COLUMNS if c not in COMPARISON_COLUMNS])
    table = add_baseline_comparisons(table, cells, baseline, n_resamples, seed)[COLUMNS]
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
