"""The report's seaborn figures (WER against SNR, sparsity, compute, size, latency), made from ``tables/wer.csv`` alone.

Every figure in ``FIGURES`` is a function ``(table, path)``: it takes the table as ``prepare_table``
returns it and writes one or more files (``path`` may be a list; each file's suffix picks its format).
A figure with nothing to show writes a placeholder that says why, so the report always has every
panel. WER is plotted in percent; the table stores fractions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence, Union

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .errors import ConfigError, PipelineError  # noqa: E402
from .io import atomic_path  # noqa: E402
from .scoring import ALL_SUBSETS  # noqa: E402
from .wer_table import read_wer_table, with_defaults  # noqa: E402

PathLike = Union[str, "os.PathLike[str]"]
Paths = Union[PathLike, Sequence[PathLike]]
Color = tuple[float, float, float]

KIND_ORDER = ("clean", "noise", "reverb", "noise+reverb", "random")
FAMILY_ORDER = ("baseline", "quantization", "pruning", "sparsity", "structured", "downsampling", "depth", "distillation")
PRUNING_FAMILIES = ("pruning", "sparsity")
SIGNIFICANCE_LEVEL = 0.05
# A variant's score is compared with the baseline's in the same cell: same model, decoder, subset and condition.
CELL_KEYS = ["model", "decoder", "subset", "condition"]
REQUIRED_COLUMNS = ("model", "variant", "method", "condition", "kind", "wer")
# Columns older tables lack (or a run left empty): filled with NaN so every figure can test them alike.
NUMERIC_COLUMNS = (
    "snr_db", "rt60_s", "wer_ci_low", "wer_ci_high", "substitutions", "deletions", "insertions", "n_words",
    "packed_mb", "parameters", "sparsity", "gmacs_per_s", "cpu_latency_ms",
    "baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high", "p_value",
)
PERCENT_COLUMNS = ("wer", "wer_ci_low", "wer_ci_high", "baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high")
WER_VALUES = ["wer", "wer_ci_low", "wer_ci_high", "baseline_wer"]
# What does not depend on the condition: a variant's identity and its measured costs.
VARIANT_COLUMNS = (
    "model", "decoder", "variant", "series", "series_label", "family", "method", "level", "recovery_steps",
    "packed_mb", "baseline_packed_mb", "parameters", "sparsity", "gmacs_per_s", "cpu_latency_ms",
)


# ----------------------------------------------------------------------------------------------
# Style


@dataclasses.dataclass(frozen=True)
class Style:
    """config ``report.style``: seaborn context, the variants' palette (None: seaborn's default, husl
    past 10 series) and the PNG resolution."""

    context: str = "paper"
    palette: str | None = None
    dpi: int = 130

    @classmethod
    def from_config(cls, style: Mapping[str, Any] | None) -> "Style":
        style = dict(style or {})
        known = [field.name for field in dataclasses.fields(cls)]
        for key in sorted(set(style) - set(known)):
            raise ConfigError(f"report.style.{key}", f"unknown key; known: {', '.join(known)}")
        result = cls(**{k: v for k, v in style.items() if v is not None})
        if result.context not in ("paper", "notebook", "talk", "poster"):
            raise ConfigError("report.style.context", f"{result.context!r} is not one of paper, notebook, talk, poster")
        if isinstance(result.dpi, bool) or not isinstance(result.dpi, int) or result.dpi < 1:
            raise ConfigError("report.style.dpi", f"must be a whole number >= 1, got {result.dpi!r}")
        if result.palette is not None:
            try:
                sns.color_palette(result.palette)
            except (ValueError, TypeError) as error:
                raise ConfigError("report.style.palette", f"{result.palette!r} is not a seaborn palette: {error}") from None
        return result


# matplotlib's theme is process-wide state; the palette and dpi that go with it live here beside it.
_style = Style()


def apply_style(style: Style) -> None:
    global _style
    _style = style
    sns.set_theme(style="whitegrid", context=style.context)


apply_style(Style())  # figures called directly (tests) look as make_figure draws them by default


def _colors(keys: Iterable[Hashable]) -> dict[Hashable, Color]:
    """One colour per key, in first-seen order (the config's order, which every figure follows)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    if _style.palette:
        palette = sns.color_palette(_style.palette, len(keys))
    else:
        # The default palette repeats after 10 colours; a method comparison has more series than that.
        palette = sns.color_palette(n_colors=len(keys)) if len(keys) <= 10 else sns.color_palette("husl", len(keys))
    return dict(zip(keys, palette))


# ----------------------------------------------------------------------------------------------
# The table


def is_baseline(table: pd.DataFrame) -> pd.Series:
    """The uncompressed reference: method none without recovery fine-tuning (variant id ``none``)."""
    return (table["method"] == "none") & (table["recovery_steps"].fillna(0) == 0)


def attach_baseline(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Adds ``baseline_<column>``: the baseline's value in the same cell (NaN where there is none)."""
    names = {column: f"baseline_{column}" for column in columns}
    reference = table[is_baseline(table)].drop_duplicates(CELL_KEYS)[CELL_KEYS + list(columns)].rename(columns=names)
    return table.drop(columns=list(names.values()), errors="ignore").merge(reference, on=CELL_KEYS, how="left")


def label_series(table: pd.DataFrame) -> pd.DataFrame:
    """``label`` (per variant) and ``series_label`` (per series): "model: variant (decoder)", naming the
    model and the decoder only when the table has several, so every figure tells series apart."""
    several_models, several_decoders = table["model"].nunique() > 1, table["decoder"].nunique() > 1

    def name(column: str) -> pd.Series:
        text = table[column].astype(str)
        if several_models:
            text = table["model"].astype(str) + ": " + text
        if several_decoders:
            text = text + " (" + table["decoder"].astype(str) + ")"
        return text

    return table.assign(label=name("variant"), series_label=name("series"))


def prepare_table(table: pd.DataFrame) -> pd.DataFrame:
    """The whole-test-set rows of a table (defaults filled as :func:`.wer_table.with_defaults` does), numeric
    columns as numbers, baseline WERs, labels."""
    missing = [column for column in REQUIRED_COLUMNS if column not in table]
    if missing:
        raise PipelineError(f"the table lacks the column(s) {', '.join(missing)}")
    table = with_defaults(table)
    for column in NUMERIC_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce") if column in table else np.nan
    table = table[table["subset"] == ALL_SUBSETS].reset_index(drop=True)
    # Tables from before baseline_wer: the baseline's own rows give it.
    table["baseline_wer"] = table["baseline_wer"].fillna(attach_baseline(table, ["wer"])["baseline_wer"])
    return label_series(table)


def load_table(wer_csv: PathLike) -> pd.DataFrame:
    """wer.csv (:func:`.wer_table.read_wer_table`) prepared for the figures; errors name the file."""
    table = read_wer_table(wer_csv, required=REQUIRED_COLUMNS)
    try:
        return prepare_table(table)
    except PipelineError as error:
        raise PipelineError(f"{wer_csv}: {error}") from None


# ----------------------------------------------------------------------------------------------
# Computations behind the figures (pure, tested on their own)


def relative_change(values: pd.Series, reference: pd.Series) -> pd.Series:
    """100 * (value - reference) / reference; NaN where the reference is missing or 0 (no relative change
    from a zero-WER baseline exists)."""
    reference = reference.where(reference > 0)
    return 100 * (values - reference) / reference


def pareto_front(points: Iterable[tuple[Hashable, float, float]]) -> list[Hashable]:
    """Keys of the non-dominated (key, cost, error) points, by increasing cost. A point is dominated when
    another is no worse in both and better in one; exact duplicates do not dominate each other.
    Points with a NaN coordinate are left out."""
    finite = sorted(((k, x, y) for k, x, y in points if math.isfinite(x) and math.isfinite(y)), key=lambda p: (p[1], p[2]))
    front: list[Hashable] = []
    best: tuple[float, float] = (math.inf, math.inf)  # the last front point's (cost, error)
    for key, cost, error in finite:
        if error < best[1] or (cost, error) == best:
            front.append(key)
            best = (cost, error)
    return front


def pool_by_kind(table: pd.DataFrame) -> pd.DataFrame:
    """Per label and condition kind: ``wer`` pooled as sum(word errors) / sum(reference words) over the
    kind's conditions (the kind's WER as if its conditions were one test set), and ``wer_min`` /
    ``wer_max``, the range of per-condition WERs (the whiskers). Rows without counts are not pooled."""
    errors = table[["substitutions", "deletions", "insertions"]].sum(axis=1, min_count=3)
    counted = errors.notna() & table["n_words"].notna()
    frame = table.assign(_errors=errors.where(counted), _words=table["n_words"].where(counted))
    pooled = frame.groupby(["label", "kind"], sort=False).agg(
        errors=("_errors", "sum"), words=("_words", "sum"), wer_min=("wer", "min"), wer_max=("wer", "max"),
        n_conditions=("condition", "nunique"),
    ).reset_index()
    pooled["wer"] = pooled["errors"] / pooled["words"].where(pooled["words"] > 0)
    return pooled


def variant_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per label (the index) with the columns that do not depend on the condition."""
    columns = [column for column in VARIANT_COLUMNS if column in table]
    return table.groupby("label", sort=False)[columns].first()


def mean_wer(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per label, WER averaged over the conditions every label was scored in, so a variant that misses a
    hard condition does not look better; CIs do not average, so the CI columns are NaN."""
    scored = table.dropna(subset=["wer"])
    conditions = [set(group) for _, group in scored.groupby("label", sort=False)["condition"]]
    shared = set.intersection(*conditions) if conditions else set()
    if shared:
        scored, note = scored[scored["condition"].isin(shared)], f"mean WER over the {len(shared)} shared conditions"
    else:
        note = "mean WER over each variant's conditions"
    means = scored.groupby("label", sort=False)[["wer", "baseline_wer"]].mean()
    means["wer_ci_low"] = means["wer_ci_high"] = np.nan
    return variant_summary(table).join(means[WER_VALUES], how="inner"), note


def reference_wer(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per label, the clean WER with its CI when the run has a clean condition, else ``mean_wer``."""
    clean = table[(table["kind"] == "clean") & table["wer"].notna()]
    if clean.empty:
        return mean_wer(table)
    values = clean.drop_duplicates("label").set_index("label")[WER_VALUES]
    return variant_summary(table).join(values, how="inner"), "clean WER"


def _percent(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(**{column: 100 * table[column] for column in PERCENT_COLUMNS if column in table})


def _pooled_percent(table: pd.DataFrame) -> pd.DataFrame:
    """``pool_by_kind`` in percent, with the min..max range as the whisker columns; a kind with a single
    condition has no range, so no whisker (rather than a cap that looks like a tiny CI)."""
    pooled = pool_by_kind(table)
    spread = pooled["n_conditions"] > 1
    pooled["wer_ci_low"], pooled["wer_ci_high"] = pooled["wer_min"].where(spread), pooled["wer_max"].where(spread)
    return _percent(pooled)


def _ordered_kinds(kinds: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(kinds))
    return [k for k in KIND_ORDER if k in present] + [k for k in present if k not in KIND_ORDER]


# ----------------------------------------------------------------------------------------------
# Drawing helpers shared by the figures


def _outputs(path: Paths) -> list[Path]:
    return [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]


def _save(fig: plt.Figure, path: Paths) -> None:
    try:
        for out in _outputs(path):
            with atomic_path(out) as tmp:
                fig.savefig(tmp, dpi=_style.dpi, bbox_inches="tight", format=out.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)


def _placeholder(path: Paths, message: str) -> None:
    """A figure that says why it is empty, so the report always has every panel."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    _save(fig, path)


def _panels(n: int, width: float, height: float, max_cols: int = 4, **kwargs: Any) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` axes on a grid, the unused cells hidden."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kwargs)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _suptitle(fig: plt.Figure, axes: Sequence[plt.Axes], text: str) -> None:
    """A title over all panels; with a single panel it goes above the panel's own title instead, since a
    suptitle wider than one panel would overlap it."""
    if len(axes) == 1:
        axes[0].set_title(f"{text}\n{axes[0].get_title()}".strip())
    else:
        fig.suptitle(text)


def _legend(fig: plt.Figure, axes: Sequence[plt.Axes], title: str | None = None) -> None:
    """One legend for all panels, right of them so it never covers data (the panels are laid out first,
    so the legend sits next to them, not past the figure's default margin)."""
    fig.tight_layout()
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize="small",
                   title=title, title_fontsize="small", frameon=False, ncol=1 if len(entries) <= 18 else 2)


def _annotate(ax: plt.Axes, points: pd.DataFrame, x: str, y: str, fontsize: float = 5.5) -> None:
    """Names each point (the index) beside it; a name that would print over an earlier one moves a line
    down or up, alternately, so the clustered points of a method comparison stay readable."""
    ax.autoscale_view()  # data -> display coordinates are final only once the limits are
    to_points = 72 / ax.figure.dpi
    line = fontsize + 1
    placed: list[tuple[float, float, float]] = []  # (left, bottom, width) of each name, in points

    def overlaps(left: float, bottom: float, width: float) -> bool:
        return any(left < l2 + w2 and l2 < left + width and abs(bottom - b2) < line for l2, b2, w2 in placed)

    for label, row in points.iterrows():
        if not (np.isfinite(row[x]) and np.isfinite(row[y])):
            continue
        anchor_x, anchor_y = (to_points * v for v in ax.transData.transform((row[x], row[y])))
        width = 0.6 * fontsize * len(str(label))  # a rough text width: enough to keep names apart
        offsets = (2 + sign * step * line for step in range(12) for sign in ((1,) if step == 0 else (-1, 1)))
        offset = next((o for o in offsets if not overlaps(anchor_x + 3, anchor_y + o, width)), 2)
        placed.append((anchor_x + 3, anchor_y + offset, width))
        ax.annotate(str(label), (row[x], row[y]), xytext=(3, offset), textcoords="offset points", fontsize=fontsize)


def _slant_ticks(ax: plt.Axes) -> None:
    """Slanted x tick labels whose ends sit under their ticks (long condition ids)."""
    plt.setp(ax.get_xticklabels(), rotation=50, ha="right", rotation_mode="anchor")


def _ci_errorbars(ax: plt.Axes, x: Any, y: Any, low: Any, high: Any, color: Any = "black") -> None:
    """95% CI whiskers low..high around y; rows whose CI is unknown get none (not a zero-length one)."""
    x, y, low, high = (np.asarray(v, dtype=float) for v in (x, y, low, high))
    known = np.isfinite(x) & np.isfinite(y) & np.isfinite(low) & np.isfinite(high)
    if known.any():
        # Clipped at 0: a rounded CI end may sit a hair past the point.
        yerr = np.vstack([np.clip(y - low, 0, None), np.clip(high - y, 0, None)])[:, known]
        ax.errorbar(x[known], y[known], yerr=yerr, fmt="none", ecolor=color, elinewidth=0.8, capsize=2)


def _line_with_ci(ax: plt.Axes, rows: pd.DataFrame, x: str, color: Color, label: str, **kwargs: Any) -> None:
    """WER against ``x``, sorted by ``x``, with CI whiskers in the line's colour."""
    rows = rows.dropna(subset=[x, "wer"]).sort_values(x, kind="stable")
    if rows.empty:
        return
    ax.plot(rows[x], rows["wer"], marker="o", ms=4, lw=1.2, color=color, label=label, **kwargs)
    _ci_errorbars(ax, rows[x], rows["wer"], rows["wer_ci_low"], rows["wer_ci_high"], color=color)


def _grouped_bars(ax: plt.Axes, data: pd.DataFrame, group: str, hue: str, groups: Sequence[str], colors: Mapping[Any, Color],
                  low: str = "wer_ci_low", high: str = "wer_ci_high") -> None:
    """Bars of ``wer`` at each group, one per hue level side by side, whiskers low..high. A missing cell
    leaves a gap rather than shifting the other bars."""
    data = data.drop_duplicates([hue, group])
    width = 0.8 / max(1, len(colors))
    for i, (level, color) in enumerate(colors.items()):
        rows = data[data[hue] == level].set_index(group).reindex(groups)
        x = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
        known = rows["wer"].notna().to_numpy()
        if not known.any():
            continue  # no bar at all: no legend entry either (an empty bar group would get a wrong colour)
        ax.bar(x[known], rows["wer"].to_numpy()[known], width=width, color=color, label=str(level))
        _ci_errorbars(ax, x, rows["wer"], rows[low], rows[high])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)


# ----------------------------------------------------------------------------------------------
# The figures


def wer_vs_snr(table: pd.DataFrame, path: Paths) -> None:
    """WER against SNR, one line per variant, one panel per noise type; clean WER dotted."""
    data = _percent(table)
    noisy = data[(data["kind"] == "noise") & data["snr_db"].notna()]
    if noisy.empty:
        return _placeholder(path, "no additive-noise condition in this run")
    colors = _colors(data["label"])
    clean = data[(data["kind"] == "clean")].dropna(subset=["wer"]).drop_duplicates("label").set_index("label")["wer"]
    noises = list(dict.fromkeys(noisy["noise"]))
    fig, axes = _panels(len(noises), 3.2, 2.8, sharey=True)
    for ax, noise in zip(axes, noises):
        for label, rows in noisy[noisy["noise"] == noise].groupby("label", sort=False):
            _line_with_ci(ax, rows, "snr_db", colors[label], label)
            if label in clean:
                ax.axhline(clean[label], ls=":", lw=1, color=colors[label])
        ax.invert_xaxis()  # easy to hard, left to right
        ax.set_title(noise)
        ax.set_xlabel("SNR (dB)")
    axes[0].set_ylabel("WER (%)")
    _suptitle(fig, axes, "WER vs SNR (whiskers: 95% bootstrap CI; dotted: clean WER)")
    _legend(fig, axes)
    _save(fig, path)


def wer_per_condition(table: pd.DataFrame, path: Paths) -> None:
    """Grouped bars: WER per condition and variant, with bootstrap 95% CIs."""
    data = _percent(table)
    conditions = list(dict.fromkeys(data["condition"]))
    colors = _colors(data["label"])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 0.12 * len(conditions) * len(colors)), 3.5))
    _grouped_bars(ax, data, "condition", "label", conditions, colors)
    ax.set_ylabel("WER (%)")
    if len(conditions) > 6:
        _slant_ticks(ax)
    ax.set_title("WER per condition and variant (whiskers: 95% bootstrap CI)")
    _legend(fig, [ax])
    _save(fig, path)


def wer_by_condition_kind(table: pd.DataFrame, path: Paths) -> None:
    """E1: WER pooled over each kind of condition (clean, noise, reverb, noise+reverb), per variant."""
    pooled = _pooled_percent(table)
    if pooled["wer"].isna().all():
        return _placeholder(path, "no condition has word error counts to pool")
    kinds = _ordered_kinds(pooled["kind"])
    colors = _colors(pooled["label"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.12 * len(kinds) * len(colors)), 3.5))
    _grouped_bars(ax, pooled, "kind", "label", kinds, colors)
    ax.set_ylabel("pooled WER (%)")
    ax.set_title("WER per condition kind: errors / words over the kind's conditions\n"
                 "(whiskers: min to max WER across those conditions)")
    _legend(fig, [ax])
    _save(fig, path)


def wer_vs_sparsity(table: pd.DataFrame, path: Paths) -> None:
    """WER against measured sparsity, one panel per pruning series (with the baseline at sparsity ~0),
    one line per condition."""
    data = _percent(table.dropna(subset=["sparsity"]))
    pruned = data[data["family"].isin(PRUNING_FAMILIES)]
    if pruned.empty:
        return _placeholder(path, "no pruning or N:M sparsity variant with a measured sparsity in this run")
    baseline = data[is_baseline(data)]
    panels = []
    for (model, decoder, series), rows in pruned.groupby(["model", "decoder", "series_label"], sort=False):
        reference = baseline[(baseline["model"] == model) & (baseline["decoder"] == decoder)]
        panels.append((series, pd.concat([reference, rows])))
    if all(rows["sparsity"].nunique() < 2 for _, rows in panels):
        return _placeholder(path, "fewer than two sparsity levels in every pruning series")
    conditions = list(dict.fromkeys(data["condition"]))
    colors = dict(zip(conditions, sns.color_palette("husl", len(conditions))))
    fig, axes = _panels(len(panels), 3.6, 3.0, max_cols=3, sharey=True)
    for ax, (series, rows) in zip(axes, panels):
        for condition, by_condition in rows.groupby("condition", sort=False):
            _line_with_ci(ax, by_condition, "sparsity", colors[condition], condition)
        ax.set_title(f"{series} (+ baseline)")
        ax.set_xlabel("measured sparsity (fraction of zero weights)")
    axes[0].set_ylabel("WER (%)")
    _suptitle(fig, axes, "WER vs sparsity per condition (whiskers: 95% bootstrap CI)")
    _legend(fig, axes, title="condition")
    _save(fig, path)


def _mark_baselines(ax: plt.Axes, points: pd.DataFrame, x: str, y: str, colors: Mapping[str, Color], line: bool) -> None:
    """The baseline as a star (and, with ``line``, a dotted line at its WER), one per model and decoder."""
    for label, row in points[is_baseline(points)].iterrows():
        if not (np.isfinite(row[x]) and np.isfinite(row[y])):
            continue
        color = colors.get(row.get("series_label"), "black")
        ax.scatter([row[x]], [row[y]], marker="*", s=180, color=color, edgecolor="black", zorder=5, label=f"{label}, baseline")
        if line:
            ax.axhline(row[y], ls=":", lw=1, color=color)


def wer_vs_gmacs(table: pd.DataFrame, path: Paths) -> None:
    """E2/E4: WER against compute, one line per series over its levels, the baseline starred."""
    points, note = reference_wer(_percent(table))
    points = points.dropna(subset=["gmacs_per_s", "wer"])
    if points.empty:
        return _placeholder(path, "no variant has both a WER and a measured GMACs per second")
    colors = _colors(points["series_label"])
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for series, rows in points[~is_baseline(points)].groupby("series_label", sort=False):
        _line_with_ci(ax, rows, "gmacs_per_s", colors[series], series)
    _mark_baselines(ax, points, "gmacs_per_s", "wer", colors, line=True)
    base = points[is_baseline(points)]
    _ci_errorbars(ax, base["gmacs_per_s"], base["wer"], base["wer_ci_low"], base["wer_ci_high"])
    ax.set_xlabel("compute (GMACs per second of audio)")
    ax.set_ylabel(f"{note} (%)")
    ax.set_title(f"{note} vs compute, one line per method over its levels\n(star, dotted: baseline; whiskers: 95% CI)")
    _legend(fig, [ax])
    _save(fig, path)


def rel_wer_vs_size(table: pd.DataFrame, path: Paths) -> None:
    """E3: relative WER change against size, both relative to the baseline, coloured by family."""
    if not is_baseline(table).any():
        return _placeholder(path, "no baseline variant (method none, no recovery) to compare sizes and WERs with")
    points, note = reference_wer(attach_baseline(table, ["packed_mb"]))
    points = points.assign(size_pct=100 + relative_change(points["packed_mb"], points["baseline_packed_mb"]),
                           rel_wer_pct=relative_change(points["wer"], points["baseline_wer"]))
    points = points.dropna(subset=["size_pct", "rel_wer_pct"])
    if points.empty:
        return _placeholder(path, "no variant has a WER and a packed size next to its baseline's")
    # Colours follow FAMILY_ORDER, not the families present, so a family keeps its colour from run to run.
    colors = _colors([*FAMILY_ORDER, *sorted(set(points["family"]) - set(FAMILY_ORDER))])
    families = [family for family in colors if family in set(points["family"])]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(0, ls=":", lw=1, color="grey")
    ax.axvline(100, ls=":", lw=1, color="grey")
    others = points[~is_baseline(points)]
    for family in families:
        rows = others[others["family"] == family]
        if not rows.empty:
            ax.scatter(rows["size_pct"], rows["rel_wer_pct"], s=36, color=colors[family], edgecolor="white", label=family,
                       zorder=3)
    _mark_baselines(ax, points, "size_pct", "rel_wer_pct", {}, line=False)
    _annotate(ax, others, "size_pct", "rel_wer_pct")
    ax.set_xlabel("packed size (% of the baseline's)")
    ax.set_ylabel(f"relative change of {note} (%)")
    ax.set_title(f"Relative {note} change vs size (baseline starred at 100 %, 0 %)")
    _legend(fig, [ax], title="family")
    _save(fig, path)


def distillation(table: pd.DataFrame, path: Paths) -> None:
    """E5: students against their teacher (the baseline), WER pooled per condition kind."""
    students = table[table["family"] == "distillation"]
    if students.empty:
        return _placeholder(path, "no distillation variant in this run")
    teachers = table[is_baseline(table)].merge(students[["model", "decoder"]].drop_duplicates())  # of those students only
    # Each model's teacher next to its students, models in table order.
    order = {pair: i for i, pair in enumerate(dict.fromkeys(zip(table["model"], table["decoder"])))}
    data = pd.concat([teachers, students])
    data = data.iloc[np.argsort([order[pair] for pair in zip(data["model"], data["decoder"])], kind="stable")]
    pooled = _pooled_percent(data)
    summary = variant_summary(data)
    labels = list(summary.index)
    colors = _colors(_ordered_kinds(pooled["kind"]))
    ticks = [_cost_label(label, summary.loc[label]) for label in labels]
    # Wide enough for the longest tick line: the labels carry the costs, so they are not rotated.
    group_width = max(0.3 * len(colors), 0.07 * max(len(line) for tick in ticks for line in tick.split("\n")))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + group_width * len(labels)), 3.8))
    _grouped_bars(ax, pooled, "label", "kind", labels, colors)
    ax.set_xticks(range(len(labels)), ticks, fontsize="small")
    ax.set_ylabel("pooled WER (%)")
    ax.set_title("Distilled students vs their teacher, WER pooled per condition kind\n"
                 "(whiskers: min to max over the kind's conditions)")
    _legend(fig, [ax], title="condition kind")
    _save(fig, path)


def _cost_label(label: str, variant: pd.Series) -> str:
    """A tick label with the variant's size and CPU latency (``?`` when not measured)."""
    params = f"{variant['parameters'] / 1e6:.2f} M" if np.isfinite(variant["parameters"]) else "? M"
    latency = f"{variant['cpu_latency_ms']:.0f} ms" if np.isfinite(variant["cpu_latency_ms"]) else "? ms"
    role = " (teacher)" if variant["method"] == "none" else ""
    return f"{label}{role}\n{params} params, {latency} CPU"


def degradation_heatmap(table: pd.DataFrame, path: Paths) -> None:
    """Relative WER change vs the baseline in the same condition, variant x condition."""
    data = table[~is_baseline(table)].assign(change=relative_change(table["wer"], table["baseline_wer"]))
    if data["change"].isna().all():
        return _placeholder(path, "no variant has a baseline score in the same condition to compare with")
    data = data.drop_duplicates(["label", "condition"])
    labels, conditions = list(dict.fromkeys(data["label"])), list(dict.fromkeys(table["condition"]))
    change = data.pivot(index="label", columns="condition", values="change").reindex(index=labels, columns=conditions)
    p_value = data.pivot(index="label", columns="condition", values="p_value").reindex(index=labels, columns=conditions)
    limit = float(np.nanmax(np.abs(change.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * len(conditions), 1.2 + 0.3 * len(labels)))
    sns.heatmap(change, cmap="vlag", center=0, vmin=-limit, vmax=limit, linewidths=0.5, linecolor="white", ax=ax,
                cbar_kws={"label": "WER change vs baseline (%)"})
    for (i, j), value in np.ndenumerate(change.to_numpy()):
        if not np.isfinite(value):
            continue  # a missing cell stays blank
        # p >= 0.05 is known to be not significant; NaN p (no test) is left unmarked.
        if p_value.iat[i, j] >= SIGNIFICANCE_LEVEL:
            # Hatched, with the number kept opaque: the value stays readable, the mark says "may be noise".
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="//", edgecolor=(0.3, 0.3, 0.3, 0.45), lw=0))
        ax.text(j + 0.5, i + 0.5, f"{round(value):+d}", ha="center", va="center", fontsize=6,
                color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_xlabel("")
    ax.set_ylabel("")
    _slant_ticks(ax)
    ax.set_title("Relative WER change vs the baseline in each condition (%)\n"
                 f"hatched: not significant (paired bootstrap p >= {SIGNIFICANCE_LEVEL:g})")
    _save(fig, path)


def pareto_latency(table: pd.DataFrame, path: Paths) -> None:
    """Mean WER against CPU latency; the non-dominated variants joined by a step line and named."""
    points, note = mean_wer(_percent(table))
    points = points.dropna(subset=["cpu_latency_ms", "wer"])
    if points.empty:
        return _placeholder(path, "no variant has both a WER and a measured CPU latency")
    front = points.loc[pareto_front(zip(points.index, points["cpu_latency_ms"], points["wer"]))]
    dominated = points.drop(index=front.index)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.scatter(dominated["cpu_latency_ms"], dominated["wer"], s=24, color="lightgrey", edgecolor="grey", label="dominated")
    ax.step(front["cpu_latency_ms"], front["wer"], where="post", color="tab:red", lw=1.2)
    ax.scatter(front["cpu_latency_ms"], front["wer"], s=36, color="tab:red", zorder=3, label="Pareto front")
    _annotate(ax, front, "cpu_latency_ms", "wer", fontsize=6)
    ax.set_xlabel("CPU latency (ms per fixed input)")
    ax.set_ylabel(f"{note} (%)")
    ax.set_title(f"{note} vs CPU latency\n(red step line: Pareto front, named; grey: dominated variants)")
    _legend(fig, [ax])
    _save(fig, path)


FigureFunction = Callable[[pd.DataFrame, Paths], None]

FIGURES: dict[str, FigureFunction] = {
    "wer_vs_snr": wer_vs_snr,
    "wer_per_condition": wer_per_condition,
    "wer_by_condition_kind": wer_by_condition_kind,
    "wer_vs_sparsity": wer_vs_sparsity,
    "wer_vs_gmacs": wer_vs_gmacs,
    "rel_wer_vs_size": rel_wer_vs_size,
    "distillation": distillation,
    "degradation_heatmap": degradation_heatmap,
    "pareto_latency": pareto_latency,
}


def make_figure(name: str, wer_csv: PathLike, out_png: PathLike, out_pdf: PathLike | None = None,
                style: Mapping[str, Any] | None = None) -> None:
    """Figure ``name`` from the table at ``wer_csv``, as PNG (and PDF); ``style`` is config ``report.style``."""
    if name not in FIGURES:
        raise PipelineError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    resolved = Style.from_config(style)
    table = load_table(wer_csv)  # raises before anything is written
    apply_style(resolved)
    outputs = [out_png] if out_pdf is None else [out_png, out_pdf]
    if table.empty:
        return _placeholder(outputs, "no whole-test-set rows (subset 'all') in the table")
    FIGURES[name](table, outputs)
