"""Making, saving and loading variants, whatever their method's storage."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..cost import count_parameters, directory_bytes
from ..io import atomic_directory, read_json, write_json
from ..models import load_pretrained_dir, save_model_dir
from .registry import Variant, get

log = logging.getLogger(__name__)

CARD = "card.json"
STATE_DICT = "compressed_state_dict.pt"


def compress(baseline_dir: str | os.PathLike[str], variant: Variant, out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Any]:
    """Apply ``variant`` to the baseline and write the variant folder with its card.

    The folder is assembled beside ``out_dir`` and renamed into place, so a killed job never
    leaves a variant that looks complete.
    """
    torch.manual_seed(seed)
    method = get(variant.method)
    model, processor = load_pretrained_dir(baseline_dir)
    before = count_parameters(model)
    started = time.time()
    model = method.apply(model.eval(), variant.level, dict(variant.params))
    seconds = time.time() - started
    with atomic_directory(out_dir) as staging:
        if method.storage == "pretrained":
            save_model_dir(model, processor, staging)
        else:
            # Config and processor from the baseline; weights in the method's own layout.
            processor.save_pretrained(str(staging))
            model.config.save_pretrained(str(staging))
            torch.save(model.state_dict(), staging / STATE_DICT)
        after = count_parameters(model)
        card = {
            "variant": variant.id,
            "method": variant.method,
            "level": variant.level,
            "params": dict(variant.params),
            "storage": method.storage,
            "cpu_only": method.cpu_only,
            "parameters": after.parameters,
            "nonzero_parameters": after.nonzero,
            "sparsity": round(after.sparsity, 6),
            "baseline_parameters": before.parameters,
            "bytes_on_disk": directory_bytes(staging),
            "compress_seconds": round(seconds, 3),
        }
        card["size_mb"] = round(card["bytes_on_disk"] / 1e6, 4)
        write_json(staging / CARD, card)
    log.info("variant %s: %d parameters, %d non-zero, %.2f MB", variant.id, after.parameters, after.nonzero, card["size_mb"])
    return card


def load_variant(variant_dir: str | os.PathLike[str]):
    """(model, processor, card) of a variant folder written by :func:`compress`."""
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Processor

    variant_dir = Path(variant_dir)
    card = read_json(variant_dir / CARD)
    method = get(card["method"])
    if method.storage == "pretrained":
        model, processor = load_pretrained_dir(variant_dir)
    else:
        processor = Wav2Vec2Processor.from_pretrained(str(variant_dir))
        model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(str(variant_dir)))
        model = method.restructure(model.eval(), card["level"], card["params"])
        model.load_state_dict(torch.load(variant_dir / STATE_DICT, map_location="cpu", weights_only=False))
    return model.eval(), processor, card
