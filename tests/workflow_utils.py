"""Run the real workflow in a scratch copy of the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def workflow_copy(dest: Path, config: dict | None = None) -> Path:
    """The workflow and its library copied to ``dest``; ``config`` replaces the demo config."""
    for name in ("Snakefile", "workflow", "scripts", "config", "src", "envs"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest / name)
    if config is not None:
        write_config(dest, config)
    return dest


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True, timeout=timeout
    )


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    result = snakemake(workdir, "--dry-run", *args)
    if result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    jobs: list[tuple[str, str]] = []
    for line in result.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):  # indented in a group job
            jobs.append((stripped.split()[1].rstrip(":"), ""))
        elif stripped.startswith("wildcards:") and jobs:
            jobs[-1] = (jobs[-1][0], stripped.removeprefix("wildcards:").strip())
    return jobs
