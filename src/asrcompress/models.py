"""CTC models and their character processors: built from a small config (demo) or
loaded with ``from_pretrained`` (any ``*ForCTC`` through the Auto classes: wav2vec2, HuBERT,
WavLM, data2vec-audio...), and saved with ``save_pretrained`` plus a JSON card.

Pretrained checkpoints come from a local folder or the Hugging Face hub; hub checkpoints are
fetched once into ``resources/models/<name>`` by their own rule, so training jobs never touch
the network. A checkpoint that ships a tokenizer (a fine-tuned CTC model) keeps it; a
pretrained-only SSL checkpoint gets our character vocabulary and a fresh CTC head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, PipelineError
from .io import atomic_directory

if TYPE_CHECKING:  # the workflow imports this module at parse time: keep torch out of it
    import torch

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
    revision: str | None = None
    finetune: bool = True

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> "ModelSpec":
        init = entry.get("init", "scratch")
        if init == "pretrained" and not entry.get("pretrained_id"):
            raise ConfigError(f"models.{name}.pretrained_id", "required when init is 'pretrained'")
        if init == "scratch" and not entry.get("finetune", True):
            raise ConfigError(f"models.{name}.finetune", "a model built from scratch must be trained")
        return cls(
            name=name,
            init=init,
            pretrained_id=entry.get("pretrained_id"),
            architecture=dict(entry.get("architecture", {})),
            sample_rate=int(entry.get("sample_rate", 16000)),
            revision=entry.get("revision"),
            finetune=bool(entry.get("finetune", True)),
        )

    @property
    def is_local(self) -> bool:
        """A pretrained id that names an existing folder is used in place; anything else is a hub id."""
        return self.init == "pretrained" and Path(str(self.pretrained_id)).expanduser().is_dir()

    @property
    def source(self) -> str | None:
        """The folder the pretrained weights are read from (``None`` when built from scratch)."""
        if self.init != "pretrained":
            return None
        return str(Path(str(self.pretrained_id)).expanduser()) if self.is_local else f"resources/models/{self.name}"


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


def _ctc_settings(tokenizer) -> dict[str, Any]:
    return dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, ctc_loss_reduction="mean",
                ctc_zero_infinity=True)


def build_model(spec: ModelSpec, processor) -> torch.nn.Module:
    """A model built from scratch whose output layer matches ``processor``'s vocabulary."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    if spec.init != "scratch":
        raise ConfigError(f"models.{spec.name}.init", f"build_model makes scratch models; got {spec.init!r}")
    return Wav2Vec2ForCTC(Wav2Vec2Config(**{**spec.architecture, **_ctc_settings(processor.tokenizer)}))


def checkpoint_has_tokenizer(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "vocab.json").is_file()


def load_checkpoint(spec: ModelSpec, source: str | os.PathLike[str], sample_rate: int):
    """Model and processor from a pretrained folder, ready to fine-tune or to evaluate.

    The checkpoint's own feature extractor (normalisation, attention masks) is kept; so is its
    tokenizer when it has one, otherwise ours is used and the CTC head is new (SSL-only checkpoints).
    """
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, Wav2Vec2Processor

    source = str(source)
    if not Path(source).is_dir():
        raise ConfigError(f"models.{spec.name}.pretrained_id", f"{source} is not a folder")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

    config = AutoConfig.from_pretrained(source)
    if getattr(config, "model_type", None) not in MODEL_FOR_CTC_MAPPING_NAMES:
        raise ConfigError(f"models.{spec.name}.pretrained_id",
                          f"{source}: model type {getattr(config, 'model_type', None)!r} has no CTC head in transformers")
    own_tokenizer = checkpoint_has_tokenizer(source)
    if own_tokenizer:
        processor = Wav2Vec2Processor.from_pretrained(source)
    else:
        if not spec.finetune:
            raise ConfigError(f"models.{spec.name}.finetune", f"{source} has no tokenizer, so it has no trained CTC "
                                                            "head to evaluate as it is: fine-tune it (finetune: true)")
        ours = build_processor(sample_rate)
        # Recent transformers save the feature extractor inside processor_config.json, older ones beside it.
        has_extractor = any((Path(source) / name).is_file() for name in ("preprocessor_config.json", "processor_config.json"))
        if has_extractor:
            extractor = AutoFeatureExtractor.from_pretrained(source)
        else:
            extractor = ours.feature_extractor
            # Group-norm front ends (wav2vec2-base, HuBERT-base) were trained on unpadded batches and must not
            # get an attention mask; layer-norm ones (large models, WavLM) need it.
            extractor.return_attention_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        processor = Wav2Vec2Processor(feature_extractor=extractor, tokenizer=ours.tokenizer)
    tokenizer, feature_extractor = processor.tokenizer, processor.feature_extractor
    if feature_extractor.sampling_rate != sample_rate:
        raise ConfigError("sample_rate", f"{source} expects {feature_extractor.sampling_rate} Hz audio, "
                                         f"the config says {sample_rate} Hz")
    overrides = {**spec.architecture, **(_ctc_settings(tokenizer) if not own_tokenizer else {})}
    model = AutoModelForCTC.from_pretrained(source, ignore_mismatched_sizes=not own_tokenizer, **overrides)
    return model, processor


def fetch_pretrained(pretrained_id: str, out_dir: str | os.PathLike[str], revision: str | None = None) -> Path:
    """Download a hub checkpoint into ``out_dir`` (all or nothing).

    Offline, or when the hub cannot be reached, the error says how to pre-fetch on another machine.
    """
    from huggingface_hub import snapshot_download


    out_dir = Path(out_dir)
    try:
        with atomic_directory(out_dir) as staging:
            # Repos often hold the weights twice (safetensors and .bin): fetch safetensors, .bin only if absent.
            common = ["*.json", "*.txt", "*.model"]
            snapshot_download(repo_id=pretrained_id, revision=revision, local_dir=str(staging),
                              allow_patterns=[*common, "*.safetensors"])
            if not list(staging.glob("*.safetensors")):
                snapshot_download(repo_id=pretrained_id, revision=revision, local_dir=str(staging),
                                  allow_patterns=[*common, "pytorch_model*.bin"])
            shutil.rmtree(staging / ".cache", ignore_errors=True)  # the hub client's bookkeeping
    except Exception as err:  # the hub client raises a dozen types for "cannot reach it"
        raise PipelineError(
            f"cannot fetch model {pretrained_id!r}{f' at revision {revision}' if revision else ''} into {out_dir}: "
            f"{type(err).__name__}: {err}. Without network, pre-fetch it on a machine that has it: "
            f"`hf download {pretrained_id} --local-dir {out_dir}` (or `huggingface-cli download ...`), then copy "
            f"{out_dir} here; or set models.<name>.pretrained_id to a local folder."
        ) from err
    return out_dir


def load_pretrained_dir(path: str | os.PathLike[str]):
    """Model and processor saved by :func:`save_model_dir`."""
    from transformers import AutoModelForCTC, Wav2Vec2Processor

    return AutoModelForCTC.from_pretrained(str(path)), Wav2Vec2Processor.from_pretrained(str(path))


def save_model_dir(model: torch.nn.Module, processor, path: str | os.PathLike[str]) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))


