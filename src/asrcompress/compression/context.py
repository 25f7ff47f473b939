"""What a compression method may use besides the model: data, the teacher, the training loop."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PipelineError
from ..manifest import read_manifest
from ..models import load_pretrained_dir
from ..training import TrainConfig, TrainHooks, TrainResult, load_waves, train
from .registry import Recovery

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CompressionContext:
    """Shared by every step of one variant; ``meta`` is the current step's record.

    ``meta`` must stay JSON-serialisable: it is written to the variant's card and handed back to
    the method's ``restructure`` when the variant is loaded (kept heads, inserted modules...).
    """

    processor: Any
    sample_rate: int
    seed: int
    baseline_dir: Path
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # config.finetune: the base recipe
    train_manifest: str | None = None
    dev_manifest: str | None = None
    checkpoint_dir: Path | None = None
    threads: int = 0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_key: str = ""  # the recipe and the baseline: a resumed training must belong to both
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # training results, for the card

    @property
    def checkpoint_root(self) -> Path:
        """Where training checkpoints go (the store gives each variant its own folder)."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else self.baseline_dir.parent / "recovery-checkpoints"

    def teacher(self) -> torch.nn.Module:
        """A fresh, frozen copy of the baseline (distillation targets, calibration references)."""
        model, _ = load_pretrained_dir(self.baseline_dir)
        model.eval().requires_grad_(False)
        return model

    def _require(self, what: str) -> str:
        manifest = self.train_manifest
        if not manifest:
            raise PipelineError(f"{what} needs the training split, but the compress job was given none")
        return manifest

    def calibration_waves(self, count: int) -> list[np.ndarray]:
        """``count`` training utterances drawn with the seed (the same ones every run)."""
        manifest = self._require("calibration")
        utterances = read_manifest(manifest)
        rng = np.random.default_rng([self.seed, 7])
        chosen = sorted(rng.choice(len(utterances), size=min(count, len(utterances)), replace=False))
        return load_waves([utterances[i] for i in chosen], manifest, self.sample_rate)

    def train_config(self, recovery: Recovery) -> TrainConfig:
        """The base recipe shortened to the recovery steps, at a tenth of the learning rate by default."""
        base = TrainConfig.from_config({**self.training, "seed": self.seed, "threads": self.threads})
        return dataclasses.replace(
            base,
            steps=recovery.steps,
            learning_rate=recovery.learning_rate if recovery.learning_rate is not None else base.learning_rate / 10,
            warmup_steps=recovery.warmup_steps if recovery.warmup_steps is not None else max(1, recovery.steps // 10),
            eval_every=min(base.eval_every, recovery.steps),
            checkpoint_every=min(base.checkpoint_every, max(1, recovery.steps // 4)),  # the last step saves none
            augment={},
        )

    def fine_tune(self, model: torch.nn.Module, recovery: Recovery, hooks: TrainHooks | None = None,
                  config: TrainConfig | None = None) -> TrainResult:
        """Train ``model`` (masks, fake quantizers and gates in place) with the shared resumable loop."""
        manifest = self._require("recovery fine-tuning")
        if not self.dev_manifest:
            raise PipelineError("recovery fine-tuning needs the dev split, but the compress job was given none")
        result = train(model, self.processor, manifest, self.dev_manifest, self.checkpoint_root,
                       config or self.train_config(recovery), self.sample_rate, hooks=hooks, run_key=self.run_key)
        self.results.append(dataclasses.asdict(result))
        return result
