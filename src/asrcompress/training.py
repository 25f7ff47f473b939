"""CTC fine-tuning: seeded, resumable after a kill, with dev CER/WER in the log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from . import distributed
from .audio import read_audio
from .decoding import model_inputs, transcribe
from .device import autocast, pick_device, precision_name, resolve_precision
from .io import atomic_path
from .manifest import Utterance, read_manifest, resolve_audio
from .scoring import count_errors, total
from .text import normalize

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """``config.finetune``: the optimisation recipe."""

    steps: int = 3000
    batch_seconds: float = 60.0
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    eval_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    freeze_feature_encoder: bool = False
    threads: int = 0
    augment: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = "auto"  # autocast dtype of forward + loss: auto, fp32, bf16, fp16 (resolve_precision)

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in entry.items() if k in known})


@dataclasses.dataclass
class TrainHooks:
    """How a compression method changes the shared training loop.

    ``loss`` replaces the CTC loss (distillation); ``extra_loss`` is added to it (a sparsity
    budget's Lagrangian). ``param_groups`` are optimiser groups for parameters outside the model
    or with their own learning rate (they are removed from the default group); keep them inside
    the model's modules so a checkpoint holds them. ``after_step`` runs after each update
    (re-applying masks, annealing a temperature). ``evaluate`` turns dev WER off for models that
    cannot transcribe yet.
    """

    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor], int], torch.Tensor] | None = None
    extra_loss: Callable[[torch.nn.Module, int], torch.Tensor] | None = None
    param_groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    after_step: Callable[[torch.nn.Module, int], None] | None = None
    evaluate: bool = True
    log_values: Callable[[torch.nn.Module], dict[str, float]] | None = None


@dataclasses.dataclass
class TrainResult:
    steps: int
    wall_s: float
    final_train_loss: float
    dev_wer: float
    dev_cer: float
    history: list[dict[str, float]]


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_waves(utterances: Sequence[Utterance], manifest_path: str, sample_rate: int) -> list[np.ndarray]:
    return [read_audio(resolve_audio(utt, manifest_path), sample_rate) for utt in utterances]


def length_bucketed_batches(
    lengths: Sequence[int], max_samples: int, rng: np.random.Generator
) -> list[list[int]]:
    """Batches of similar-length utterances holding at most ``max_samples`` padded samples, in random order."""
    order = rng.permutation(len(lengths))
    # Sort within large random pools: little padding, but batches still differ between epochs.
    pool = 512
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        for index in chunk:
            longest = max([lengths[i] for i in batch] + [lengths[index]])
            if batch and longest * (len(batch) + 1) > max_samples:
                batches.append(batch)
                batch = []
            batch.append(int(index))
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def batch_stream(lengths: Sequence[int], max_samples: int, seed: int, start_step: int) -> Iterator[list[int]]:
    """Batches for steps ``start_step, start_step + 1, ...``; epoch ``e`` is fixed by ``(seed, e)``, so a
    resumed run sees exactly the batches an uninterrupted one would."""
    step, epoch = 0, 0
    while True:
        batches = length_bucketed_batches(lengths, max_samples, np.random.default_rng([seed, epoch]))
        for batch in batches:
            if step >= start_step:
                yield batch
            step += 1
        epoch += 1


def collate(processor, waves: Sequence[np.ndarray], texts: Sequence[str], sample_rate: int) -> dict[str, torch.Tensor]:
    """Model inputs plus CTC labels (padding marked -100, which the loss ignores)."""
    encoded = [processor.tokenizer(normalize(t)).input_ids for t in texts]
    labels = torch.full((len(encoded), max(len(ids) for ids in encoded)), -100, dtype=torch.long)
    for row, ids in enumerate(encoded):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {**model_inputs(processor, waves, sample_rate), "labels": labels}


def lr_lambda(warmup: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def evaluate(model, processor, waves, texts, sample_rate: int, batch_seconds: float = 120.0,
             precision: str = "auto") -> tuple[float, float]:
    """Greedy-decoding WER and CER over a dev set; leaves the model in training mode.

    The same batch size on a GPU as on a CPU: beside the optimiser state, decoding's large GPU batches would
    need memory training does not leave."""
    hypotheses, _ = transcribe(model, processor, waves, sample_rate, batch_seconds, next(model.parameters()).device,
                               precision=precision, gpu_batch_seconds=batch_seconds)
    model.train()
    summary = total(count_errors(text, hyp) for text, hyp in zip(texts, hypotheses))
    return summary.wer, summary.cer


def train(
    model: torch.nn.Module,
    processor,
    train_manifest: str,
    dev_manifest: str,
    checkpoint_dir: str | os.PathLike[str],
    config: TrainConfig,
    sample_rate: int,
    augmenter: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    hooks: TrainHooks | None = None,
    run_key: Any = None,
) -> TrainResult:
    """Fine-tune ``model`` with CTC. Resumes from ``checkpoint_dir`` when a checkpoint of the same
    recipe and data exists, so a killed job loses at most ``checkpoint_every`` steps.

    Inside a process group (:func:`asrcompress.distributed.launch`) every rank takes its share of each global
    batch and the gradients are summed, so the updates are those of one process on the whole batch (up to
    float summation order, padding and dropout draws); rank 0 evaluates and writes the checkpoints.
    """
    world = distributed.world()
    if config.threads:
        torch.set_num_threads(config.threads)
    # Rank 0 draws what a single process draws; the other ranks their own dropout masks.
    torch.manual_seed(config.seed if world.rank == 0 else _rank_seed(config.seed, world.rank))
    device = distributed.device_of(world) if world.distributed else pick_device()
    cast = resolve_precision(config.precision, device, key="finetune.precision")
    # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none.
    scaler = torch.amp.GradScaler(device.type) if cast == torch.float16 else None
    log.info("training on %s in %s%s%s", device, precision_name(cast), " with a gradient scaler" if scaler else "",
             f" (rank {world.rank} of {world.size})" if world.distributed else "")
    model.to(device)
    if world.distributed:
        distributed.broadcast_model(model)
    train_utts, dev_utts = read_manifest(train_manifest), read_manifest(dev_manifest)
    train_waves = load_waves(train_utts, train_manifest, sample_rate)
    dev_waves = load_waves(dev_utts, dev_manifest, sample_rate)
    train_texts, dev_texts = [u.text for u in train_utts], [u.text for u in dev_utts]
    log.info("train: %d utterances (%.1f h); dev: %d", len(train_utts), sum(map(len, train_waves)) / sample_rate / 3600, len(dev_utts))

    if config.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    hooks = hooks or TrainHooks()
    for group in hooks.param_groups:  # a method's own parameters train even inside a frozen CNN (L0 gates)
        for parameter in group["params"]:
            parameter.requires_grad_(True)
    grouped = {id(p) for group in hooks.param_groups for p in group["params"]}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in grouped]
    optimizer = torch.optim.AdamW([{"params": params}, *hooks.param_groups], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    params = params + [p for group in hooks.param_groups for p in group["params"]]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup_steps, config.steps))

    shapes = {k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    architecture = model.config.to_dict() if hasattr(model, "config") else None
    # run_key: what else defines the run (a compression recipe and its baseline), so an edit never resumes a stale one.
    # The precision is left out, like the device: it says how to compute the recipe (and "auto" differs between a
    # GPU and a CPU), so a run may resume elsewhere, and checkpoints from before the setting existed still count.
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k != "precision"}
    run_id = fingerprint(recipe, [(u.id, u.text) for u in train_utts], architecture, shapes, run_key)
    checkpoint = Path(checkpoint_dir) / "checkpoint.pt"
    start_step, history = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _restore_rng(state, world, device, config.seed)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_step, history = state["step"], state["history"]
            log.info("resumed from %s at step %d", checkpoint, start_step)
        else:
            log.info("ignoring %s: it belongs to another recipe or data", checkpoint)

    lengths = [len(w) for w in train_waves]
    max_samples = int(config.batch_seconds * sample_rate)
    model.train()
    started = time.time()
    loss_window: list[float] = []
    dev_wer = dev_cer = float("nan")
    stream = batch_stream(lengths, max_samples, config.seed, start_step)
    for step in range(start_step, config.steps):
        # transformers draws SpecAugment masks from NumPy's global generator: seed it per step, so runs
        # (and resumed runs) are identical whether or not noise augmentation reseeds it
        np.random.seed(int(np.random.SeedSequence([config.seed, step, *([world.rank] if world.rank else [])])
                           .generate_state(1)[0]))
        index = next(stream)
        waves = [train_waves[i] for i in index]
        if augmenter is not None:
            # the whole global batch on every rank, so each utterance gets the noise one process would give it
            rng = np.random.default_rng([config.seed, step])
            waves = [augmenter(w, rng) for w in waves]
        texts = [train_texts[i] for i in index]
        optimizer.zero_grad(set_to_none=True)
        loss = _step_loss(model, processor, hooks, world.shard(waves), world.shard(texts), len(index), world,
                          device, cast, sample_rate, step)
        loss_value = update(loss, optimizer, params, config.grad_clip, scaler, world)
        scheduler.step()
        if hooks.after_step:
            hooks.after_step(model, step)
        loss_window.append(loss_value)
        done = step + 1
        if done % 50 == 0 or done == config.steps:
            rate = (done - start_step) / max(1e-9, time.time() - started)
            log.info(
                "step %d/%d loss %.3f lr %.2e %.2f steps/s eta %.0f s",
                done, config.steps, np.mean(loss_window), scheduler.get_last_lr()[0], rate, (config.steps - done) / max(rate, 1e-9),
            )
        if done % 50 == 0 and hooks.log_values:
            log.info("step %d: %s", done, ", ".join(f"{k} {v:.4g}" for k, v in hooks.log_values(model).items()))
        if done % config.eval_every == 0 or done == config.steps:
            if hooks.evaluate and world.is_main:
                dev_wer, dev_cer = evaluate(model, processor, dev_waves, dev_texts, sample_rate,
                                            precision=config.precision)
                log.info("eval step %d: dev WER %.2f%% CER %.2f%%", done, 100 * dev_wer, 100 * dev_cer)
            history.append({"step": done, "train_loss": float(np.mean(loss_window)), "dev_wer": dev_wer, "dev_cer": dev_cer})
            loss_window = []
        if done % config.checkpoint_every == 0 and done < config.steps:
            rank_rngs = distributed.gather(_rng_state(device)) if world.distributed else None
            if world.is_main:
                save_checkpoint(checkpoint, run_id, done, model, optimizer, scheduler, history, scaler, rank_rngs)
    model.to("cpu")
    final_loss = history[-1]["train_loss"] if history else float("nan")
    return TrainResult(config.steps, time.time() - started, final_loss, dev_wer, dev_cer, history)


def _step_loss(model: torch.nn.Module, processor, hooks: TrainHooks, waves: Sequence[np.ndarray], texts: Sequence[str],
               global_count: int, world: distributed.World, device: torch.device, cast: torch.dtype | None,
               sample_rate: int, step: int) -> torch.Tensor:
    """This rank's share of the step's loss. The losses are means over the batch, so a rank's mean counts by
    its share of the global batch, and the parameter terms every rank computes alike by 1/size: the summed
    gradients are then those of the whole batch on one process (where both weights are exactly 1)."""
    if waves:
        batch = collate(processor, waves, texts, sample_rate)
        batch = {k: v.to(device) for k, v in batch.items()}
        # transformers' CTC loss takes log_softmax in float32 and ctc_loss is on autocast's float32 list, so
        # only the network's matmuls and convolutions run in the autocast dtype.
        with autocast(device, cast):
            loss = hooks.loss(model, batch, step) if hooks.loss else model(**batch).loss
        loss = loss.float() * (len(waves) / global_count)
    else:  # a global batch with fewer utterances than ranks
        loss = torch.zeros((), device=device)
    if hooks.extra_loss:
        loss = loss + hooks.extra_loss(model, step) / world.size
    return loss


def update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], grad_clip: float,
           scaler: torch.amp.GradScaler | None, world: distributed.World = distributed.World()) -> float:
    """Backward, the ranks' gradient sum, clipping and the optimiser step; returns the step's (global) loss.

    With a scaler (fp16) the gradients are unscaled before clipping, so the clip threshold means what it does in
    float32, and a step with overflowed gradients is skipped (on every rank alike: their gradients are equal)."""
    scaled = scaler.scale(loss) if scaler is not None else loss
    if scaled.requires_grad:
        scaled.backward()
    value = loss.detach()
    if world.distributed:
        value = distributed.sum_gradients(params, value)
    if scaler is None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    else:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    return float(value)


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _restore_rng(state: dict[str, Any], world: distributed.World, device: torch.device, seed: int) -> None:
    """Each rank continues its own random stream; a run resumed on another number of ranks reseeds them
    (the batches and the model state resume exactly either way)."""
    if not world.distributed:
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return
    ranks = state.get("rank_rngs")
    if ranks is None or len(ranks) != world.size:
        log.info("the checkpoint was written by %s ranks, this run has %d: reseeding the ranks' dropout",
                 len(ranks) if ranks else 1, world.size)
        torch.manual_seed(_rank_seed(seed, world.rank + 1000 * state["step"]))
        return
    torch.set_rng_state(ranks[world.rank]["torch"])
    if device.type == "cuda" and ranks[world.rank]["cuda"] is not None:
        torch.cuda.set_rng_state(ranks[world.rank]["cuda"], device)


def save_checkpoint(path: Path, run_id: str, step: int, model, optimizer, scheduler, history,
                    scaler: torch.amp.GradScaler | None = None, rank_rngs: list[dict[str, Any]] | None = None) -> None:
    state = {
        "run_id": run_id,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "history": history,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rank_rngs": rank_rngs,  # each rank's generators, when several processes trained
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
