"""Which variants export to ONNX, how close the graph is, and what ONNX Runtime's CPU latency is beside torch's.

One variant per method (every method of the catalogue at a typical level), made from a baseline with random
weights by the pipeline's own ``store.compress`` (methods that train get 2 steps on the real utterances of
tests/data: the export does not depend on how well a variant was trained), then put through the export stage
(``export.export_variant``): export, logits on the fixed cost input against the torch variant, greedy transcripts
of the real utterances against the torch variant's, and both latencies on the cost input (batch of one,
``--threads`` threads, median of ``--repeats``) in the same job.

Usage: .venv/bin/python benchmarks/onnx_benchmark.py [--shape demo|base] [--threads 2] [--repeats 5]
Writes benchmarks/results/onnx.md and prints it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src")]

from reporting import cpu_name, publish  # noqa: E402
from asrcompress.audio import duration_s  # noqa: E402
from asrcompress.compression.registry import variants_from_config  # noqa: E402
from asrcompress.compression.store import compress  # noqa: E402
from asrcompress.export import export_variant  # noqa: E402
from asrcompress.manifest import Utterance, write_manifest  # noqa: E402
from asrcompress.models import ModelSpec, build_model, build_processor, save_model_dir  # noqa: E402

RATE = 16000
SPEECH = REPO / "tests" / "data" / "speech" / "transcripts.tsv"
ENTRIES = [
    {"method": "none"}, {"method": "fp16"}, {"method": "bf16"}, {"method": "dynamic_int8"}, {"method": "static_int8"},
    {"method": "ort_int8"}, {"method": "qat", "levels": [4]}, {"method": "magnitude", "levels": [0.5]},
    {"method": "nm_sparsity", "levels": ["2:4"]}, {"method": "structured", "levels": [0.3]},
    {"method": "structured_taylor", "levels": [0.3]},
    {"method": "structured_l0", "levels": [0.3], "recovery": {"steps": 2}},
    {"method": "downsampling", "name": "downsampling_signal", "levels": [2], "params": {"kind": "signal"},
     "recovery": {"steps": 2}},
    {"method": "downsampling", "name": "downsampling_pool", "levels": [2], "params": {"kind": "pool"},
     "recovery": {"steps": 2}},
    {"method": "downsampling", "name": "downsampling_conv", "levels": [2], "params": {"kind": "conv"},
     "recovery": {"steps": 2}},
    {"method": "layer_removal", "levels": [2]}, {"method": "layerdrop", "levels": [0.5]},
    {"method": "distillation", "name": "student_cnn", "params": {"distill_steps": 2}, "recovery": {"steps": 2}},
    {"method": "distillation", "name": "student_fbank", "params": {"distill_steps": 2, "frontend": "fbank"},
     "recovery": {"steps": 2}},
    {"method": "magnitude", "name": "magnitude_then_ort_int8", "levels": [0.5], "then": [{"method": "ort_int8"}]},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("demo", "base"), default="demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "onnx.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    torch.manual_seed(0)
    processor = build_processor(RATE)
    architecture = config["models"]["demo-w2v2"]["architecture"] if args.shape == "demo" else None
    model = build_model(ModelSpec(args.shape, "scratch", architecture=architecture), processor).eval()
    with open(SPEECH, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    root = SPEECH.parent.parent
    utterances = [Utterance(r["utt_id"], str(root / r["path"]), duration_s(root / r["path"]), "s", r["text"])
                  for r in rows]
    training = {**config["finetune"], "batch_seconds": 8, "eval_every": 1000, "checkpoint_every": 1000}
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        manifest = tmp / "speech.jsonl"
        write_manifest(manifest, utterances)
        save_model_dir(model, processor, tmp / "baseline")
        for variant in variants_from_config(ENTRIES):
            out = tmp / "variants" / variant.id
            compress(tmp / "baseline", variant, out, sample_rate=RATE, training=training, train_manifest=str(manifest),
                     dev_manifest=str(manifest), threads=args.threads, cost_seconds=10.0, cost_repeats=1)
            check = export_variant(out, str(manifest), tmp / "onnx" / variant.id, RATE, check_utterances=len(rows),
                                   cost_seconds=10.0, cost_repeats=args.repeats, cost_threads=args.threads,
                                   threads=args.threads)
            results.append(check)
            print(variant.id, check.status, check.op or "", flush=True)
    lines = [
        f"ONNX export of one variant per method ({args.shape} shape, random weights; training methods 2 steps): "
        f"`benchmarks/onnx_benchmark.py --shape {args.shape} --threads {args.threads} --repeats {args.repeats}`. "
        f"Machine: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, onnxruntime "
        f"{__import__('onnxruntime').__version__}. Latency: 10 s of seeded noise, batch of one, {args.threads} threads, "
        f"median of {args.repeats} after a warm-up, torch and ONNX Runtime in the same job. Transcripts: greedy, "
        f"{len(rows)} real utterances (tests/data), graph against torch variant.",
        "",
        "| variant | status | operator that stopped it | max logit diff | transcripts equal | torch ms | ORT ms | "
        "ORT speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for check in results:
        speedup = (f"{check.torch_latency_ms / check.ort_latency_ms:.2f}x"
                   if check.torch_latency_ms and check.ort_latency_ms else "-")
        lines.append(
            f"| {check.variant} | {check.status} | {check.op or '-'} | "
            f"{f'{check.max_logit_diff:.1e}' if check.max_logit_diff is not None else '-'} | "
            f"{f'{check.transcripts_equal}/{check.transcripts_checked}' if check.transcripts_checked else '-'} | "
            f"{f'{check.torch_latency_ms:.1f}' if check.torch_latency_ms else '-'} | "
            f"{f'{check.ort_latency_ms:.1f}' if check.ort_latency_ms else '-'} | {speedup} |")
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
