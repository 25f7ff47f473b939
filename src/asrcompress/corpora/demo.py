"""The offline demo corpus: English read speech synthesised with eSpeak NG.

A speaker is a (voice, rate, pitch) triple; train, dev and test draw from disjoint
voice lists, so the test set measures generalisation to unseen voices. Sentences are
drawn by a seeded generator from a fixed vocabulary, so the same config gives the same
corpus bit for bit. (eSpeak NG carries synthesis state from one utterance to the next within a
process, so reproducibility holds for a whole split made in one process, as each workflow job is.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import peak_normalize, resample_wave, write_audio
from ..io import atomic_directory
from ..manifest import Utterance, write_manifest
from .espeak import EspeakSynthesizer

# Short, common words with no homophones inside the set (a character model cannot tell
# "two" from "to" without a language model).
VOCABULARY: tuple[str, ...] = tuple(
    """
    one two three four five six seven eight nine ten red green blue black white brown
    small big old new long short good bad hot cold dark fast slow happy quiet loud
    cat dog bird fish horse cow sheep mouse house car boat train plane road river lake hill tree
    flower garden window door table chair bed book letter paper phone clock lamp cup glass plate
    bread milk water coffee apple lemon sugar salt money music story city market school office
    doctor teacher farmer mother father sister brother friend child people
    morning evening night summer winter week month year today
    open bring carry find keep leave make move play send take walk watch buy sell
    call help know like need see want wash cook clean paint build break fix turn
    under over near behind with from into and but very never always often again every
    """.split()
)

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class Speaker:
    voice: str
    rate_wpm: int
    pitch: int

    @property
    def id(self) -> str:
        return f"{self.voice.replace('+', '_')}_r{self.rate_wpm}_p{self.pitch}"


@dataclasses.dataclass(frozen=True)
class DemoSplitSpec:
    """What one split of the demo corpus is made of (all from the config)."""

    split: str
    n_utterances: int
    voices: Sequence[str]
    rates_wpm: Sequence[int]
    pitches: Sequence[int]
    words_per_sentence: tuple[int, int]
    sample_rate: int
    seed: int


def split_seed(seed: int, *parts: str) -> int:
    """A stable 63-bit seed from a global seed and names (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def speakers_of(voices: Sequence[str], rates: Sequence[int], pitches: Sequence[int]) -> list[Speaker]:
    return [Speaker(v, int(r), int(p)) for v, r, p in itertools.product(voices, rates, pitches)]


def random_sentence(rng: np.random.Generator, length_range: tuple[int, int]) -> str:
    low, high = length_range
    n_words = int(rng.integers(low, high + 1))
    return " ".join(VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), size=n_words))


def synthesize(text: str, speaker: Speaker, sample_rate: int, seed: int) -> np.ndarray:
    engine = EspeakSynthesizer.shared()
    wave = engine.synthesize(text, speaker.voice, speaker.rate_wpm, speaker.pitch, seed=seed)
    if engine.sample_rate != sample_rate:
        wave = resample_wave(wave, engine.sample_rate, sample_rate)
    return peak_normalize(wave)


def build_split(spec: DemoSplitSpec, out_dir: str | Path) -> list[Utterance]:
    """Synthesise one split into ``out_dir``: ``wav/*.wav`` and ``manifest.jsonl``."""
    speakers = speakers_of(spec.voices, spec.rates_wpm, spec.pitches)
    if not speakers:
        raise ValueError(f"split {spec.split!r} has no speakers: give at least one voice, rate and pitch")
    rng = np.random.default_rng(split_seed(spec.seed, "demo", spec.split))
    utterances = []
    with atomic_directory(out_dir) as staging:
        for index in range(spec.n_utterances):
            speaker = speakers[int(rng.integers(len(speakers)))]
            text = random_sentence(rng, spec.words_per_sentence)
            utt_id = f"{spec.split}-{index:06d}"
            wave = synthesize(text, speaker, spec.sample_rate, seed=int(rng.integers(2**31)))
            write_audio(staging / "wav" / f"{utt_id}.wav", wave, spec.sample_rate)
            utterances.append(
                Utterance(utt_id, str(Path(out_dir) / "wav" / f"{utt_id}.wav"), len(wave) / spec.sample_rate, speaker.id, text.upper())
            )
        write_manifest(staging / "manifest.jsonl", utterances)
    return utterances
