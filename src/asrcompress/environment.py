"""Where results were computed: software versions, machine and code revision, for RESULTS.md."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = ("torch", "torchaudio", "transformers", "snakemake", "jiwer", "pyctcdecode", "kenlm", "torchao")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit(directory: str | Path = ".") -> str | None:
    """The checked-out commit (with ``-dirty`` for local edits), or None outside a git checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(directory), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit or None


def describe_environment(directory: str | Path = ".") -> dict[str, str]:
    """Date (UTC), OS, Python, key package versions, and the git commit of the code."""
    environment = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        **{package: _version(package) for package in PACKAGES},
    }
    commit = git_commit(directory)
    if commit:
        environment["git_commit"] = commit
    return environment
