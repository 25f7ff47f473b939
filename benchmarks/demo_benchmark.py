"""Benchmark `make demo` from cold: whole-DAG wall time (the run and its HTML report, as the Makefile runs them),
per-stage time, the no-op rerun, and the demo's quality floors.

Usage: .venv/bin/python benchmarks/demo_benchmark.py [--config config/config.yaml] [--cores 2] [--workdir DIR]
Appends one row to benchmarks/results/demo.tsv (date, commit, cores, demo_s, per-stage seconds, clean WERs) and
writes benchmarks/results/demo.md (this run's tables), printing it.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import cpu_name, publish  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
JOB_BENCHMARKS = Path("results") / "benchmarks"  # Snakemake's ``benchmark:`` records, one TSV per job
# The demo's quality floors (issue 15): what the demo must show to be worth running.
CLEAN_GREEDY_WER_MAX = 0.35
CLEAN_LM_WER_MAX = 0.08


def snakemake(workdir: Path, cores: int, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([SNAKEMAKE, "--cores", str(cores), "--profile", str(REPO / "profiles" / "default"), *args],
                   cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def stage_times(workdir: Path) -> pd.DataFrame:
    """Per rule: jobs, summed and longest job seconds (Snakemake's ``benchmark:`` files)."""
    rows = []
    for tsv in (workdir / JOB_BENCHMARKS).rglob("*.tsv"):
        stage = tsv.relative_to(workdir / JOB_BENCHMARKS).parts
        rule = stage[1] if stage[0] == "data" else stage[0]
        rows.append({"rule": rule.removesuffix(".tsv"), "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])})
    table = pd.DataFrame(rows).groupby("rule")["s"].agg(["count", "sum", "max"]).reset_index()
    return table.sort_values("sum", ascending=False)


def decode_fixed_cost(workdir: Path) -> pd.DataFrame:
    """Per decode job: its wall time, the decoding work it timed (forward passes and searches of its test sets),
    and the rest: the job's fixed cost (interpreter, imports, model and LM load, audio reading and writing)."""
    rows = []
    for tsv in (workdir / JOB_BENCHMARKS / "decode").rglob("*.tsv"):
        job = tsv.relative_to(workdir / JOB_BENCHMARKS / "decode").with_suffix("")
        timings = workdir / "results" / "timings" / job
        records = [pd.read_json(p, typ="series") for p in ([timings.with_suffix(".json")] if timings.with_suffix(".json").is_file()
                                                            else sorted(timings.rglob("*.json")))]
        work = sum(r["forward_s"] + sum(d["search_s"] for d in r["decoders"].values()) for r in records)
        wall = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
        rows.append({"job": str(job), "test_sets": len(records), "wall_s": wall, "work_s": work, "fixed_s": wall - work})
    return pd.DataFrame(rows)


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return (result.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "demo.md"))
    parser.add_argument("--tsv", default=str(REPO / "benchmarks" / "results" / "demo.tsv"))
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="asrcompress-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "scripts", "config", "src", "envs"):
        source, dest = REPO / name, workdir / name
        if not dest.exists():
            (shutil.copytree if source.is_dir() else shutil.copy)(source, dest)
    shutil.copy(args.config, workdir / "config" / "config.yaml")

    run_s = snakemake(workdir, args.cores)
    report_s = snakemake(workdir, args.cores, "--report", "results/report.html")
    noop_s = snakemake(workdir, args.cores)
    demo_s = run_s + report_s

    table = pd.read_csv(workdir / "results" / "tables" / "wer.csv")
    baseline = table[table["method"] == "none"]
    greedy, lm = (baseline[baseline["decoder"] == name] for name in ("greedy", "lm"))
    clean = greedy[greedy["kind"] == "clean"].iloc[0]
    clean_lm = lm[lm["kind"] == "clean"].iloc[0] if len(lm) else None
    noisy = greedy[greedy["kind"] == "noise"]
    lowest = noisy[noisy["snr_db"] == noisy["snr_db"].min()]
    card = pd.read_json(next((workdir / "results" / "models").glob("*/baseline/card.json")), typ="series")
    stages = stage_times(workdir)
    decode_jobs = decode_fixed_cost(workdir)
    floors = {
        f"clean greedy WER <= {CLEAN_GREEDY_WER_MAX:.0%}": clean["wer"] <= CLEAN_GREEDY_WER_MAX,
        f"clean LM WER <= {CLEAN_LM_WER_MAX:.0%}": clean_lm is not None and clean_lm["wer"] <= CLEAN_LM_WER_MAX,
        "every noise at the lowest SNR worse than clean": bool((lowest["wer"] > clean["wer"] + 0.05).all()),
    }

    row = {"date": datetime.date.today().isoformat(), "commit": commit(), "cores": args.cores, "cpu": cpu_name(),
           "config": Path(args.config).name, "demo_s": round(demo_s, 1), "run_s": round(run_s, 1),
           "html_report_s": round(report_s, 1), "noop_s": round(noop_s, 1), "jobs": int(stages["count"].sum()),
           "finetune_steps": int(card["result"]["steps"]),
           **{f"{r.rule}_s": round(r.sum, 1) for r in stages.itertuples()},
           "decode_fixed_s_per_job": round(decode_jobs["fixed_s"].mean(), 2),
           "decode_fixed_s_per_test_set": round(decode_jobs["fixed_s"].sum() / decode_jobs["test_sets"].sum(), 2),
           "clean_wer": round(clean["wer"], 4), "clean_lm_wer": round(clean_lm["wer"], 4) if clean_lm is not None else None,
           "floors_met": all(floors.values())}
    tsv = Path(args.tsv)
    history = pd.read_csv(tsv, sep="\t") if tsv.exists() else pd.DataFrame()
    pd.concat([history, pd.DataFrame([row])], ignore_index=True).to_csv(tsv, sep="\t", index=False)

    lines = [
        f"Demo benchmark: `make demo` from cold ({args.cores} cores, {cpu_name()}, config {Path(args.config).name}, "
        f"commit {row['commit']}, {row['date']})",
        "",
        "| measure | value |",
        "|---|---|",
        f"| whole demo (run + HTML report), wall | {demo_s:.0f} s ({demo_s / 60:.1f} min) |",
        f"| run / report, wall | {run_s:.0f} s / {report_s:.0f} s |",
        f"| no-op rerun, wall | {noop_s:.1f} s |",
        f"| fine-tuning | {card['result']['wall_s']:.0f} s ({card['result']['steps']} steps) |",
        f"| baseline clean WER greedy / LM (held-out voices) | {100 * clean['wer']:.1f}% "
        f"[{100 * clean['wer_ci_low']:.1f}, {100 * clean['wer_ci_high']:.1f}] / "
        + (f"{100 * clean_lm['wer']:.1f}%" if clean_lm is not None else "n/a") + " |",
        f"| baseline greedy WER at the lowest SNR ({lowest['snr_db'].iloc[0]:g} dB), per noise | "
        + ", ".join(f"{r.noise} {100 * r.wer:.1f}%" for r in lowest.itertuples()) + " |",
        f"| jobs | {row['jobs']} |",
        f"| decode jobs: fixed cost per job / per test set (job wall minus its timed forward and search) | "
        f"{row['decode_fixed_s_per_job']:.1f} s / {row['decode_fixed_s_per_test_set']:.2f} s "
        f"({len(decode_jobs)} jobs, {int(decode_jobs['test_sets'].sum())} test sets) |",
        *[f"| floor: {name} | {'met' if met else 'NOT MET'} |" for name, met in floors.items()],
        "",
        "Per rule (seconds, from Snakemake `benchmark:` files):",
        "",
        "| rule | jobs | total s | max s |",
        "|---|---|---|---|",
        *[f"| {r.rule} | {r.count} | {r.sum:.1f} | {r.max:.1f} |" for r in stages.itertuples()],
        "",
        "Greedy WER (%) per variant and condition:",
        "",
        (100 * table[table["decoder"] == "greedy"].pivot_table(index="condition", columns="variant", values="wer",
                                                                sort=False)).round(1).to_markdown(),
    ]
    publish("\n".join(lines) + "\n", Path(args.out))


if __name__ == "__main__":
    main()
