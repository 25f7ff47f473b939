"""Seaborn figures, made from ``tables/wer.csv`` alone."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def _placeholder(path: str | os.PathLike[str], message: str) -> None:
    """A figure that says why it is empty, so the report always has every panel."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    _save(fig, path)


def _percent(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for column in ("wer", "wer_ci_low", "wer_ci_high", "cer"):
        table[column] = 100 * table[column]
    return table


def _variant_palette(table: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """One colour per variant, in config order, shared by every figure."""
    variants = list(dict.fromkeys(table["variant"]))
    # The default palette repeats after 10 colours; a method comparison has more variants than that.
    palette = sns.color_palette(n_colors=len(variants)) if len(variants) <= 10 else sns.color_palette("husl", len(variants))
    return dict(zip(variants, palette))


def wer_vs_snr(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """WER against SNR, one line per variant, one panel per noise type; clean WER dotted."""
    noisy = _percent(table[table["kind"] == "noise"])
    if noisy.empty:
        return _placeholder(path, "no additive-noise condition in this run")
    palette = _variant_palette(table)
    grid = sns.relplot(
        data=noisy.sort_values("snr_db"), x="snr_db", y="wer", hue="variant", hue_order=list(palette), palette=palette,
        col="noise", kind="line", marker="o", height=3, aspect=1.1, facet_kws={"sharey": True},
    )
    clean = _percent(table[table["kind"] == "clean"]).set_index("variant")["wer"]
    for ax in grid.axes.flat:
        for variant, wer in clean.items():
            ax.axhline(wer, ls=":", lw=1, color=palette[variant])
        ax.invert_xaxis()
    grid.set_axis_labels("SNR (dB)", "WER (%)")
    grid.figure.suptitle("WER vs SNR (dotted: clean)", y=1.03)
    _save(grid.figure, path)


def wer_per_condition(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Grouped bars: WER per condition and variant, with bootstrap 95% CIs."""
    data = _percent(table)
    conditions = list(dict.fromkeys(data["condition"]))
    palette = _variant_palette(table)
    variants = list(palette)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(conditions) * max(1, len(variants)) / 2), 3.5))
    sns.barplot(data=data, x="condition", y="wer", hue="variant", order=conditions, hue_order=variants, palette=palette,
                errorbar=None, ax=ax)
    for container, variant in zip(ax.containers, variants):
        rows = data[data["variant"] == variant].set_index("condition").reindex(conditions)
        centers = [bar.get_x() + bar.get_width() / 2 for bar in container]
        ax.errorbar(centers, rows["wer"], yerr=[rows["wer"] - rows["wer_ci_low"], rows["wer_ci_high"] - rows["wer"]],
                    fmt="none", ecolor="black", lw=0.8, capsize=1.5)
    ax.set_xlabel("")
    ax.set_ylabel("WER (%)")
    ax.tick_params(axis="x", rotation=60)
    ax.set_title("WER per condition and variant (95% bootstrap CI)")
    _save(fig, path)


def wer_vs_sparsity(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """WER against sparsity for the baseline and pruning variants, one line per condition kind."""
    data = _percent(table[table["method"].isin(["none", "magnitude"])])
    if data["sparsity"].nunique() < 2:
        return _placeholder(path, "fewer than two sparsity levels in this run")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    conditions = list(dict.fromkeys(data["condition"]))
    sns.lineplot(data=data.sort_values("sparsity", kind="stable"), x="sparsity", y="wer", hue="condition", hue_order=conditions,
                 palette=sns.color_palette("husl", len(conditions)), marker="o", ax=ax, legend="brief")
    ax.set_xlabel("sparsity of the whole model (measured fraction of zero weights)")
    ax.set_ylabel("WER (%)")
    ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title("WER vs sparsity per condition")
    _save(fig, path)


def wer_vs_cost(table: pd.DataFrame, path: str | os.PathLike[str], column: str, label: str) -> None:
    """Clean and mean-over-conditions WER against one measured cost column, one point per variant."""
    data = _percent(table)
    summary = data.groupby(["variant", column], as_index=False).agg(mean_wer=("wer", "mean"))
    clean = data[data["kind"] == "clean"][["variant", "wer"]].rename(columns={"wer": "clean_wer"})
    summary = summary.merge(clean, on="variant", how="left").melt(
        id_vars=["variant", column], value_vars=["clean_wer", "mean_wer"], var_name="set", value_name="wer")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    palette = _variant_palette(table)
    sns.scatterplot(data=summary, x=column, y="wer", hue="variant", hue_order=list(palette), palette=palette, style="set",
                    s=60, ax=ax)
    ax.set_xlabel(label)
    ax.set_ylabel("WER (%)")
    ax.legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title(f"WER vs {label.split(' (')[0]} (clean, and mean over all conditions)", fontsize=9)
    _save(fig, path)


def wer_vs_size(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    wer_vs_cost(table, path, "packed_mb", "packed weight size (MB: bits, scales and N:M metadata counted)")


def wer_vs_gmacs(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    wer_vs_cost(table, path, "gmacs_per_s", "compute (GMACs per second of audio)")


def wer_vs_latency(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    wer_vs_cost(table, path, "cpu_latency_ms", "CPU latency (ms per fixed input)")


FIGURES = {
    "wer_vs_snr": wer_vs_snr,
    "wer_per_condition": wer_per_condition,
    "wer_vs_sparsity": wer_vs_sparsity,
    "wer_vs_size": wer_vs_size,
    "wer_vs_gmacs": wer_vs_gmacs,
    "wer_vs_latency": wer_vs_latency,
}


def label_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """With several models, a series is a (model, variant) pair: name it so, so every figure tells them apart."""
    if table["model"].nunique() <= 1:
        return table
    return table.assign(variant=table["model"].astype(str) + ": " + table["variant"].astype(str))


def make_figure(name: str, wer_csv: str, out_png: str) -> None:
    FIGURES[name](label_by_model(pd.read_csv(wer_csv)), out_png)
