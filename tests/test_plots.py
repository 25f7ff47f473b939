"""The report's figures: the computations behind them on hand-made tables, and every figure built from
small synthetic ``wer.csv`` tables, complete and with holes, as real PNG and PDF files."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asrcompress import plots
from asrcompress.errors import ConfigError, PipelineError
from asrcompress.wer_table import series_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"

# condition, kind, noise, snr_db, rt60_s, how much harder than clean (WER factor)
CONDITIONS = [
    ("clean", "clean", "none", math.nan, math.nan, 1.0),
    ("noise/white/20", "noise", "white", 20, math.nan, 1.5),
    ("noise/white/5", "noise", "white", 5, math.nan, 3.0),
    ("noise/babble/5", "noise", "babble", 5, math.nan, 3.5),
    ("reverb/0.3", "reverb", "none", math.nan, 0.3, 2.0),
    ("noise+reverb/white/20/0.3", "noise+reverb", "white", 20, 0.3, 2.5),
]
# variant, method, level, family, recovery steps, clean WER, packed MB, parameters, GMACs/s, CPU ms, sparsity
VARIANTS = [
    ("none", "none", math.nan, "baseline", 0, 0.10, 8.0, 2.0e6, 0.16, 60.0, 0.0),
    ("dynamic_int8", "dynamic_int8", math.nan, "quantization", 0, 0.11, 3.0, 2.0e6, 0.16, 40.0, 0.02),
    ("magnitude~0.3", "magnitude", 0.3, "pruning", 0, 0.10, 8.0, 2.0e6, 0.16, 61.0, 0.3),
    ("magnitude~0.6", "magnitude", 0.6, "pruning", 0, 0.14, 8.0, 2.0e6, 0.16, 62.0, 0.6),
    ("nm_sparsity~2of4+ft60", "nm_sparsity", "2:4", "sparsity", 60, 0.12, 5.0, 2.0e6, 0.16, 59.0, 0.45),
    ("structured~0.2+ft60", "structured", 0.2, "structured", 60, 0.12, 6.5, 1.6e6, 0.13, 50.0, 0.0),
    ("structured~0.4+ft60", "structured", 0.4, "structured", 60, 0.16, 5.0, 1.2e6, 0.10, 30.0, 0.0),
    ("distil_small+ft60", "distillation", math.nan, "distillation", 60, 0.25, 2.0, 0.5e6, 0.05, 20.0, 0.0),
]


def wer_table(models: tuple[str, ...] = ("m1",), decoders: tuple[str, ...] = ("greedy",)) -> pd.DataFrame:
    """A complete table in the new format: counts consistent with the WER, CIs, deltas against the
    baseline and p-values, plus rows of a corpus subset that the figures must ignore."""
    rows = []
    for m, model in enumerate(models):
        for d, decoder in enumerate(decoders):
            for v, (variant, method, level, family, steps, clean, packed, params, gmacs, cpu_ms, sparsity) in enumerate(VARIANTS):
                for c, (condition, kind, noise, snr, rt60, hardness) in enumerate(CONDITIONS):
                    n_words = 200 + 10 * c
                    errors = round(clean * hardness * (1 + 0.1 * m + 0.05 * d) * n_words)
                    for subset in ("all", "librispeech/test-clean"):
                        rows.append(dict(
                            model=model, variant=variant, method=method, level=level, family=family,
                            series=series_of(variant), decoder=decoder, subset=subset,
                            condition=condition, kind=kind, noise=noise, snr_db=snr, rt60_s=rt60,
                            wer=errors / n_words, wer_ci_low=errors / n_words - 0.02, wer_ci_high=errors / n_words + 0.03,
                            substitutions=errors - errors // 3, deletions=errors // 6, insertions=errors // 3 - errors // 6,
                            n_utts=20, n_words=n_words, recovery_steps=steps, packed_mb=packed, parameters=params,
                            sparsity=sparsity, gmacs_per_s=gmacs, cpu_latency_ms=cpu_ms,
                            # deterministic pseudo p-values: some significant, some not
                            p_value=math.nan if variant == "none" else (0.01 if (v + c) % 2 else 0.4),
                        ))
    table = pd.DataFrame(rows)
    keys = ["model", "decoder", "subset", "condition"]
    baseline = table[table["variant"] == "none"].set_index(keys)["wer"]
    table["baseline_wer"] = table.set_index(keys).index.map(baseline)
    table["delta_wer"] = table["wer"] - table["baseline_wer"]
    table["delta_ci_low"], table["delta_ci_high"] = table["delta_wer"] - 0.01, table["delta_wer"] + 0.01
    return table


def with_holes(table: pd.DataFrame) -> pd.DataFrame:
    """Missing cells: a variant without its noisy conditions, another without clean, NaN CIs, NaN costs."""
    table = table[~((table["variant"] == "magnitude~0.6") & (table["kind"] == "noise"))]
    table = table[~((table["variant"] == "dynamic_int8") & (table["kind"] == "clean"))].copy()
    table.loc[table["variant"] == "structured~0.2+ft60", ["wer_ci_low", "wer_ci_high"]] = math.nan
    table.loc[table["variant"] == "structured~0.4+ft60", ["gmacs_per_s", "cpu_latency_ms", "packed_mb", "parameters"]] = math.nan
    table.loc[table["condition"] == "reverb/0.3", ["substitutions", "n_words"]] = math.nan
    return table


def no_baseline(table: pd.DataFrame) -> pd.DataFrame:
    table = table[table["variant"] != "none"].copy()
    table[["baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high", "p_value"]] = math.nan
    return table


def old_format(table: pd.DataFrame) -> pd.DataFrame:
    """A table from before the family/series/decoder/subset/delta columns."""
    new = ["family", "series", "decoder", "subset", "baseline_wer", "delta_wer", "delta_ci_low", "delta_ci_high", "p_value"]
    return table[table["subset"] == "all"].drop(columns=new)


TABLES = {
    "complete": wer_table,
    "holes": lambda: with_holes(wer_table()),
    "no_baseline": lambda: no_baseline(wer_table()),
    "only_clean": lambda: wer_table().query("kind == 'clean'"),
    "one_variant": lambda: wer_table().query("variant == 'dynamic_int8'"),
    "old_format": lambda: old_format(wer_table()),
    "two_models_two_decoders": lambda: with_holes(wer_table(models=("m1", "m2"), decoders=("greedy", "lm"))),
}


def magic(path: Path) -> bytes:
    return path.read_bytes()[:8]


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


@pytest.fixture
def placeholders(monkeypatch) -> list[str]:
    """The messages of the placeholder figures drawn (the real ones are still written)."""
    messages: list[str] = []
    real = plots._placeholder

    def spy(path, message):
        messages.append(message)
        real(path, message)

    monkeypatch.setattr(plots, "_placeholder", spy)
    return messages


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures handed to ``_save``, kept open so a test can look at what was drawn."""
    figures: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    yield figures
    plots.plt.close("all")


