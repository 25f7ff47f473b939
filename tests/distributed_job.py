"""A tiny training run the multi-process tests launch (importable by the spawned workers), and a command line
that runs it, so that a test can kill it like a scheduler does."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from helpers import TINY_ARCHITECTURE

# Without dropout, LayerDrop or masks the ranks compute what one process computes on the same utterances.
DETERMINISTIC = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                     final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)


def train_tiny(train_manifest: str, dev_manifest: str, checkpoint_dir: str, steps: int, weights_out: str,
               deterministic: bool = True, checkpoint_every: int = 2) -> dict:
    import torch

    from asrcompress.distributed import world
    from asrcompress.models import ModelSpec, build_model, build_processor
    from asrcompress.training import TrainConfig, train

    torch.manual_seed(0)
    processor = build_processor()
    architecture = {**TINY_ARCHITECTURE, **(DETERMINISTIC if deterministic else {})}
    model = build_model(ModelSpec("tiny", "scratch", architecture=architecture), processor)
    # 6 s batches of the 1.5 s utterances: four per step, two per rank.
    config = TrainConfig(steps=steps, batch_seconds=6.0, learning_rate=2e-3, warmup_steps=2, eval_every=1,
                         checkpoint_every=checkpoint_every, seed=0, threads=1)
    result = train(model, processor, train_manifest, dev_manifest, checkpoint_dir, config, 16000)
    if world().is_main:
        torch.save(model.state_dict(), weights_out)
    return dataclasses.asdict(result)


if __name__ == "__main__":  # python distributed_job.py PROCESSES SPEC.json
    from asrcompress.distributed import launch
    from distributed_job import train_tiny  # by its module name: the workers cannot import __main__

    processes, spec = int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    result = launch(train_tiny, spec, processes, key="finetune.gpus", backend="gloo")
    Path(spec["weights_out"]).with_suffix(".json").write_text(json.dumps(result))
