"""The names of the report's figures and study tables, defined once for the workflow, the config check,
:mod:`.plots` and :mod:`.results_tables` (which import matplotlib and pandas, so the workflow reads these here)."""

from __future__ import annotations

# The figures every report draws, in its order (plots.FIGURES holds one function per name).
FIGURES = (
    "wer_vs_snr", "wer_per_condition", "wer_by_condition_kind", "wer_vs_sparsity", "wer_vs_gmacs",
    "rel_wer_vs_size", "distillation", "degradation_heatmap", "pareto_latency",
)
# The wide tables a config may ask for (report.tables): the whole grid, or one study's layout
# (results_tables.LAYOUTS holds one layout per name).
TABLE_LAYOUTS = ("grid", "E1", "E2", "E3", "E4", "E5")
