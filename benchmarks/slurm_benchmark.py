"""The tiny grid through a real one-node SLURM cluster against the same grid run locally (issue #16: at most
1.5x the local wall time, byte-identical results).

The cluster is the one tests/test_slurm.py starts (slurmctld + slurmd on localhost; Debian's slurm-wlm and
munge, installed as root when missing), the grid its cut tiny config (2 variants x 3 conditions, every stage),
the profile profiles/slurm with only the test cluster's partition and account settings changed. The local run
is `snakemake --cores <cores>` on the same config in a fresh copy. Both start from nothing (corpus, banks,
fine-tuning, LM, compression, decoding, scoring, report).

Usage: .venv/bin/python benchmarks/slurm_benchmark.py [--cores 2]   (as root, where SLURM can be installed)
Writes benchmarks/results/slurm.md and prints it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import pandas as pd  # noqa: E402

from reporting import cpu_name, publish  # noqa: E402
from slurm_cluster import start_cluster, unavailable_reason  # noqa: E402
from test_slurm import TIMING_COLUMNS, cluster_config, profile_for_test_cluster  # noqa: E402
from workflow_utils import SNAKEMAKE, planned_jobs, workflow_copy  # noqa: E402

COMPARED = ["results/conditions", "results/models", "results/variants", "results/lm", "results/hyps", "results/scores"]


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started, done.stderr


def differing_files(a: Path, b: Path) -> list[str]:
    differ = []
    for folder in COMPARED:
        for path in (a / folder).rglob("*"):
            if path.is_file() and path.name != "card.json":  # cards hold each job's measured latency
                twin = b / path.relative_to(a)
                if not twin.is_file() or not filecmp.cmp(path, twin, shallow=False):
                    differ.append(str(path.relative_to(a)))
    table_a = pd.read_csv(a / "results/tables/wer.csv").drop(columns=TIMING_COLUMNS)
    table_b = pd.read_csv(b / "results/tables/wer.csv").drop(columns=TIMING_COLUMNS)
    if not table_a.equals(table_b):
        differ.append("results/tables/wer.csv")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="cores of the local run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "slurm.md")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"no SLURM test cluster here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="slurm-benchmark-"))
    (root / "local").mkdir()
    local = workflow_copy(root / "local", cluster_config())
    jobs = planned_jobs(local)
    local_s, _ = timed([SNAKEMAKE, "--cores", str(args.cores)], local)

    cluster = start_cluster(root / "cluster")
    try:
        remote = root / "remote"
        remote.mkdir()
        workflow_copy(remote, cluster_config())
        (remote / "profiles").mkdir()
        profile = profile_for_test_cluster(remote)
        cluster_s, log = timed([SNAKEMAKE, "--profile", str(profile)], remote, env=cluster.env)
        submitted = log.count("has been submitted with SLURM jobid")
    finally:
        cluster.stop()
    differ = differing_files(local, remote)
    lines = [
        "# The tiny grid through SLURM against a local run",
        "",
        f"`benchmarks/slurm_benchmark.py --cores {args.cores}` on {cpu_name()}, {os.cpu_count()} CPUs; the cut tiny "
        "config of tests/test_slurm.py (2 variants x 3 conditions, both decoders, every stage from the demo corpus "
        "to the report); the cluster is one slurmd on this machine.",
        "",
        "| run | jobs | sbatch submissions | wall s |",
        "|---|---:|---:|---:|",
        f"| local, `--cores {args.cores}` | {len(jobs)} | - | {local_s:.0f} |",
        f"| SLURM, `profiles/slurm` | {len(jobs)} | {submitted} | {cluster_s:.0f} |",
        "",
        f"SLURM / local: **{cluster_s / local_s:.2f}x** (goal: at most 1.5x). Results byte-identical: "
        f"{'yes' if not differ else 'NO: ' + ', '.join(differ[:10])}.",
        "",
    ]
    publish("\n".join(lines), args.out)
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
