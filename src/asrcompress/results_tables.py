"""Wide per-study tables and an ESPnet-style RESULTS.md, built from the tidy wer.csv alone.

The tidy table has one row per (model, variant, decoder, subset, condition). A :class:`Layout` says
how one paper lays its table out: which columns name a row, which spread across the header, which
value fills the cells and which per-variant costs sit at the right. Rows the layout does not tell
apart are *pooled* into one cell (errors summed over words), which is how the studies report a
condition kind (all noise conditions together) rather than averaging per-condition WERs.

Nothing here reads anything but wer.csv, so the tables can be remade without rerunning a model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import PipelineError
from .io import atomic_path
from .scoring import ALL_SUBSETS
from .wer_table import read_wer_table, with_defaults

# ----------------------------------------------------------------------------------------------
# Reading wer.csv

# Columns that say *what* a row of a study table is: they pick the baseline, never a cell.
IDENTITY_COLUMNS = ("model", "variant", "method", "level", "family", "series")
BASELINE_FAMILY = "baseline"


class MissingData(PipelineError):
    """The table lacks what a layout needs (an LM decoder, distillation variants): a reason, not a bug."""


def load_table(wer_csv: str | os.PathLike[str]) -> pd.DataFrame:
    """wer.csv with defaults filled in (:func:`.wer_table.read_wer_table`)."""
    return read_wer_table(wer_csv)


# ----------------------------------------------------------------------------------------------
# Pooling and derived values (pure helpers)


def pooled_rate(errors: Iterable[float], units: Iterable[float]) -> float:
    """sum(errors) / sum(units): a WER over several conditions counts every word once, so a
    condition with more words weighs more (a mean of WERs would not)."""
    total_errors, total_units = float(np.nansum(list(errors))), float(np.nansum(list(units)))
    return total_errors / total_units if total_units > 0 else math.nan


def _ratio(numerator: Any, denominator: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)
    result = np.where(np.isfinite(result), result, np.nan)  # a zero baseline has no ratio
    return result if result.ndim else float(result)


def relative_change_pct(value: Any, baseline: Any) -> Any:
    """(value / baseline - 1) x 100: USM-Lite's relative WER degradation."""
    return (_ratio(value, baseline) - 1.0) * 100.0


def ratio_pct(value: Any, baseline: Any) -> Any:
    """value / baseline x 100: size as a percentage of the baseline's."""
    return _ratio(value, baseline) * 100.0


def speedup(latency: Any, baseline_latency: Any) -> Any:
    """baseline latency / latency: 2.0 means twice as fast as the baseline."""
    return _ratio(baseline_latency, latency)


def word_error_breakdown(n_words: float, substitutions: float, deletions: float, insertions: float) -> dict[str, float]:
    """ESPnet's Corr/Sub/Del/Ins/Err, in percent of reference words."""
    if not n_words or n_words != n_words:  # zero or NaN: no words to be a percentage of
        return dict.fromkeys(("corr", "sub", "del", "ins", "err"), math.nan)
    share = 100.0 / n_words
    return {
        "corr": (n_words - substitutions - deletions) * share,
        "sub": substitutions * share,
        "del": deletions * share,
        "ins": insertions * share,
        "err": (substitutions + deletions + insertions) * share,
    }


SUMMED = ("substitutions", "deletions", "insertions", "n_utts", "n_words", "n_chars", "n_skipped", "audio_s")
# Intervals come from a bootstrap over one condition's utterances; they do not combine, so a pooled cell has none.
INTERVALS = ("wer_ci_low", "wer_ci_high", "cer_ci_low", "cer_ci_high", "delta_ci_low", "delta_ci_high", "p_value")


