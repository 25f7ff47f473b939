"""Beam search with a KenLM n-gram (pyctcdecode), the LM builder (lmplz), and decoder configs."""

import json

import numpy as np
import pytest
import torch

from asrcompress.decoding import greedy_ctc, ids_to_text
from asrcompress.errors import ConfigError, PipelineError
from asrcompress.lm import LanguageModelSpec, arpa_counts, build_language_model, kenlm_model_file, run_lmplz, unigrams
from asrcompress.models import build_processor
from asrcompress.search import DecoderSpec, beam_search, ctc_labels, never_emitted

PROCESSOR = build_processor()
TOKENIZER = PROCESSOR.tokenizer
VOCAB = len(TOKENIZER)
LABELS = ctc_labels(TOKENIZER, VOCAB)


def posterior(frames: list[dict[str, float]], floor: float = 1e-4) -> np.ndarray:
    """Log-probabilities from per-frame {label: probability}; "" is blank, " " the word delimiter."""
    probs = np.full((len(frames), VOCAB), floor, dtype=np.float64)
    for t, frame in enumerate(frames):
        for label, p in frame.items():
            probs[t, LABELS.index(label)] = p
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs).astype(np.float32)


def peaky(text: str) -> list[dict[str, float]]:
    """One confident frame per character, a blank between characters (so double letters survive)."""
    frames = []
    for char in text:
        frames += [{char: 0.98}, {"": 0.98}]
    return frames


def greedy_text(log_probs: np.ndarray) -> str:
    ids = greedy_ctc(torch.from_numpy(log_probs)[None], [len(log_probs)], TOKENIZER.pad_token_id)[0]
    return ids_to_text(ids, TOKENIZER)


def test_labels_follow_pyctcdecode_conventions():
    assert LABELS[TOKENIZER.pad_token_id] == ""
    assert LABELS[TOKENIZER.convert_tokens_to_ids("|")] == " "
    assert len(LABELS) == VOCAB and len(set(LABELS)) == VOCAB
    assert TOKENIZER.pad_token_id not in never_emitted(TOKENIZER, VOCAB)
    assert TOKENIZER.unk_token_id in never_emitted(TOKENIZER, VOCAB)


def test_greedy_and_beam_agree_on_a_peaky_posterior():
    log_probs = posterior(peaky("THE CAT SAT ON THE MAT"))
    beam = beam_search(DecoderSpec("beam", kind="beam", beam_width=16), TOKENIZER, VOCAB)
    assert greedy_text(log_probs) == "THE CAT SAT ON THE MAT"
    assert beam(log_probs) == greedy_text(log_probs)


@pytest.fixture(scope="module")
def cat_lm(tmp_path_factory) -> str:
    """A trigram that has seen 'THE CAT SAT' many times and 'KAT' never."""
    arpa = tmp_path_factory.mktemp("lm") / "lm.arpa"
    sentences = ["THE CAT SAT ON THE MAT"] * 20 + ["A CAT SAT", "THE DOG SAT ON THE MAT", "THE MAT"] * 5
    run_lmplz(sentences, arpa, order=3)
    return str(arpa)


def test_lmplz_writes_a_kenlm_arpa(cat_lm):
    counts = arpa_counts(cat_lm)
    assert set(counts) == {1, 2, 3} and counts[1] >= 7  # THE CAT SAT ON MAT A DOG + <s> </s> <unk>
    assert set(unigrams(cat_lm)) == {"THE", "CAT", "SAT", "ON", "MAT", "A", "DOG"}


def test_the_language_model_moves_an_ambiguous_word_towards_the_likely_one(cat_lm):
    # The acoustics slightly prefer K over C in the second word: greedy writes KAT.
    frames = peaky("THE ") + [{"K": 0.55, "C": 0.43}, {"": 0.98}] + peaky("AT SAT")
    log_probs = posterior(frames)
    assert greedy_text(log_probs) == "THE KAT SAT"
    no_lm = beam_search(DecoderSpec("beam", kind="beam", beam_width=16), TOKENIZER, VOCAB)
    with_lm = beam_search(DecoderSpec("lm", kind="beam", beam_width=16, alpha=1.0, beta=0.5, language_model="cat"),
                          TOKENIZER, VOCAB, cat_lm)
    assert no_lm(log_probs) == "THE KAT SAT"
    assert with_lm(log_probs) == "THE CAT SAT"


