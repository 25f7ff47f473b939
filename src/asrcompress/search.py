"""What turns a CTC posteriorgram into words: the decoder configurations, and pyctcdecode's beam search
with a KenLM n-gram over a wav2vec2 tokenizer's labels. Torch-free, so the workflow reads decoder
specs without importing torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ConfigError
from .lm import kenlm_model_file, unigrams

@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """``decode.decoders.<name>``: greedy best path, or a beam search with an optional n-gram LM."""

    name: str
    kind: str = "greedy"  # greedy | beam
    beam_width: int = 100
    alpha: float = 0.5  # LM weight
    beta: float = 1.0  # word insertion bonus
    language_model: str | None = None  # a key of decode.language_models
    beam_prune_logp: float = -10.0
    token_min_logp: float = -5.0

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any], language_models: Sequence[str] = ()) -> "DecoderSpec":
        key = f"decode.decoders.{name}"
        unknown = set(entry) - {f.name for f in dataclasses.fields(cls)} - {"name"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown decoder option")
        spec = cls(name=name, **{k: v for k, v in entry.items() if k != "name"})
        if spec.kind not in ("greedy", "beam"):
            raise ConfigError(f"{key}.kind", f"must be greedy or beam, not {spec.kind!r}")
        if spec.kind == "greedy" and spec.language_model:
            raise ConfigError(f"{key}.language_model", "a greedy decoder uses no language model: set kind: beam")
        if spec.language_model and spec.language_model not in language_models:
            raise ConfigError(f"{key}.language_model", f"{spec.language_model!r} is not in decode.language_models "
                                                       f"({', '.join(language_models) or 'none defined'})")
        if spec.beam_width < 1:
            raise ConfigError(f"{key}.beam_width", "must be at least 1")
        return spec

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


GREEDY = DecoderSpec("greedy")

# One utterance's log-probabilities (frames, vocab) -> its transcript.
Search = Callable[[np.ndarray], str]


def ctc_labels(tokenizer, vocab_size: int) -> list[str]:
    """The model's output labels in pyctcdecode's convention: blank "", word delimiter " "."""
    labels = []
    for index in range(vocab_size):
        token = tokenizer.convert_ids_to_tokens(index)
        if index == tokenizer.pad_token_id:
            token = ""
        elif token == tokenizer.word_delimiter_token:
            token = " "
        labels.append(token if token is not None else f"<unused{index}>")
    return labels


def never_emitted(tokenizer, vocab_size: int) -> list[int]:
    """Special tokens CTC training never targets (<s>, </s>, <unk>, ...): kept out of the beam."""
    keep = {tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(tokenizer.word_delimiter_token)}
    special = set(tokenizer.all_special_ids) | {i for i in range(vocab_size) if tokenizer.convert_ids_to_tokens(i) is None}
    return sorted(i for i in special - keep if i < vocab_size)


def beam_search(spec: DecoderSpec, tokenizer, vocab_size: int, lm_path: str | None = None) -> Search:
    """A pyctcdecode beam search over the model's labels, with the KenLM n-gram whose ARPA file is ``lm_path``
    (its binary is loaded when one was built beside it)."""
    from pyctcdecode import build_ctcdecoder

    decoder = build_ctcdecoder(
        ctc_labels(tokenizer, vocab_size),
        kenlm_model_path=kenlm_model_file(lm_path) if lm_path else None,
        unigrams=unigrams(lm_path) if lm_path else None,
        alpha=spec.alpha,
        beta=spec.beta,
    )
    masked = never_emitted(tokenizer, vocab_size)

    def search(log_probs: np.ndarray) -> str:
        log_probs = log_probs.copy()
        log_probs[:, masked] = -1e4
        return decoder.decode(log_probs, beam_width=spec.beam_width, beam_prune_logp=spec.beam_prune_logp,
                              token_min_logp=spec.token_min_logp).strip()

    return search
