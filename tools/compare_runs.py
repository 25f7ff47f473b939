"""Compare two runs' results/ trees byte for byte, leaving out what measures time.

Usage: python tools/compare_runs.py RUN_A RUN_B   (each a workdir holding results/, or a results/ folder)

A refactoring that claims "behaviour unchanged" runs the same config before and after and checks here that
every deterministic artifact is identical: test sets (audio and manifests), models, hypotheses, scores, the
language model, and every table (CSV, its timing columns dropped) and figure. What holds measured time is
left out: the study tables' markdown (their CSVs are compared), the figures that show latency, variant cards (latencies), decode timings, Snakemake's job records, the report's HTML and
RESULTS.md (a date and a latency table; its WERs come from wer.csv, which is compared), logs.
Exit status 0 when identical, 1 with the differing paths listed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import pandas as pd

# Files and folders whose content is a measurement of time (or embeds one).
TIMED_NAMES = {"card.json", "export.json", "report.html"}
TIMED_FOLDERS = {"timings", "benchmarks"}
# Tables carry measured time: their CSVs are compared without these columns (wer.csv's as the SLURM test drops
# them, and the study tables' headings of the same), their markdown twins not at all.
TIMING_COLUMNS = ["rtf", "decode_wall_s", "cpu_latency_ms", "cpu_rtf", "gpu_latency_ms", "ort_latency_ms",
                  "compress_seconds"]
TIMED_HEADING_WORDS = ("latency", "speed-up", "speedup", "rtf", "wall")
# Figures that plot latency (pareto_latency) or print it in their labels (distillation).
TIMED_FIGURES = {"pareto_latency", "distillation"}


def results_root(path: Path) -> Path:
    return path / "results" if (path / "results").is_dir() else path


def compared_files(root: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.name in TIMED_NAMES or TIMED_FOLDERS & set(relative.parts[:-1]) \
                or (path.name.startswith("RESULTS") and path.suffix == ".md"):  # its date and cost table
            continue
        if relative.parts[0] == "figures" and (path.stem in TIMED_FIGURES or path.suffix == ".pdf"):
            continue  # a PDF embeds its creation date
        if relative.parts[0] == "tables" and path.suffix == ".md" and path.with_suffix(".csv").exists():
            continue  # the study table's CSV twin is compared, without its timing columns
        files[relative.as_posix()] = path
    return files


def _timed(column: str) -> bool:
    return column in TIMING_COLUMNS or any(word in column.lower() for word in TIMED_HEADING_WORDS)


def digest(path: Path, name: str) -> str:
    if path.suffix == ".csv" and name.startswith("tables/"):
        table = pd.read_csv(path, dtype=str)
        table = table.drop(columns=[c for c in table.columns if _timed(c)])
        buffer = io.StringIO()
        table.to_csv(buffer, index=False)
        return hashlib.sha256(buffer.getvalue().encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def differences(run_a: Path, run_b: Path) -> list[str]:
    """Relative paths present in one run only, or whose compared content differs."""
    a, b = compared_files(results_root(run_a)), compared_files(results_root(run_b))
    lines = [f"only in {run_a}: {name}" for name in sorted(set(a) - set(b))]
    lines += [f"only in {run_b}: {name}" for name in sorted(set(b) - set(a))]
    lines += [f"differs: {name}" for name in sorted(set(a) & set(b)) if digest(a[name], name) != digest(b[name], name)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    for run in (args.run_a, args.run_b):
        if not (run / "results").is_dir() and not (run.name == "results" and run.is_dir()):
            parser.error(f"{run}: no results/ folder there")
    found = differences(args.run_a, args.run_b)
    compared = len(compared_files(results_root(args.run_a)))
    print("\n".join(found) if found else f"identical: {compared} files compared")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
