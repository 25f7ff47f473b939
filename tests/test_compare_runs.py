"""tools/compare_runs.py: two runs are the same when every deterministic artifact is byte-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "compare_runs.py"


def run_tree(root: Path, wer: float, latency: float, hypothesis: str = "HELLO") -> Path:
    (root / "results" / "hyps" / "m" / "none").mkdir(parents=True)
    (root / "results" / "hyps" / "m" / "none" / "clean.jsonl").write_text(f'{{"hypothesis": "{hypothesis}"}}\n')
    (root / "results" / "tables").mkdir()
    pd.DataFrame([{"variant": "none", "wer": wer, "cpu_latency_ms": latency}]).to_csv(
        root / "results" / "tables" / "wer.csv", index=False)
    (root / "results" / "variants" / "none").mkdir(parents=True)
    (root / "results" / "variants" / "none" / "card.json").write_text(f'{{"cpu_latency_ms": {latency}}}')
    (root / "results" / "benchmarks").mkdir()
    (root / "results" / "benchmarks" / "decode.tsv").write_text(f"s\n{latency}\n")
    return root


def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(a), str(b)], capture_output=True, text=True)


def test_runs_that_differ_only_in_measured_time_are_identical(tmp_path):
    result = compare(run_tree(tmp_path / "a", 0.1, 12.0), run_tree(tmp_path / "b", 0.1, 99.0))
    assert result.returncode == 0, result.stdout
    assert "identical: 2 files compared" in result.stdout


def test_a_changed_score_or_hypothesis_or_missing_file_is_reported(tmp_path):
    before = run_tree(tmp_path / "a", 0.1, 12.0)
    result = compare(before, run_tree(tmp_path / "b", 0.2, 12.0, hypothesis="HULLO"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["differs: hyps/m/none/clean.jsonl", "differs: tables/wer.csv"]
    (before / "results" / "hyps" / "m" / "none" / "extra.jsonl").write_text("")
    assert "only in" in compare(before, tmp_path / "b").stdout


def test_a_folder_without_results_is_refused(tmp_path):
    result = compare(tmp_path, tmp_path)
    assert result.returncode == 2 and "no results/ folder" in result.stderr


def test_study_tables_are_compared_without_their_latency_columns(tmp_path):
    runs = []
    for name, latency, wer in (("a", 10.0, 0.1), ("b", 20.0, 0.1), ("c", 10.0, 0.3)):
        root = run_tree(tmp_path / name, wer, latency)
        pd.DataFrame([{"variant": "none", "WER": wer, "CPU latency ms": latency, "speed-up": 1.0}]).to_csv(
            root / "results" / "tables" / "E4.csv", index=False)
        (root / "results" / "tables" / "E4.md").write_text(f"| CPU latency ms | {latency} |\n")
        runs.append(root)
    assert compare(runs[0], runs[1]).returncode == 0
    assert "differs: tables/E4.csv" in compare(runs[0], runs[2]).stdout