# ----------------------------------------------------------------------------------------------
# The computations


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    points = [
        ("fast_bad", 10.0, 0.50),
        ("slow_good", 100.0, 0.10),
        ("middle", 40.0, 0.20),
        ("dominated", 50.0, 0.30),  # middle is faster and better
        ("same_wer_slower", 60.0, 0.20),  # ties middle on WER, slower: dominated
        ("same_cost_worse", 40.0, 0.25),  # ties middle on cost, worse: dominated
        ("twin", 40.0, 0.20),  # an exact duplicate of middle: neither dominates the other
        ("unmeasured", math.nan, 0.01),
        ("slowest", 200.0, 0.10),  # ties slow_good on WER, slower: dominated
    ]
    assert plots.pareto_front(points) == ["fast_bad", "middle", "twin", "slow_good"]
    assert plots.pareto_front([]) == []
    assert plots.pareto_front([("only", 1.0, 1.0)]) == ["only"]


def test_relative_change_against_the_baseline_of_the_same_cell():
    table = pd.DataFrame({
        "model": ["a"] * 4 + ["b"] * 2,
        "variant": ["none", "q", "none", "q", "none", "q"],
        "method": ["none", "q", "none", "q", "none", "q"],
        "condition": ["clean", "clean", "noise", "noise", "clean", "clean"],
        "kind": ["clean", "clean", "noise", "noise", "clean", "clean"],
        "wer": [0.10, 0.15, 0.40, 0.30, 0.0, 0.05],
    })
    prepared = plots.prepare_table(table)  # an old table: baseline_wer comes from the baseline's rows
    assert prepared["baseline_wer"].tolist() == [0.10, 0.10, 0.40, 0.40, 0.0, 0.0]
    change = plots.relative_change(prepared["wer"], prepared["baseline_wer"])
    np.testing.assert_allclose(change[:4], [0.0, 50.0, 0.0, -25.0])
    assert change[4:].isna().all()  # a zero-WER baseline has no relative change


