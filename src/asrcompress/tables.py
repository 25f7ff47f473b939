"""The tidy results table: one row per (model, variant, condition)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd

from .conditions import Condition
from .io import atomic_path, read_json

COLUMNS = [
    "model", "variant", "method", "level", "condition", "kind", "noise", "snr_db", "rt60_s",
    "wer", "wer_ci_low", "wer_ci_high", "cer", "cer_ci_low", "cer_ci_high", "ser",
    "substitutions", "deletions", "insertions", "n_utts", "n_words",
    "snr_db_measured", "rt60_measured_s", "n_skipped",
    "recovery_steps", "size_mb", "packed_mb", "parameters", "nonzero_params", "sparsity",
    "gmacs_per_s", "cpu_latency_ms", "cpu_rtf", "gpu_latency_ms", "rtf", "audio_s", "decode_wall_s", "device",
]


@dataclasses.dataclass(frozen=True)
class ResultFiles:
    """The files of one (model, variant, condition) cell."""

    model: str
    variant: str
    condition: str
    score: str
    timing: str
    card: str
    condition_summary: str


def row(files: ResultFiles) -> dict:
    score, timing, card, summary = (read_json(p) for p in (files.score, files.timing, files.card, files.condition_summary))
    return {
        "model": files.model,
        "variant": files.variant,
        "method": card["method"],
        "level": card["level"],
        **Condition.parse(files.condition).describe(),
        **{k: score[k] for k in ("wer", "wer_ci_low", "wer_ci_high", "cer", "cer_ci_low", "cer_ci_high", "ser",
                                  "substitutions", "deletions", "insertions", "n_utts", "n_words")},
        "snr_db_measured": summary.get("snr_db_measured_mean"),
        "rt60_measured_s": summary.get("rt60_measured_s_mean"),
        "n_skipped": summary.get("n_skipped", 0),
        "recovery_steps": ((card.get("recipe") or {}).get("recovery") or {}).get("steps", 0),
        "size_mb": card["size_mb"],
        "packed_mb": card["packed_mb"],
        "parameters": card["parameters"],
        "nonzero_params": card["nonzero_parameters"],
        "sparsity": card["sparsity"],
        "gmacs_per_s": card["gmacs_per_audio_s"],
        "cpu_latency_ms": card["cpu_latency_ms"],
        "cpu_rtf": card["cpu_rtf"],
        "gpu_latency_ms": card["gpu_latency_ms"],
        "rtf": timing["rtf"],
        "audio_s": timing["audio_s"],
        "decode_wall_s": timing["wall_s"],
        "device": timing["device"],
    }


def aggregate(cells: Sequence[ResultFiles], out_csv: str) -> pd.DataFrame:
    # Rows keep the config's order (variants, then conditions), which the figures follow.
    table = pd.DataFrame([row(c) for c in cells], columns=COLUMNS)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
