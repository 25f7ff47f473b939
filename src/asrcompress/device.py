"""Devices and precisions: the GPU a job runs on, the autocast dtype a config asks for, a model's dtype.

The lowest floor of the torch side: decoding, training, cost, export and the store all ask these questions,
and none of them should import another to get the answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ContextManager

import torch

from .errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ConfigError, ValueError):
    """A precision the device cannot use (or no precision at all); names the config key."""


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype the model computes in (float32 unless a method changed it)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def pick_device(cpu_only: bool = False) -> torch.device:
    """The GPU to run on, or the CPU (``cpu_only``, or no GPU).

    Under a scheduler (``CUDA_VISIBLE_DEVICES`` set, as SLURM sets it) the first visible GPU is the one
    allocated to the job. Without one, on a shared workstation with several GPUs, the one with the most free
    memory; it becomes the current device, so code that asks for "the" GPU (capability checks of the kernels,
    synchronize) means the same one.
    """
    if cpu_only or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None or count == 1:
        return torch.device("cuda", 0)
    free = [torch.cuda.mem_get_info(index)[0] for index in range(count)]  # opens a context on each GPU
    best = max(range(count), key=lambda index: free[index])
    log.info("CUDA_VISIBLE_DEVICES is unset and %d GPUs are visible: using cuda:%d, the one with the most free "
             "memory (%s GiB free)", count, best, ", ".join(f"cuda:{i} {f / 2**30:.1f}" for i, f in enumerate(free)))
    torch.cuda.set_device(best)
    return torch.device("cuda", best)


def resolve_precision(name: str, device: torch.device | str, key: str = "decode.precision") -> torch.dtype | None:
    """The autocast dtype of ``decode.precision`` / ``finetune.precision`` on ``device``; ``None``: float32.

    auto: bf16 on a GPU that computes it natively, else fp16; float32 on a CPU. An explicit bf16 is honoured
    on a CPU (CPU autocast has bf16 kernels); fp16 is not (CPU autocast gains nothing from it).
    """
    device = torch.device(device)
    if name != "auto" and name not in PRECISIONS:
        raise PrecisionError(key, f"unknown precision {name!r}; one of auto, {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if name == "fp16":
            raise PrecisionError(key, "fp16 runs on a GPU only; on a CPU use fp32 or bf16 (or auto: fp32)")
        return None if name == "auto" else PRECISIONS[name]
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return PRECISIONS[name]


def precision_name(dtype: torch.dtype | None) -> str:
    return str(dtype or torch.float32).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