def test_pool_by_kind_is_errors_over_words_with_the_range_of_condition_wers():
    table = plots.prepare_table(pd.DataFrame({
        "model": "m", "variant": "v", "method": "magnitude",
        "condition": ["clean", "noise/a/10", "noise/b/10", "noise/c/10"],
        "kind": ["clean", "noise", "noise", "noise"],
        "wer": [0.1, 0.5, 0.2, 0.9],
        "substitutions": [5, 30, 10, 1], "deletions": [3, 10, 5, 1], "insertions": [2, 10, 5, 1],
        "n_words": [100, 100, 100, math.nan],  # the last one cannot be pooled
    }))
    pooled = plots.pool_by_kind(table).set_index("kind")
    assert pooled.loc["clean", "wer"] == pytest.approx(10 / 100)
    assert pooled.loc["noise", "wer"] == pytest.approx((50 + 20) / (100 + 100))
    assert (pooled.loc["noise", "wer_min"], pooled.loc["noise", "wer_max"]) == (0.2, 0.9)
    assert pooled.loc["noise", "n_conditions"] == 3


def test_mean_wer_averages_only_the_conditions_every_variant_has():
    table = plots.prepare_table(wer_table().query("subset == 'all'"))
    table = table[~((table["variant"] == "magnitude~0.6") & (table["condition"] == "noise/babble/5"))]
    means, note = plots.mean_wer(table)
    shared = table[table["condition"] != "noise/babble/5"]
    expected = shared.groupby("label")["wer"].mean()
    np.testing.assert_allclose(means["wer"], expected.reindex(means.index))
    assert "5 shared conditions" in note


def test_reference_wer_is_clean_with_its_ci_else_the_mean():
    table = plots.prepare_table(wer_table())
    clean, note = plots.reference_wer(table)
    assert note == "clean WER"
    assert clean.loc["none", "wer"] == pytest.approx(0.10)
    assert clean.loc["none", "wer_ci_high"] == pytest.approx(0.13)
    noisy, note = plots.reference_wer(table[table["kind"] != "clean"])
    assert note.startswith("mean WER") and noisy["wer_ci_low"].isna().all()


def test_series_and_family_for_tables_without_those_columns():
    prepared = plots.prepare_table(old_format(wer_table()))
    assert set(prepared["decoder"]) == {"greedy"} and set(prepared["subset"]) == {"all"}
    assert prepared.set_index("variant")["family"].to_dict()["nm_sparsity~2of4+ft60"] == "sparsity"


def test_labels_name_model_and_decoder_only_when_they_vary():
    one = plots.prepare_table(wer_table())
    assert set(one["label"]) == {v[0] for v in VARIANTS}
    several = plots.prepare_table(wer_table(models=("m1", "m2"), decoders=("greedy", "lm")))
    assert "m2: magnitude~0.3 (lm)" in set(several["label"])
    assert "m1: structured+ft60 (greedy)" in set(several["series_label"])
    models_only = plots.prepare_table(wer_table(models=("m1", "m2")))
    assert "m2: none" in set(models_only["label"])


