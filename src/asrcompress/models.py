"""CTC models and their character processors: built from a small config (demo) or
loaded with ``from_pretrained`` (any ``*ForCTC`` through the Auto classes), and saved
with ``save_pretrained`` plus a JSON card.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

# Blank is the pad token (id 0), "|" separates words: the layout HF CTC checkpoints use.
PAD, UNK, WORD_DELIMITER = "<pad>", "<unk>", "|"
CHARACTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to obtain the model to fine-tune (``config.models.<name>``)."""

    name: str
    init: str  # "scratch" | "pretrained"
    pretrained_id: str | None = None
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    sample_rate: int = 16000

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> "ModelSpec":
        init = entry.get("init", "scratch")
        if init == "pretrained" and not entry.get("pretrained_id"):
            raise ConfigError(f"models.{name}.pretrained_id", "required when init is 'pretrained'")
        return cls(
            name=name,
            init=init,
            pretrained_id=entry.get("pretrained_id"),
            architecture=dict(entry.get("architecture", {})),
            sample_rate=int(entry.get("sample_rate", 16000)),
        )


def character_vocabulary() -> dict[str, int]:
    vocab = {PAD: 0, UNK: 1, WORD_DELIMITER: 2}
    for char in CHARACTERS:
        vocab[char] = len(vocab)
    return vocab


def build_processor(sample_rate: int = 16000):
    """A character-level ``Wav2Vec2Processor`` (blank = pad = 0, word delimiter ``|``)."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(character_vocabulary()))
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file), unk_token=UNK, pad_token=PAD, word_delimiter_token=WORD_DELIMITER, do_lower_case=False
        )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=sample_rate, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def build_model(spec: ModelSpec, processor) -> torch.nn.Module:
    """A CTC model whose output layer matches ``processor``'s vocabulary."""
    from transformers import AutoModelForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

    tokenizer = processor.tokenizer
    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
    )
    if spec.init == "scratch":
        return Wav2Vec2ForCTC(Wav2Vec2Config(**{**spec.architecture, **common}))
    if spec.init == "pretrained":
        overrides = {**spec.architecture, **common}
        return AutoModelForCTC.from_pretrained(spec.pretrained_id, ignore_mismatched_sizes=True, **overrides)
    raise ConfigError(f"models.{spec.name}.init", f"must be 'scratch' or 'pretrained', got {spec.init!r}")


def load_pretrained_dir(path: str | os.PathLike[str]):
    """Model and processor saved by :func:`save_model_dir`."""
    from transformers import AutoModelForCTC, Wav2Vec2Processor

    return AutoModelForCTC.from_pretrained(str(path)), Wav2Vec2Processor.from_pretrained(str(path))


def save_model_dir(model: torch.nn.Module, processor, path: str | os.PathLike[str]) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))


