"""Fine-tuning recipes on the demo corpus: the dev-WER curve, the clean test WER and the wall time per recipe.

Usage:
  .venv/bin/python benchmarks/finetune_benchmark.py --workdir DIR [--threads 2] \
      --recipe '{"steps": 1600, "batch_seconds": 16}' [--recipe ...]
Each recipe is a JSON object of `finetune` keys laid over config/config.yaml's; `eval_every` sets the curve's
points. The demo corpus is built in DIR by the workflow when it is missing. Writes benchmarks/results/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(Path(__file__).resolve().parent)]
from reporting import cpu_name, publish  # noqa: E402

SPLITS = ("train", "dev", "test")


def build_corpus(workdir: Path, config: Path) -> None:
    for name in ("Snakefile", "workflow", "scripts", "config", "src", "envs"):
        if not (workdir / name).exists():
            (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, workdir / name)
    shutil.copy(config, workdir / "config" / "config.yaml")
    targets = [f"results/data/{split}" for split in SPLITS]
    subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--cores", "2", *targets], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)


def run_recipe(workdir: Path, config: dict, overrides: dict, threads: int, out: Path) -> dict:
    import torch

    from asrcompress.decoding import transcribe
    from asrcompress.finetune import finetune_model
    from asrcompress.manifest import read_manifest, resolve_audio
    from asrcompress.audio import read_audio
    from asrcompress.models import load_pretrained_dir
    from asrcompress.scoring import count_errors, total

    (name, entry), = config["models"].items()
    data = workdir / "results" / "data"
    started = time.perf_counter()
    card = finetune_model(name, entry, {**config["finetune"], **overrides}, str(data / "train" / "manifest.jsonl"),
                          str(data / "dev" / "manifest.jsonl"), out / "model", out / "checkpoint", config["sample_rate"],
                          config["seed"], threads=threads)
    wall = time.perf_counter() - started
    model, processor = load_pretrained_dir(out / "model")
    manifest = str(data / "test" / "manifest.jsonl")
    utterances = read_manifest(manifest)
    waves = [read_audio(resolve_audio(u, manifest), config["sample_rate"]) for u in utterances]
    hypotheses, _ = transcribe(model, processor, waves, config["sample_rate"], 60, torch.device("cpu"))
    test = total(count_errors(u.text, h) for u, h in zip(utterances, hypotheses))
    return {"recipe": overrides, "wall_s": wall, "test_wer": test.wer, "test_cer": test.cer,
            "curve": [(h["step"], h["dev_wer"], h["dev_cer"]) for h in card["result"]["history"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", action="append", required=True, help="JSON object of finetune overrides")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune.md"))
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not all((workdir / "results" / "data" / s / "manifest.jsonl").exists() for s in SPLITS):
        build_corpus(workdir, Path(args.config))
    config = yaml.safe_load(Path(args.config).read_text())
    results = []
    import os

    os.chdir(workdir)  # manifests hold paths relative to the workflow's root
    for index, recipe in enumerate(args.recipe):
        results.append(run_recipe(workdir, config, json.loads(recipe), args.threads, workdir / "finetune-bench" / str(index)))
    lines = [f"Fine-tuning recipes on the demo corpus ({cpu_name()}, {args.threads} threads, config {Path(args.config).name})",
             "", "| recipe | wall s | dev WER / CER by step | clean test WER / CER |", "|---|---|---|---|"]
    for r in results:
        curve = "; ".join(f"{step}: {100 * wer:.0f} / {100 * cer:.0f}" for step, wer, cer in r["curve"])
        lines.append(f"| `{json.dumps(r['recipe'])}` | {r['wall_s']:.0f} | {curve} | {100 * r['test_wer']:.1f} / {100 * r['test_cer']:.1f} |")
    publish("\n".join(lines) + "\n", Path(args.out))


if __name__ == "__main__":
    main()
