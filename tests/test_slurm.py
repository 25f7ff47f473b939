"""profiles/slurm on a real SLURM: the tiny config through sbatch on a one-node cluster on this machine.

The cluster (slurmctld + slurmd on localhost, CPU only) is started by tests/slurm_cluster.py, which installs
Debian's slurm-wlm and munge first when they are missing. The run uses profiles/slurm itself, with only what
a user edits changed (partition, account) plus what a cluster without slurmdbd needs (squeue status polling).
"""

from __future__ import annotations

import filecmp
import math
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import NODE_CPUS, NODE_MEMORY_MB, PARTITION, SlurmCluster, start_cluster, unavailable_reason
from workflow_utils import REPO, SNAKEMAKE, planned_jobs, tiny_config, workflow_copy

# Columns that measure this run's machine (wall time, latency) rather than the results.
TIMING_COLUMNS = ["rtf", "decode_wall_s", "cpu_latency_ms", "cpu_rtf", "gpu_latency_ms", "ort_latency_ms"]


def profile_for_test_cluster(workdir: Path) -> Path:
    """profiles/slurm with what a user sets (account, partitions) set for the test cluster, and squeue polling."""
    folder = workdir / "profiles" / "test-cluster"
    folder.mkdir(parents=True)
    partitions = {"partitions": {PARTITION: {"max_runtime": 600, "max_mem_mb": NODE_MEMORY_MB, "max_threads": NODE_CPUS}}}
    (folder / "partitions.yaml").write_text(yaml.safe_dump(partitions))
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    del profile["default-resources"]["slurm_account"]
    profile.update({
        "slurm-partition-config": str(folder / "partitions.yaml"),
        "slurm-no-account": True,
        "slurm-status-command": "squeue",  # no slurmdbd here: sacct only reads the job-completion log
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 2,
        "latency-wait": 10,
    })
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    running = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield running
    running.stop()


def cluster_config() -> dict:
    """The tiny config, every stage of it (demo corpus, banks, fine-tuning, LM, compression, decoding with both
    decoders, scoring, report), on a cut grid: two variants (one decodes on CPU kernels only) and three conditions.
    The whole tiny grid takes 10 minutes through sbatch on two cores (each job parses the workflow twice:
    in its batch script and in its srun step); this one takes a third of that."""
    config = tiny_config()
    config["compression"] = [{"method": "none"}, {"method": "dynamic_int8"}]
    config["conditions"] = {"clean": True, "noise": {"types": ["white"], "snr_db": [5]}, "reverb": {"rt60_s": [0.3]}}
    return config


@pytest.fixture(scope="module")
def cluster_run(cluster: SlurmCluster, tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("slurm-run"), cluster_config())
    (workdir / "profiles").mkdir()
    profile = profile_for_test_cluster(workdir)
    expected = planned_jobs(workdir)
    result = subprocess.run([SNAKEMAKE, "--profile", str(profile)], cwd=workdir, env=cluster.env,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-6000:] + cluster.logs()
    return workdir, expected, result


@pytest.mark.slow
def test_every_cluster_job_went_through_sbatch(cluster: SlurmCluster, cluster_run):
    workdir, expected, result = cluster_run
    local_rules = {"aggregate", "plot", "study_tables", "results_md", "config_snapshot", "gallery", "all"}
    remote = [rule for rule, _ in expected if rule not in local_rules]
    n_scores, n_decodes, n_exports = remote.count("score"), remote.count("decode"), remote.count("export_onnx")
    components = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())["group-components"]
    units = int(dict(item.split("=") for item in components)["evaluation"])
    # CPU jobs: each decode job and the score jobs of its hypotheses are one unit of the evaluation group, each
    # variant's ONNX export another
    n_submitted = len(remote) - n_scores - n_decodes - n_exports + math.ceil((n_decodes + n_exports) / units)
    assert n_scores >= 12 and n_decodes >= 6 and n_submitted > 10
    assert result.stderr.count("has been submitted with SLURM jobid") == n_submitted
    finished = cluster.completed_jobs()  # sacct, from the controller's job-completion log (a fresh cluster)
    assert len(finished) == n_submitted and all(job["State"] == "COMPLETED" for job in finished), finished
    assert len({job["JobName"] for job in finished}) == 1  # the plugin names every job by the run's id
    # SLURM wrote each job's log under the rule (or group) it ran.
    logs = {p.name for p in (workdir / ".snakemake" / "slurm_logs").iterdir()}
    grouped = {"score", "decode", "export_onnx"}
    assert {name for name in logs if name.startswith("rule_")} == {f"rule_{rule}" for rule in set(remote) - grouped}
    # a group job's folder names the rules of its jobs: every evaluation job ran in one, and only those
    group_rules = {rule for name in logs if name.startswith("group_evaluation_")
                   for rule in grouped if rule in name.removeprefix("group_evaluation_")}
    assert group_rules == grouped and all(n.startswith(("rule_", "group_evaluation_")) for n in logs), logs