def test_prepare_keeps_the_whole_test_set_rows_only():
    table = plots.prepare_table(wer_table())
    assert set(table["subset"]) == {"all"}
    assert len(table) == len(VARIANTS) * len(CONDITIONS)


# ----------------------------------------------------------------------------------------------
# The figures


# Tables from which every figure has something real to draw; the others may get placeholders.
FULL_TABLES = ("complete", "holes", "old_format", "two_models_two_decoders")


@pytest.mark.parametrize("table_name", list(TABLES))
@pytest.mark.parametrize("figure", list(plots.FIGURES))
def test_every_figure_builds_from_every_table(tmp_path, placeholders, figure, table_name):
    csv = tmp_path / "wer.csv"
    TABLES[table_name]().to_csv(csv, index=False)
    png, pdf = tmp_path / f"{figure}.png", tmp_path / f"{figure}.pdf"
    plots.make_figure(figure, str(csv), str(png), str(pdf))
    assert magic(png) == PNG_MAGIC
    assert magic(pdf).startswith(PDF_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["wer.csv", png.name, pdf.name])  # no temporary left
    if table_name in FULL_TABLES:
        assert placeholders == []


@pytest.mark.parametrize(("table_name", "expected"), [
    ("no_baseline", {"rel_wer_vs_size": "no baseline", "degradation_heatmap": "no variant has a baseline score",
                     "distillation": None, "pareto_latency": None}),
    ("only_clean", {"wer_vs_snr": "no additive-noise", "wer_vs_sparsity": None, "distillation": None}),
    ("one_variant", {"wer_vs_sparsity": "no pruning", "distillation": "no distillation",
                     "rel_wer_vs_size": "no baseline"}),
])
def test_figures_say_why_they_are_empty(tmp_path, placeholders, table_name, expected):
    table = plots.prepare_table(TABLES[table_name]())
    for name, reason in expected.items():
        placeholders.clear()
        plots.FIGURES[name](table, tmp_path / f"{name}.png")
        assert (placeholders and reason in placeholders[0]) if reason else placeholders == [], (name, placeholders)


def test_heatmap_marks_exactly_the_insignificant_cells(drawn, tmp_path):
    table = plots.prepare_table(with_holes(wer_table()))
    plots.degradation_heatmap(table, tmp_path / "h.png")
    ax = drawn[0].axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    compared = table[~plots.is_baseline(table)]
    assert len(hatched) == int((compared["p_value"] >= plots.SIGNIFICANCE_LEVEL).sum())
    numbers = [t.get_text() for t in ax.texts]
    assert len(numbers) == len(compared)  # one number per scored cell; the missing ones stay blank
    # the worst cell is magnitude~0.6 in clean, 40 % worse than the baseline
    assert "+40" in numbers


def test_pareto_figure_names_the_front_and_only_the_front(drawn, tmp_path):
    table = plots.prepare_table(wer_table())
    plots.pareto_latency(table, tmp_path / "p.png")
    named = {t.get_text() for t in drawn[0].axes[0].texts}
    means, _ = plots.mean_wer(table)
    assert named == set(plots.pareto_front(zip(means.index, means["cpu_latency_ms"], means["wer"])))
    # structured~0.2 (50 ms) is beaten by dynamic_int8 (40 ms, lower WER); magnitude~0.3 ties none on WER, slower
    assert named == {"distil_small+ft60", "structured~0.4+ft60", "dynamic_int8", "none"}


