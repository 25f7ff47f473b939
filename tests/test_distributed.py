"""Training on several processes (torch.distributed, gloo on the CPU): the same updates as one process on the
same global batch, one checkpoint, an exact resume after kill -9, and a clear error for missing GPUs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asrcompress.distributed import World, check_devices, launch
from asrcompress.errors import ConfigError

from distributed_job import train_tiny

TESTS = Path(__file__).resolve().parent
# float32 sums of the two ranks' gradients differ from one process's in the last bits
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-5


def _spec(corpus, tmp_path: Path, name: str, steps: int) -> dict:
    return dict(train_manifest=corpus[0], dev_manifest=corpus[1], checkpoint_dir=str(tmp_path / f"{name}.ckpt"),
                steps=steps, weights_out=str(tmp_path / f"{name}.pt"))


def test_a_global_batch_is_split_between_ranks_without_loss():
    batch = list(range(7))
    shards = [World(rank, 3).shard(batch) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == batch and [len(s) for s in shards] == [3, 2, 2]
    assert World().shard(batch) == batch


@pytest.mark.slow
def test_two_processes_make_the_updates_of_one_and_write_one_checkpoint(tiny_corpus, tmp_path):
    one = launch(train_tiny, _spec(tiny_corpus, tmp_path, "one", 5), 1, key="finetune.gpus")
    two = launch(train_tiny, _spec(tiny_corpus, tmp_path, "two", 5), 2, key="finetune.gpus", backend="gloo")
    losses = [[h["train_loss"] for h in run["history"]] for run in (one, two)]
    assert len(losses[1]) == 5 and losses[1] == pytest.approx(losses[0], rel=LOSS_RTOL)
    assert losses[0][-1] < losses[0][0]  # it learns: the comparison is not between two untrained models
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < WEIGHT_ATOL
    # rank 0 alone checkpoints (step 4 of 5), with both ranks' generators in it
    assert [p.name for p in (tmp_path / "two.ckpt").iterdir()] == ["checkpoint.pt"]
    state = torch.load(tmp_path / "two.ckpt" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and len(state["rank_rngs"]) == 2


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tiny_corpus, tmp_path):
    """kill -9 of the job's process group (what SLURM and Snakemake do) after a checkpoint: the rerun resumes
    there, on both ranks, and ends with the weights of a run never killed (dropout on: the ranks' generators
    resume too)."""
    steps = 12
    straight = _spec(tiny_corpus, tmp_path, "straight", steps)
    killed = _spec(tiny_corpus, tmp_path, "killed", steps)
    for spec in (straight, killed):
        spec.update(deterministic=False, checkpoint_every=3)
        Path(spec["weights_out"]).with_suffix(".spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}

    def run(spec: dict, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(TESTS / "distributed_job.py"), "2",
                                 str(Path(spec["weights_out"]).with_suffix(".spec.json"))],
                                env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                **kwargs)

    checkpoint = Path(killed["checkpoint_dir"]) / "checkpoint.pt"
    job = run(killed)
    deadline = time.time() + 300
    while not checkpoint.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), job.stderr.read().decode()[-3000:] if job.poll() is not None else "no checkpoint"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    step = torch.load(checkpoint, weights_only=False)["step"]  # whole: written beside and renamed
    assert 3 <= step < steps and not Path(killed["weights_out"]).exists()

    for spec in (killed, straight):
        job = run(spec)
        assert job.wait(timeout=600) == 0, job.stderr.read().decode()[-3000:]
    resumed = json.loads(Path(killed["weights_out"]).with_suffix(".json").read_text())
    assert resumed["history"][0]["step"] == 1  # the history before the kill came back with the checkpoint
    a, b = torch.load(straight["weights_out"]), torch.load(killed["weights_out"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_asking_for_more_gpus_than_the_job_has_names_the_key():
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    asked = max(2, visible + 1)  # one process never needs a process group (and runs on the CPU without a GPU)
    with pytest.raises(ConfigError, match=r"finetune\.gpus.*asks for %d GPUs.*sees %d" % (asked, visible)):
        check_devices(asked, "finetune.gpus")
    with pytest.raises(ConfigError, match=r"finetune\.gpus"):
        launch(train_tiny, {}, asked, key="finetune.gpus")


def _job_resources(workdir: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(rule, wildcards, resources) of every job a dry run plans."""
    from workflow_utils import snakemake

    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs: list[tuple[str, str, dict[str, str]]] = []
    for line in result.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            jobs.append((stripped.split()[1].rstrip(":"), "", {}))
        elif stripped.startswith("wildcards:") and jobs:
            jobs[-1] = (jobs[-1][0], stripped.removeprefix("wildcards:").strip(), jobs[-1][2])
        elif stripped.startswith("resources:") and jobs:
            jobs[-1][2].update(item.strip().split("=", 1) for item in stripped.removeprefix("resources:").split(","))
    return jobs


def test_training_jobs_ask_for_the_training_gpus_and_the_others_for_one_at_most(tmp_path):
    from workflow_utils import tiny_config, workflow_copy

    config = tiny_config()
    config.update(gpus_per_job=1)
    config["finetune"]["gpus"] = 4
    jobs = _job_resources(workflow_copy(tmp_path, config))
    gpus = {(rule, wildcards): int(resources.get("gpu", 0)) for rule, wildcards, resources in jobs}
    assert gpus[("finetune", "model=tiny")] == 4
    assert gpus[("compress", "model=tiny, variant=structured~0.3+dynamic_int8+ft2")] == 4  # recovery trains
    assert gpus[("compress", "model=tiny, variant=magnitude~0.5")] == 1  # no training: one GPU to time it
    assert gpus[("compress", "model=tiny, variant=dynamic_int8")] == 0  # CPU kernels only
    assert {g for (rule, _), g in gpus.items() if rule == "decode"} == {0, 1}


def test_onnxruntime_decodes_hold_no_gpu(tmp_path):
    """decode.backend onnxruntime runs on ONNX Runtime's CPU provider: its decode jobs ask for no GPU."""
    from workflow_utils import tiny_config, workflow_copy

    config = tiny_config()
    config.update(gpus_per_job=1)
    config["decode"]["backend"] = "onnxruntime"
    jobs = _job_resources(workflow_copy(tmp_path, config))
    decodes = [int(resources.get("gpu", 0)) for rule, _, resources in jobs if rule == "decode"]
    assert decodes and set(decodes) == {0}
    assert any(int(resources.get("gpu", 0)) == 1 for rule, _, resources in jobs if rule == "compress")