@pytest.mark.slow
def test_cluster_results_equal_a_local_run(cluster_run, tiny_run):
    """Same seeds, same bytes: every test set, model, hypothesis and score the cluster made equals the local run's
    of the full tiny config, and so do their rows of the WER table (timings aside)."""
    workdir, _, _ = cluster_run
    key = ["model", "variant", "decoder", "condition", "subset"]
    cluster_table = pd.read_csv(workdir / "results" / "tables" / "wer.csv").drop(columns=TIMING_COLUMNS)
    local_table = pd.read_csv(tiny_run / "results" / "tables" / "wer.csv").drop(columns=TIMING_COLUMNS)
    local_rows = cluster_table[key].merge(local_table, on=key, how="left")
    assert len(cluster_table) == 2 * 2 * 3 and len(local_rows) == len(cluster_table)
    pd.testing.assert_frame_equal(cluster_table.reset_index(drop=True), local_rows[cluster_table.columns],
                                  check_dtype=False)  # a column of whole numbers reads as int in the smaller table
    for folder in ["results/conditions", "results/models", "results/variants", "results/lm", "results/hyps",
                   "results/scores"]:
        compared = 0
        for path in (workdir / folder).rglob("*"):
            if path.is_file() and path.name != "card.json":  # cards hold the job's measured latency
                twin = tiny_run / path.relative_to(workdir)
                assert filecmp.cmp(path, twin, shallow=False), path.relative_to(workdir)
                compared += 1
        assert compared >= 3, folder


def test_profile_plans_the_tiny_config(tmp_path):
    """`snakemake --profile profiles/slurm -n`: the profile parses, its keys exist, its rules' resources resolve,
    and its partition file gives GPU jobs a GPU partition and the rest a CPU one."""
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    workdir = workflow_copy(tmp_path, tiny_config())
    shutil.copytree(REPO / "profiles", workdir / "profiles")
    result = subprocess.run([SNAKEMAKE, "--profile", "profiles/slurm", "-n"], cwd=workdir,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (result.stdout + result.stderr).count("Group job evaluation") == math.ceil((4 * 7 + 4) / 4)  # decode + scores; exports
    profile = yaml.safe_load((workdir / "profiles" / "slurm" / "config.yaml").read_text())
    partitions = read_partition_file(workdir / profile["slurm-partition-config"])
    assert {p.limits.max_gpu > 0 for p in partitions} == {True, False}


def test_paper_configs_ask_for_gpus_where_they_need_one(tmp_path):
    """E1 asks one GPU per decode and conversion, except for CPU-only kernels (PTQ int8)."""
    workdir = workflow_copy(tmp_path)
    result = subprocess.run([SNAKEMAKE, "-n", "--configfile", "config/studies/E1_pimentel.yaml"], cwd=workdir,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    blocks = result.stdout.split("\nrule ")
    for rule in ("decode", "compress"):
        gpus = {b.split("variant=")[1].split(",")[0].split("\n")[0]: "gpu=1" in b for b in blocks
                if b.startswith(f"{rule}:")}
        assert gpus["none"] and gpus["fp16"] and gpus["magnitude~0.5"], rule
        assert not gpus["dynamic_int8"] and not gpus["static_int8"] and not gpus["magnitude~0.5+dynamic_int8"], rule