def test_gmacs_figure_has_one_line_per_series_and_a_starred_baseline(drawn, tmp_path):
    plots.wer_vs_gmacs(plots.prepare_table(wer_table()), tmp_path / "g.png")
    ax = drawn[0].axes[0]
    lines = {line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert {"structured+ft60", "magnitude", "dynamic_int8"} <= lines
    assert "structured~0.2+ft60" not in lines
    stars = [c for c in ax.collections if c.get_label() == "none, baseline"]
    assert len(stars) == 1


def test_sparsity_figure_has_one_panel_per_pruning_series(drawn, tmp_path):
    plots.wer_vs_sparsity(plots.prepare_table(wer_table()), tmp_path / "s.png")
    titles = [ax.get_title() for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    assert titles == ["magnitude (+ baseline)", "nm_sparsity+ft60 (+ baseline)"]


def test_kind_bars_are_the_pooled_wers_in_kind_order(drawn, tmp_path):
    table = plots.prepare_table(wer_table())
    plots.wer_by_condition_kind(table, tmp_path / "k.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "noise", "reverb", "noise+reverb"]
    pooled = plots.pool_by_kind(table[table["label"] == "none"]).set_index("kind")
    heights = [bar.get_height() for bar in ax.containers[0]]  # the first variant's bars
    np.testing.assert_allclose(heights, 100 * pooled.loc[["clean", "noise", "reverb", "noise+reverb"], "wer"])


def test_distillation_ticks_carry_parameters_and_latency(drawn, tmp_path):
    plots.distillation(plots.prepare_table(wer_table()), tmp_path / "d.png")
    ticks = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert ticks == ["none (teacher)\n2.00 M params, 60 ms CPU", "distil_small+ft60\n0.50 M params, 20 ms CPU"]


def test_empty_table_is_an_error_naming_the_file(tmp_path):
    header_only = tmp_path / "wer.csv"
    wer_table().head(0).to_csv(header_only, index=False)
    zero_bytes = tmp_path / "nothing.csv"
    zero_bytes.write_text("")
    for csv in (header_only, zero_bytes):
        with pytest.raises(PipelineError, match="no rows") as error:
            plots.make_figure("wer_vs_snr", str(csv), str(tmp_path / "out.png"), str(tmp_path / "out.pdf"))
        assert str(csv) in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nothing.csv", "wer.csv"]


def test_a_table_without_whole_test_set_rows_gets_a_placeholder(tmp_path, placeholders):
    csv = tmp_path / "wer.csv"
    wer_table().query("subset != 'all'").to_csv(csv, index=False)
    plots.make_figure("wer_per_condition", str(csv), str(tmp_path / "out.png"))
    assert placeholders and "subset" in placeholders[0]


def test_missing_required_column_names_the_file(tmp_path):
    csv = tmp_path / "wer.csv"
    wer_table().drop(columns=["kind"]).to_csv(csv, index=False)
    with pytest.raises(PipelineError, match="kind") as error:
        plots.make_figure("wer_vs_snr", str(csv), str(tmp_path / "out.png"))
    assert str(csv) in str(error.value)


def test_style_sets_resolution_and_rejects_unknown_keys(tmp_path):
    csv = tmp_path / "wer.csv"
    wer_table().to_csv(csv, index=False)
    sizes = {}
    for dpi in (50, 150):
        out = tmp_path / f"dpi{dpi}.png"
        plots.make_figure("pareto_latency", str(csv), str(out), style={"dpi": dpi, "context": "talk", "palette": "colorblind"})
        sizes[dpi] = png_size(out)
    assert sizes[150][0] > 2.5 * sizes[50][0]
    for bad in ({"colour": "red"}, {"context": "huge"}, {"dpi": 0}, {"palette": "no_such_palette"}):
        with pytest.raises(ConfigError, match="report.style"):
            plots.make_figure("pareto_latency", str(csv), str(tmp_path / "bad.png"), style=bad)
    assert not (tmp_path / "bad.png").exists()
    plots.apply_style(plots.Style())


def test_palette_from_style_colours_the_variants(tmp_path):
    import seaborn as sns

    plots.apply_style(plots.Style(palette="colorblind"))
    try:
        colors = plots._colors(["a", "b", "c"])
        assert list(colors.values()) == sns.color_palette("colorblind", 3)
    finally:
        plots.apply_style(plots.Style())
    many = plots._colors([str(i) for i in range(12)])
    assert len(set(many.values())) == 12  # past 10 series, no colour repeats


def test_unknown_figure_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="unknown figure"):
        plots.make_figure("wer_vs_size", "unused.csv", str(tmp_path / "out.png"))
