"""Benchmark the demo: whole-DAG wall time, no-op rerun time, per-stage time and the demo's WER.

Usage: .venv/bin/python benchmarks/demo_benchmark.py [--config config/config.yaml] [--cores 2] [--workdir DIR]
Writes benchmarks/results/demo.md (a markdown table) and prints it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run(workdir: Path, cores: int) -> float:
    started = time.perf_counter()
    subprocess.run([SNAKEMAKE, "--cores", str(cores), "--profile", str(REPO / "profiles" / "default")], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def stage_times(workdir: Path) -> pd.DataFrame:
    rows = []
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        stage = tsv.relative_to(workdir / "benchmarks").parts
        rule = stage[1] if stage[0] == "data" else stage[0]
        rows.append({"rule": rule.removesuffix(".tsv"), "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])})
    table = pd.DataFrame(rows).groupby("rule")["s"].agg(["count", "sum", "max"]).reset_index()
    return table.sort_values("sum", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "demo.md"))
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="asrcompress-bench-"))
    for name in ("Snakefile", "workflow", "scripts", "config", "src", "envs"):
        source, dest = REPO / name, workdir / name
        if not dest.exists():
            (shutil.copytree if source.is_dir() else shutil.copy)(source, dest)
    shutil.copy(args.config, workdir / "config" / "config.yaml")

    full = run(workdir, args.cores)
    noop = run(workdir, args.cores)
    table = pd.read_csv(workdir / "results" / "tables" / "wer.csv")
    baseline = table[table["method"] == "none"]
    clean = baseline[baseline["kind"] == "clean"].iloc[0]
    noisy = baseline[baseline["kind"] == "noise"]
    lowest = noisy[noisy["snr_db"] == noisy["snr_db"].min()]
    card = pd.read_json(next((workdir / "results" / "models").glob("*/baseline/card.json")), typ="series")

    lines = [
        f"Demo benchmark ({args.cores} cores, config {Path(args.config).name}, workdir {workdir})",
        "",
        "| measure | value |",
        "|---|---|",
        f"| whole DAG, wall | {full / 60:.1f} min |",
        f"| no-op rerun, wall | {noop:.1f} s |",
        f"| fine-tuning, wall | {card['result']['wall_s'] / 60:.1f} min ({card['result']['steps']} steps) |",
        f"| baseline clean WER / CER (held-out voices) | {100 * clean['wer']:.1f}% [{100 * clean['wer_ci_low']:.1f}, {100 * clean['wer_ci_high']:.1f}] / {100 * clean['cer']:.1f}% |",
        f"| baseline WER at lowest SNR ({lowest['snr_db'].iloc[0]:g} dB), per noise | "
        + ", ".join(f"{r.noise} {100 * r.wer:.1f}%" for r in lowest.itertuples()) + " |",
        f"| jobs | {len(list((workdir / 'benchmarks').rglob('*.tsv')))} |",
        "",
        "Per rule (seconds, from Snakemake `benchmark:` files):",
        "",
        "| rule | jobs | total s | max s |",
        "|---|---|---|---|",
        *[f"| {r.rule} | {r.count} | {r.sum:.1f} | {r.max:.1f} |" for r in stage_times(workdir).itertuples()],
        "",
        "WER (%) per variant and condition:",
        "",
        (100 * table.pivot_table(index="condition", columns="variant", values="wer", sort=False)).round(1).to_markdown(),
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
