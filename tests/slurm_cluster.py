"""A real one-node SLURM cluster on this machine, for the SLURM end-to-end test.

Debian's slurm-wlm and munge are installed when missing (root only); slurmctld and slurmd then run on
localhost with their own config, state and ports under a scratch folder, so a system SLURM is left alone.
The node advertises more CPUs and memory than the machine has (``SlurmdParameters=config_overrides``) so that
several small jobs share two cores, as they would share a real node. Completed jobs are logged by the
``jobcomp/filetxt`` plugin, which ``sacct --completion`` reads: proof that each job went through sbatch without a
slurmdbd and its database.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "sacct")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
# Debian's default config path. SLURM_CONF alone is not enough: snakemake-executor-plugin-slurm-jobstep strips
# every SLURM_* variable but the job's identity from the environment of the srun it starts inside a job.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
NODE_CPUS = 8
NODE_MEMORY_MB = 64000
PARTITION = "debug"


@dataclasses.dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    processes: list[subprocess.Popen]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=120)

    def completed_jobs(self) -> list[dict[str, str]]:
        """Every job the controller finished, from ``sacct --completion`` (the job-completion log)."""
        fields = ["JobID", "JobName", "State", "ExitCode"]
        out = self.run("sacct", "--completion", "--parsable2", "--noheader", "--format", ",".join(fields)).stdout
        return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("log/*.log")))

    def stop(self) -> None:
        self.run("scontrol", "shutdown", check=False)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf.resolve():
            SYSTEM_CONF.unlink()


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None when it can, after installing what is missing)."""
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        return f"this machine has its own SLURM configuration ({SYSTEM_CONF}), which the test leaves alone"
    if os.geteuid() != 0:  # installing, starting munged and slurmd, and linking the config all need it
        return "starting a SLURM cluster on this machine needs root"
    if all(shutil.which(tool) or Path("/usr/sbin", tool).exists() for tool in DAEMONS):
        return None
    if not shutil.which("apt-get"):
        return "SLURM is not installed and this system has no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # a stale package index: refresh once
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return f"apt-get could not install {' '.join(PACKAGES)}: {result.stderr[-500:]}"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_munge() -> None:
    if MUNGE_SOCKET.exists() and subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create"], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, capture_output=True)
    _wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, "munged", 20)


def _wait(ready, what: str, seconds: float, logs=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f} s\n{logs()}")


def slurm_conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=asrcompress-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/run/slurmctld.pid",
        f"SlurmdPidFile={root}/run/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc",  # no cgroups in a container
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SlurmdParameters=config_overrides",  # the node's CPUs and memory below, not the machine's
        "SchedulerParameters=sched_min_interval=100000",
        "ReturnToService=2",
        "MpiDefault=none",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root}/log/jobcomp.txt",
        "MinJobAge=3600",  # finished jobs stay visible to squeue, which the executor polls
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def start_cluster(root: Path) -> SlurmCluster:
    _start_munge()
    for name in ("state", "spool", "run", "log"):
        (root / name).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, *_free_ports(2)))
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.unlink(missing_ok=True)  # a link left by an earlier run that was killed
    SYSTEM_CONF.symlink_to(conf)
    env = dict(os.environ, SLURM_CONF=str(conf))
    processes = [
        subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-c", "-f", str(conf)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["/usr/sbin/slurmd", "-D", "-f", str(conf)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    cluster = SlurmCluster(root, conf, env, processes)

    def node_idle() -> bool:
        result = cluster.run("sinfo", "--noheader", "--format=%t", check=False)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    try:
        _wait(node_idle, "the SLURM node", 60, cluster.logs)
    except RuntimeError:
        cluster.stop()
        raise
    return cluster