def _pool(group: pd.DataFrame) -> dict[str, Any]:
    """One row standing for ``group``: counts summed, rates pooled, intervals dropped; anything else
    (costs, identity) is the first row's, since it is the same for every condition of a variant."""
    row = group.iloc[0].to_dict()
    if len(group) == 1:
        return row
    for column in SUMMED:
        if column in group:
            row[column] = group[column].sum(min_count=1)
    errors = group["substitutions"] + group["deletions"] + group["insertions"]
    row["wer"] = pooled_rate(errors, group["n_words"])
    # Conditions of one subset share their transcripts, so weighting by words is weighting by
    # characters there (wer.csv has no character counts unless n_chars is present).
    char_weights = group["n_chars"] if "n_chars" in group else group["n_words"]
    row["cer"] = pooled_rate(group["cer"] * char_weights, char_weights)
    row["ser"] = pooled_rate(group["ser"] * group["n_utts"], group["n_utts"])
    for column in ("baseline_wer", "delta_wer"):
        row[column] = pooled_rate(group[column] * group["n_words"], group["n_words"].where(group[column].notna()))
    row.update(dict.fromkeys((c for c in INTERVALS if c in group), math.nan))
    return row


def pool_cells(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per distinct ``keys``, in order of first appearance."""
    groups = table.groupby(list(keys), sort=False, dropna=False)
    return pd.DataFrame([_pool(group) for _, group in groups], columns=table.columns)


@dataclasses.dataclass(frozen=True)
class Derived:
    """A column computed against the baseline's value of ``source`` in the same cell."""

    source: str
    compute: Callable[[Any, Any], Any]  # (value, baseline value) -> derived value


DERIVED: dict[str, Derived] = {
    "relative_wer_pct": Derived("wer", relative_change_pct),
    "size_pct": Derived("packed_mb", ratio_pct),  # packed: the bytes a device stores
    "speedup": Derived("cpu_latency_ms", speedup),
}


def baseline_variants(table: pd.DataFrame) -> dict[str, str]:
    """model -> its reference variant: the first one of the baseline family in the table's (config) order."""
    baselines = table[table["family"] == BASELINE_FAMILY]
    return baselines.drop_duplicates("model").set_index("model")["variant"].to_dict()


def add_derived(cells: pd.DataFrame, columns: Iterable[str], match: Sequence[str]) -> pd.DataFrame:
    """``cells`` with each requested derived column, comparing every row with the baseline's row that
    agrees on ``match`` (the cell's condition, subset, decoder) and on the model."""
    wanted = [c for c in dict.fromkeys(columns) if c in DERIVED]
    if not wanted:
        return cells
    keys = list(dict.fromkeys(["model", *match]))
    sources = list(dict.fromkeys(DERIVED[c].source for c in wanted))
    is_baseline = cells["variant"] == cells["model"].map(baseline_variants(cells))
    reference = cells.loc[is_baseline, keys + sources].drop_duplicates(keys)
    reference = reference.rename(columns={s: f"_baseline_{s}" for s in sources})
    merged = cells.merge(reference, on=keys, how="left")
    for column in wanted:
        spec = DERIVED[column]
        merged[column] = spec.compute(merged[spec.source], merged[f"_baseline_{spec.source}"])
    return merged.drop(columns=[f"_baseline_{s}" for s in sources])


# ----------------------------------------------------------------------------------------------
# Formatting


@dataclasses.dataclass(frozen=True)
class ColumnFormat:
    """How a column is labelled and printed."""

    label: str
    digits: int = 2
    scale: float = 1.0
    rate: bool = False  # a fraction 0..1: printed x100 when the layout asks for percent
    signed: bool = False  # a change: "+1.2" so that a gain and a loss read apart
    suffix: str = ""


FORMATS: dict[str, ColumnFormat] = {
    "wer": ColumnFormat("WER", rate=True),
    "cer": ColumnFormat("CER", rate=True),
    "ser": ColumnFormat("SER", rate=True),
    "baseline_wer": ColumnFormat("baseline WER", rate=True),
    "delta_wer": ColumnFormat("ΔWER", rate=True, signed=True),
    "p_value": ColumnFormat("p", digits=3),
    "relative_wer_pct": ColumnFormat("rel. WER %", digits=1, signed=True),
    "size_pct": ColumnFormat("size %", digits=1),
    "speedup": ColumnFormat("speed-up", digits=2, suffix="x"),
    "size_mb": ColumnFormat("size MB"),
    "packed_mb": ColumnFormat("packed MB"),
    "parameters": ColumnFormat("params (M)", scale=1e-6),
    "nonzero_params": ColumnFormat("non-zero params (M)", scale=1e-6),
    "sparsity": ColumnFormat("sparsity %", digits=1, scale=100.0),
    "gmacs_per_s": ColumnFormat("GMACs/s", digits=3),
    "cpu_latency_ms": ColumnFormat("CPU latency ms", digits=1),
    "gpu_latency_ms": ColumnFormat("GPU latency ms", digits=1),
    "cpu_rtf": ColumnFormat("CPU RTF", digits=3),
    "rtf": ColumnFormat("RTF", digits=3),
    "training_steps": ColumnFormat("training steps", digits=0),
}
CI_COLUMNS = {"wer": ("wer_ci_low", "wer_ci_high"), "cer": ("cer_ci_low", "cer_ci_high"),
              "delta_wer": ("delta_ci_low", "delta_ci_high")}


def column_format(column: str) -> ColumnFormat:
    return FORMATS.get(column, ColumnFormat(column))


def label(column: str) -> str:
    return column_format(column).label


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_number(column: str, value: Any, *, percent: bool = True, digits: int | None = None,
                  signed: bool | None = None) -> str:
    """``value`` printed the way ``column`` is read; empty when missing. ``digits`` overrides a rate's
    decimals, ``signed`` the column's own choice of a leading sign."""
    if _missing(value):
        return ""
    spec = column_format(column)
    scale, places = spec.scale, spec.digits
    if spec.rate:
        scale, places = (100.0, 1) if percent else (1.0, 3)
        places = digits if digits is not None else places
    try:
        number = float(value) * scale
    except (TypeError, ValueError):
        return str(value)
    sign = "+" if (spec.signed if signed is None else signed) else ""
    return f"{number:{sign}.{places}f}{spec.suffix}"


def format_interval(column: str, low: Any, high: Any, *, percent: bool = True, digits: int | None = None) -> str:
    """``"[11.0, 13.6]"``; empty when either bound is unknown. Bounds are unsigned: they are values, not changes."""
    if _missing(low) or _missing(high):
        return ""
    bounds = [format_number(column, b, percent=percent, digits=digits, signed=False) for b in (low, high)]
    return f"[{bounds[0]}, {bounds[1]}]"


def format_with_ci(column: str, value: Any, low: Any, high: Any, *, percent: bool = True, digits: int | None = None) -> str:
    """``"12.3 [11.0, 13.6]"``; the bare value when the interval is unknown (a pooled cell)."""
    text = format_number(column, value, percent=percent, digits=digits)
    interval = format_interval(column, low, high, percent=percent, digits=digits)
    return f"{text} {interval}" if text and interval else text


def key_text(value: Any) -> str:
    """A row or column key as shown: empty when missing, numbers without trailing zeros."""
    if _missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown_table(frame: pd.DataFrame, *, left: int = 1) -> str:
    """A pipe table, padded so that the raw text reads as a table too; the first ``left`` columns
    (names) align left, the rest (numbers) right."""
    header = [str(c) for c in frame.columns]
    body = [["" if _missing(v) else str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    widths = [max([3, len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in body)]) + "\n"


# ----------------------------------------------------------------------------------------------
# Layouts


@dataclasses.dataclass(frozen=True)
class Requirement:
    """The table must hold a row whose ``column`` is one of ``any_of`` (or, with ``none_of``, one that
    is not), else the layout is not drawn and ``reason`` says why."""

    column: str
    reason: str
    any_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()

    def unmet(self, table: pd.DataFrame) -> str | None:
        if self.column not in table:
            return f"{self.reason} (the table has no '{self.column}' column)"
        values = table[self.column].dropna()
        met = values.isin(self.any_of) if self.any_of else ~values.isin(self.none_of)
        return None if met.any() else self.reason


@dataclasses.dataclass(frozen=True)
class Layout:
    """A wide table: ``rows`` name a row, ``columns`` spread over the header, ``value`` (and ``also``)
    fill the cells, ``extra`` per-row columns sit once at the right. Rows that agree on ``rows`` and
    ``columns`` are pooled into one cell. ``filters`` keep rows whose column equals the value (or one
    of the list); filters on identity columns (variant, family, ...) select rows after the baseline
    comparisons, so that a relative WER still finds the baseline."""

    rows: Sequence[str] = ("variant",)
    columns: Sequence[str] = ("condition",)
    value: str = "wer"
    with_ci: bool = False
    percent: bool = True
    extra: Sequence[str] = ()
    filters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    also: Sequence[str] = ()  # further cell values, each spread over the same columns
    digits: int | None = None  # decimals of rate cells (default 1 in percent)
    title: str = ""
    note: str = ""
    requires: Sequence[Requirement] = ()

    @property
    def values(self) -> list[str]:
        return [self.value, *self.also]


def _filter(table: pd.DataFrame, filters: Mapping[str, Any]) -> pd.DataFrame:
    for column, wanted in filters.items():
        if column not in table:
            raise MissingData(f"the table has no '{column}' column to filter on")
        allowed = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        table = table[table[column].isin(allowed)]
    return table


def _describe_filters(filters: Mapping[str, Any]) -> str:
    return ", ".join(f"{c} in {list(v) if isinstance(v, (list, tuple, set)) else [v]}" for c, v in filters.items())


def _shown_levels(cells: pd.DataFrame, levels: Sequence[str], *, keep_one: bool) -> list[str]:
    """The levels that vary: a level with one value says nothing per row (a single model, subset "all").
    Rows keep at least one level to be named by, the most specific one that is not empty (the variant
    rather than the model); columns may drop all (the header is then the value's name)."""
    shown = {level: cells[level].map(key_text) for level in levels}
    varying = [level for level in levels if shown[level].nunique() > 1]
    if varying or not keep_one or not levels:
        return varying
    named = [level for level in levels if shown[level].ne("").any()]
    return (named or list(levels))[-1:]


def _keys(cells: pd.DataFrame, levels: Sequence[str]) -> list[tuple[str, ...]]:
    # Display text, not raw values, are the keys: NaN never equals itself and would split a row.
    return [tuple(key_text(row[level]) for level in levels) for _, row in cells.iterrows()]


def _header(layout: Layout, value: str, column_key: tuple[str, ...]) -> str:
    # One value: the column key is the header. Several: each is named. No key left: the value names it.
    if len(layout.values) > 1 or not column_key:
        return " / ".join([label(value), *column_key])
    return " / ".join(column_key)


def _cell_text(layout: Layout, value: str, row: pd.Series) -> str:
    if layout.with_ci and value in CI_COLUMNS:
        low, high = CI_COLUMNS[value]
        return format_with_ci(value, row.get(value), row.get(low), row.get(high), percent=layout.percent, digits=layout.digits)
    return format_number(value, row.get(value), percent=layout.percent, digits=layout.digits)


def empty_header(layout: Layout) -> list[str]:
    """What a layout's table is headed with when there is nothing to put in it."""
    return [*layout.rows, *(label(c) for c in layout.extra)]


def wide_table(table: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """``table`` (tidy, as in wer.csv) laid out by ``layout``: text cells, missing ones empty; rows and
    columns in order of first appearance (the config's order). Raises MissingData with a one-line
    reason when the table cannot fill the layout."""
    table = with_defaults(table)
    for requirement in layout.requires:
        reason = requirement.unmet(table)
        if reason:
            raise MissingData(reason)
    keys = list(dict.fromkeys([*layout.rows, *layout.columns]))
    for column in [*keys, *layout.values, *layout.extra]:
        if column not in table and column not in DERIVED:
            raise MissingData(f"the table has no '{column}' column")
    selecting = {c: v for c, v in layout.filters.items() if c in IDENTITY_COLUMNS}
    narrowing = {c: v for c, v in layout.filters.items() if c not in IDENTITY_COLUMNS}
    cells = pool_cells(_filter(table, narrowing), keys)
    cells = add_derived(cells, [*layout.values, *layout.extra], [k for k in keys if k not in IDENTITY_COLUMNS])
    cells = _filter(cells, selecting)
    if cells.empty:
        raise MissingData(f"no rows with {_describe_filters(layout.filters)}")

    row_levels = _shown_levels(cells, layout.rows, keep_one=True)
    column_levels = _shown_levels(cells, layout.columns, keep_one=False)
    row_keys, column_keys = _keys(cells, row_levels), _keys(cells, column_levels)
    by_cell: dict[tuple, pd.Series] = {}
    rows_of: dict[tuple, list[pd.Series]] = {}
    for row_key, column_key, (_, row) in zip(row_keys, column_keys, cells.iterrows()):
        by_cell.setdefault((row_key, column_key), row)
        rows_of.setdefault(row_key, []).append(row)
    ordered_rows, ordered_columns = list(dict.fromkeys(row_keys)), list(dict.fromkeys(column_keys))

    out: dict[str, list[str]] = {level: [key[i] for key in ordered_rows] for i, level in enumerate(row_levels)}
    for value in layout.values:
        for column_key in ordered_columns:
            cells_of_column = [by_cell.get((row_key, column_key)) for row_key in ordered_rows]
            out[_header(layout, value, column_key)] = [
                "" if cell is None else _cell_text(layout, value, cell) for cell in cells_of_column]
    for column in layout.extra:
        # A per-variant cost is the same in every cell of the row: show the first one known.
        out[label(column)] = [_first_known(column, rows_of[row_key], layout) for row_key in ordered_rows]
    frame = pd.DataFrame(out, columns=list(out))
    frame.attrs["key_columns"] = len(row_levels)  # how many leading columns name the row (for alignment)
    return frame


def _first_known(column: str, rows: Sequence[pd.Series], layout: Layout) -> str:
    for row in rows:
        if not _missing(row.get(column)):
            return format_number(column, row[column], percent=layout.percent, digits=layout.digits)
    return ""


# The studies' families (studies.md, E1-E5): a study table shows the baseline beside its own methods.
_SPLIT_BY_KIND = ("subset", "kind")

LAYOUTS: dict[str, Layout] = {
    "E1": Layout(
        title="E1 (Pimentel et al.): quantization and pruning in the wild",
        note="WER % per condition kind, pooled over the kind's conditions (all errors / all words); "
             "packed MB is the stored size.",
        rows=("model", "variant"), columns=_SPLIT_BY_KIND, filters={"decoder": "greedy",
                                                                  "family": ["baseline", "quantization", "pruning"]},
        extra=("sparsity", "size_mb", "packed_mb"),
        requires=(Requirement("family", "no quantization or pruning variant in the table",
                              any_of=("quantization", "pruning")),)),
    "E2": Layout(
        title="E2 (Peng et al.): structured pruning, WER against compute",
        note="Clean WER % per subset; GMACs per second of audio and parameters of each pruned model.",
        rows=("model", "series", "level"), columns=("subset",),
        filters={"decoder": "greedy", "kind": "clean", "family": ["baseline", "structured"]},
        extra=("gmacs_per_s", "parameters"),
        requires=(Requirement("family", "no structured-pruning variant in the table", any_of=("structured",)),)),
    "E3": Layout(
        title="E3 (USM-Lite): low-bit quantization and N:M sparsity, relative WER against size",
        note="Clean WER %, its change relative to the baseline's in %, and the packed size as % of the baseline's.",
        rows=("model", "variant"), columns=("subset",), also=("relative_wer_pct",),
        filters={"decoder": "greedy", "kind": "clean", "family": ["baseline", "quantization", "sparsity"]},
        extra=("packed_mb", "size_pct"),
        requires=(Requirement("family", "no quantization or sparsity variant in the table",
                              any_of=("quantization", "sparsity")),)),
    "E4": Layout(
        title="E4 (Zaiem et al.): downsampling and depth, WER with and without LM against time and compute",
        note="Clean WER % per decoder (greedy, with LM), two decimals as in the authors' README table; "
             "latencies per utterance.",
        rows=("model", "variant"), columns=("subset", "decoder"), digits=2,
        filters={"kind": "clean", "family": ["baseline", "downsampling", "depth"]},
        extra=("gpu_latency_ms", "cpu_latency_ms", "gmacs_per_s", "training_steps"),
        requires=(Requirement("decoder", "no LM decoder in the table (greedy only), so there is no WER+LM column",
                              none_of=("greedy",)),
                  Requirement("family", "no downsampling or depth variant in the table",
                              any_of=("downsampling", "depth")))),
    "E5": Layout(
        title="E5 (Wang et al.): distilled students against the teacher",
        note="WER % per condition kind (pooled); speed-up is the baseline's CPU latency over the student's.",
        rows=("model", "variant"), columns=_SPLIT_BY_KIND,
        filters={"decoder": "greedy", "family": ["baseline", "distillation"]},
        extra=("parameters", "cpu_latency_ms", "speedup", "training_steps"),
        requires=(Requirement("family", "no distillation variant in the table", any_of=("distillation",)),)),
    "grid": Layout(
        title="Every variant under every condition",
        note="WER % with its 95% bootstrap interval over utterances.",
        rows=("model", "variant", "decoder"), columns=("subset", "condition"), with_ci=True,
        extra=("training_steps",)),
}


def layout_named(name: str) -> Layout:
    if name not in LAYOUTS:
        raise PipelineError(f"unknown results layout {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def study_markdown(title: str, note: str, frame: pd.DataFrame | None, reason: str | None = None) -> str:
    """A study's page: its title, then either a note and the table, or one line saying why there is none."""
    heading = f"# {title}\n\n"
    if frame is None:
        return heading + f"No table: {reason}.\n"
    return heading + (f"{note}\n\n" if note else "") + markdown_table(frame, left=frame.attrs.get("key_columns", 1))


def write_study_tables(wer_csv: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       layouts: Sequence[str]) -> list[Path]:
    """``<out_dir>/<layout>.md`` and ``.csv`` for each named layout; returns the paths written. A
    layout the table cannot fill gets a one-line reason in its .md and a header-only .csv."""
    chosen = {name: layout_named(name) for name in layouts}
    table = load_table(wer_csv)
    written = []
    for name, layout in chosen.items():
        try:
            frame, reason = wide_table(table, layout), None
        except MissingData as err:
            frame, reason = None, str(err)
        md, csv = Path(out_dir) / f"{name}.md", Path(out_dir) / f"{name}.csv"
        _write_text(md, study_markdown(layout.title or name, layout.note, frame, reason))
        shown = frame if frame is not None else pd.DataFrame(columns=empty_header(layout))
        _write_text(csv, shown.to_csv(index=False))
        written += [md, csv]
    return written


# ----------------------------------------------------------------------------------------------
# RESULTS.md (ESPnet style)

ENVIRONMENT_LABELS = {"date": "date", "python": "python version", "torch": "torch version",
                      "transformers": "transformers version", "git_commit": "git commit"}
COST_COLUMNS = ("size_mb", "packed_mb", "gmacs_per_s", "cpu_latency_ms", "gpu_latency_ms", "parameters")


def _percent(value: float) -> str:
    return "" if _missing(value) else f"{value:.1f}"


def _count(value: Any) -> str:
    return "" if _missing(value) else f"{int(value)}"


def dataset_name(row: Mapping[str, Any], *, with_subset: bool) -> str:
    parts = [row["variant"], row["subset"] if with_subset else None, row["condition"]]
    return "/".join(key_text(p) for p in parts if not _missing(p))


def wer_rows(rows: pd.DataFrame, *, with_subset: bool) -> pd.DataFrame:
    """ESPnet's WER table for ``rows`` (one model and decoder), plus the bootstrap interval of Err and,
    where wer.csv has it, the paired change against the baseline."""
    with_delta = rows["delta_wer"].notna().any()
    lines = []
    for _, row in rows.iterrows():
        rates = word_error_breakdown(row["n_words"], row["substitutions"], row["deletions"], row["insertions"])
        line = {
            "dataset": dataset_name(row, with_subset=with_subset),
            "Snt": _count(row["n_utts"]), "Wrd": _count(row["n_words"]),
            "Corr": _percent(rates["corr"]), "Sub": _percent(rates["sub"]), "Del": _percent(rates["del"]),
            "Ins": _percent(rates["ins"]), "Err": _percent(rates["err"]),
            "S.Err": format_number("ser", row["ser"]),
            "95% CI": format_interval("wer", row["wer_ci_low"], row["wer_ci_high"]),
        }
        if with_delta:
            line["ΔErr vs baseline"] = format_with_ci("delta_wer", row["delta_wer"], row["delta_ci_low"],
                                                      row["delta_ci_high"])
            line["p"] = format_number("p_value", row["p_value"])
        lines.append(line)
    return pd.DataFrame(lines)


def cer_rows(rows: pd.DataFrame, *, with_subset: bool) -> pd.DataFrame:
    """Character error rate per dataset: wer.csv keeps the rate and its interval, not the character
    edit counts, so the table has no Corr/Sub/Del/Ins (and Chars only when n_chars is there)."""
    lines = []
    for _, row in rows.iterrows():
        line = {"dataset": dataset_name(row, with_subset=with_subset), "Snt": _count(row["n_utts"])}
        if "n_chars" in rows:
            line["Chars"] = _count(row["n_chars"])
        line["Err"] = format_number("cer", row["cer"])
        line["95% CI"] = format_interval("cer", row["cer_ci_low"], row["cer_ci_high"])
        lines.append(line)
    return pd.DataFrame(lines)


def cost_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per variant: what it costs to store and to run (the same under every condition)."""
    per_variant = rows.drop_duplicates("variant")
    out = {"variant": per_variant["variant"].map(key_text).tolist()}
    for column in COST_COLUMNS:
        values = per_variant[column] if column in per_variant else [math.nan] * len(per_variant)
        out[label(column)] = [format_number(column, v) for v in values]
    return pd.DataFrame(out)


def environment_section(environment: Mapping[str, Any], config_name: str) -> list[str]:
    lines = ["## Environments"]
    entries = dict(environment)
    if config_name:
        entries = {**entries, "config": config_name}
    for key, value in entries.items():
        if not _missing(value) and value != "":
            lines.append(f"- {ENVIRONMENT_LABELS.get(key, key)}: `{value}`")
    return lines


def results_markdown(table: pd.DataFrame, *, title: str, config_name: str, environment: Mapping[str, Any]) -> str:
    """The RESULTS.md text for a tidy table: environment, then per model and decoder the WER and CER
    tables, then per model the cost of each variant. Deterministic: no clock is read here."""
    table = with_defaults(table)
    with_subset = set(table["subset"].unique()) != {ALL_SUBSETS}
    lines = [f"# {title}", *environment_section(environment, config_name), ""]
    for model, of_model in table.groupby("model", sort=False):
        for decoder, rows in of_model.groupby("decoder", sort=False):
            lines += [f"## {model}/{decoder}", "### WER", "", markdown_table(wer_rows(rows, with_subset=with_subset)),
                      "### CER", "", markdown_table(cer_rows(rows, with_subset=with_subset))]
        lines += [f"## {model}/cost", "### Cost", "", markdown_table(cost_rows(of_model))]
    return "\n".join(lines)


def write_results_md(wer_csv: str | os.PathLike[str], out_path: str | os.PathLike[str], *, title: str = "RESULTS",
                     config_name: str = "", environment: Mapping[str, Any] | None = None) -> Path:
    """Write an ESPnet-style RESULTS.md for ``wer_csv`` to ``out_path`` (atomically)."""
    text = results_markdown(load_table(wer_csv), title=title, config_name=config_name, environment=environment or {})
    _write_text(Path(out_path), text)
    return Path(out_path)