def test_a_zero_weight_language_model_changes_nothing(cat_lm):
    frames = peaky("THE ") + [{"K": 0.55, "C": 0.43}, {"": 0.98}] + peaky("AT SAT")
    silent = beam_search(DecoderSpec("lm", kind="beam", beam_width=16, alpha=0.0, beta=0.0, language_model="cat"),
                         TOKENIZER, VOCAB, cat_lm)
    assert silent(posterior(frames)) == "THE KAT SAT"


def test_build_from_training_transcripts(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    texts = ["the cat sat.", "The dog sat!", "a cat, a dog"] * 4
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "path": "x.wav", "duration": 1.0, "speaker": "s", "text": t}) + "\n"
                                for i, t in enumerate(texts)))
    summary = build_language_model(LanguageModelSpec("demo", "train", order=2), tmp_path / "lm", str(manifest))
    assert summary["n_sentences"] == 12 and set(summary["ngrams"]) == {1, 2}
    assert set(unigrams(tmp_path / "lm" / "lm.arpa")) == {"THE", "CAT", "SAT", "DOG", "A"}
    assert kenlm_model_file(tmp_path / "lm" / "lm.arpa") == str(tmp_path / "lm" / "lm.bin")
    import kenlm

    binary = kenlm.Model(str(tmp_path / "lm" / "lm.bin"))
    assert binary.order == 2
    assert binary.score("THE CAT SAT") > binary.score("SAT CAT THE")  # seen word order beats unseen


def test_arpa_source_is_checked_and_copied(tmp_path, cat_lm):
    import gzip

    packed = tmp_path / "lm.arpa.gz"
    with open(cat_lm, "rb") as source, gzip.open(packed, "wb") as out:
        out.write(source.read())
    build_language_model(LanguageModelSpec("ls", "arpa", path=str(packed)), tmp_path / "copy")
    assert (tmp_path / "copy" / "lm.arpa").read_bytes() == open(cat_lm, "rb").read()
    not_arpa = tmp_path / "notes.txt"
    not_arpa.write_text("hello\n")
    with pytest.raises(PipelineError, match="notes.txt: not an ARPA"):
        build_language_model(LanguageModelSpec("bad", "arpa", path=str(not_arpa)), tmp_path / "bad")
    assert not (tmp_path / "bad" / "lm.arpa").exists()


def test_empty_corpus_is_refused_without_output(tmp_path):
    with pytest.raises(PipelineError, match="no sentences"):
        run_lmplz([], tmp_path / "lm.arpa", order=2)
    assert not (tmp_path / "lm.arpa").exists()


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"kind": "viterbi"}, "decode.decoders.d.kind"),
        ({"kind": "greedy", "language_model": "lm"}, "decode.decoders.d.language_model"),
        ({"kind": "beam", "language_model": "missing"}, "decode.decoders.d.language_model"),
        ({"kind": "beam", "beam_width": 0}, "decode.decoders.d.beam_width"),
        ({"kind": "beam", "alhpa": 0.5}, "decode.decoders.d.alhpa"),
    ],
)
def test_bad_decoder_configs_name_the_key(entry, key):
    with pytest.raises(ConfigError) as error:
        DecoderSpec.from_config("d", entry, ["lm"])
    assert error.value.key == key


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"source": "arpa"}, "decode.language_models.m.path"),
        ({"source": "train", "path": "x.txt"}, "decode.language_models.m.path"),
        ({"source": "train", "order": 2, "prune": [0, 0, 1]}, "decode.language_models.m.prune"),
    ],
)
def test_bad_language_model_configs_name_the_key(entry, key):
    with pytest.raises(ConfigError) as error:
        LanguageModelSpec.from_config("m", entry)
    assert error.value.key == key


def test_a_text_corpus_is_streamed_to_lmplz(tmp_path):
    import gzip

    corpus = tmp_path / "lm-norm.txt.gz"
    with gzip.open(corpus, "wt") as handle:
        handle.write("the cat sat\n\nTHE DOG SAT!\n" * 50)
    summary = build_language_model(LanguageModelSpec("text", "text", order=2, path=str(corpus)), tmp_path / "lm")
    assert summary["n_sentences"] == 100
    assert set(unigrams(tmp_path / "lm" / "lm.arpa")) == {"THE", "CAT", "DOG", "SAT"}
    with pytest.raises(PipelineError, match="missing.txt: language-model text file not found"):
        build_language_model(LanguageModelSpec("gone", "text", path=str(tmp_path / "missing.txt")), tmp_path / "gone")
