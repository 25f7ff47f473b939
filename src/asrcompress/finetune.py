"""The fine-tuning stage: build or load the model, train it, save it with a card."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
from typing import Any, Callable

import numpy as np

from . import distributed
from .cost import count_parameters, directory_bytes
from .io import atomic_directory, write_json
from .models import ModelSpec, build_model, build_processor, load_checkpoint, save_model_dir
from .training import TrainConfig, train

log = logging.getLogger(__name__)


def training_augmenter(augment: dict[str, Any], sample_rate: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """On-the-fly coloured noise at a random SNR (audiomentations), for matched-condition training.

    Returns ``None`` when ``noise_prob`` is 0, which is clean (mismatched) training.
    """
    probability = float(augment.get("noise_prob", 0.0))
    if probability <= 0:
        return None
    from audiomentations import AddColorNoise

    low, high = augment.get("snr_db", [5, 30])
    transform = AddColorNoise(min_snr_db=low, max_snr_db=high, p=1.0)

    def apply(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= probability:
            return wave
        # audiomentations draws from the global stdlib and NumPy generators: seed both from ours.
        seed = int(rng.integers(2**31))
        random.seed(seed)
        np.random.seed(seed)
        return transform(samples=wave, sample_rate=sample_rate)

    return apply


def finetune_model(
    model_name: str,
    model_entry: dict[str, Any],
    training: dict[str, Any],
    train_manifest: str | None,
    dev_manifest: str | None,
    out_dir: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    sample_rate: int,
    seed: int,
    threads: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """Fine-tune (or, with ``finetune: false``, take as it is) and write ``out_dir``:
    a save_pretrained folder with its processor and ``card.json``.

    ``source`` is the pretrained folder (local, or fetched from the hub by the workflow).
    """
    import torch

    torch.manual_seed(seed)
    spec = ModelSpec.from_config(model_name, {**model_entry, "sample_rate": sample_rate})
    if spec.init == "scratch":
        processor = build_processor(sample_rate)
        model = build_model(spec, processor)
    else:
        model, processor = load_checkpoint(spec, source or spec.source, sample_rate)
    config = TrainConfig.from_config({**training, "seed": seed, "threads": threads})
    counts = count_parameters(model)
    log.info("model %s (%s%s): %d parameters", model_name, spec.init,
             f" from {source or spec.source}" if spec.init == "pretrained" else "", counts.parameters)
    result = None
    if spec.finetune:
        if not train_manifest or not dev_manifest:
            raise ValueError(f"model {model_name} is fine-tuned but no train/dev manifest was given")
        result = train(model, processor, train_manifest, dev_manifest, checkpoint_dir, config, sample_rate,
                       augmenter=training_augmenter(config.augment, sample_rate))
    if not distributed.world().is_main:
        return {}  # the main rank writes the model
    with atomic_directory(out_dir) as staging:
        save_model_dir(model, processor, staging)
        card = {
            "model": model_name,
            "init": spec.init,
            "pretrained_id": spec.pretrained_id,
            "parameters": counts.parameters,
            "revision": spec.revision,
            "finetuned": spec.finetune,
            "training": dataclasses.asdict(config) if spec.finetune else None,
            "result": dataclasses.asdict(result) if result else None,
            "bytes_on_disk": directory_bytes(staging),
        }
        write_json(staging / "card.json", card)
    # The checkpoint only serves a resume; for large models it holds gigabytes of optimiser state.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if result:
        log.info("saved %s: dev WER %.2f%% CER %.2f%% after %d steps (%.0f s)",
                 out_dir, 100 * result.dev_wer, 100 * result.dev_cer, result.steps, result.wall_s)
    else:
        log.info("saved %s as it is (finetune: false)", out_dir)
    return card
