"""How long Snakemake takes to plan each paper configuration (issue #7: the largest, >= 2,000 jobs, in <= 15 s).

Each config is planned with ``snakemake -n --quiet`` in a fresh process (what a user types before a run; also
what every cluster job pays twice, once in sbatch's job and once in its srun step, since both parse the
workflow). Reported: jobs planned, the fastest wall time of ``--rounds`` runs (the machine is shared), and the
peak resident memory.

Usage: .venv/bin/python benchmarks/dryrun_benchmark.py [--rounds 3] [--configs config/studies/*.yaml]
Writes benchmarks/results/dryrun.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from reporting import cpu_name, publish

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def planned_jobs(config: Path) -> int:
    result = subprocess.run([SNAKEMAKE, "-n", "--configfile", str(config)], cwd=REPO, capture_output=True, text=True)
    match = re.search(r"^total\s+(\d+)", result.stdout, re.M)
    if result.returncode != 0 or not match:
        raise SystemExit(f"snakemake -n planned nothing for {config}:\n{result.stderr[-3000:]}")
    return int(match.group(1))


def timed_dry_run(config: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one quiet dry run in a fresh process (GNU time's %M: this child's own
    peak, where getrusage(RUSAGE_CHILDREN) would report the largest of all children so far)."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", SNAKEMAKE, "-n", "--quiet", "--configfile", str(config)],
                          cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    return wall, int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="*", type=Path, default=sorted((REPO / "config" / "studies").glob("*.yaml")))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dryrun.md")
    args = parser.parse_args()

    rows = []
    for config in args.configs:
        jobs = planned_jobs(config)
        runs = [timed_dry_run(config) for _ in range(args.rounds)]
        rows.append((config.relative_to(REPO) if config.is_absolute() else config, jobs, min(r[0] for r in runs),
                     max(r[1] for r in runs)))
    rows.sort(key=lambda row: -row[1])
    lines = [
        "# Dry-run time of the paper configurations",
        "",
        f"`{' '.join(['benchmarks/dryrun_benchmark.py', '--rounds', str(args.rounds)])}` on {cpu_name()}, "
        f"{os.cpu_count()} CPUs; fastest of {args.rounds} runs of `snakemake -n --quiet --configfile <config>`.",
        "",
        "| config | jobs | seconds | peak RSS MB |",
        "|---|---:|---:|---:|",
        *[f"| `{config}` | {jobs} | {seconds:.1f} | {peak:.0f} |" for config, jobs, seconds, peak in rows],
        "",
        "Goal (issue #7): the largest configuration, with at least 2,000 jobs, plans in at most 15 s.",
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
