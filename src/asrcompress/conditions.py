"""The registry of test conditions and the mixing that makes them.

A condition id is a path-like string that names everything about it:
``clean``, ``noise/{type}/{snr}``, ``reverb/{rir}``, ``noise+reverb/{type}/{snr}/{rir}`` and
``random/{protocol}``. ``{type}`` names a noise bank (a demo generator such as ``babble`` or a
corpus bank such as ``musan-noise``); ``{rir}`` is either a target RT60 in seconds (simulated
rooms, ``0.3``) or the name of a corpus RIR bank (``slr28-real``). A ``random`` condition draws,
per utterance, one of clean / noise / reverb / noise+reverb with its own SNR and sources, as in
Pimentel et al.'s corruption protocol; its parameters live in ``config.conditions.random``.

Each utterance's randomness (which noise file and offset, which RIR and channel) comes from a
seed derived from (global seed, condition id, utterance id), so test sets are bitwise identical
across runs and independent of job order.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .acoustics import check_rir
from .audio import read_audio, write_audio
from .banks import Bank
from .corpora.demo import split_seed
from .errors import AudioError, ConfigError
from .io import atomic_directory, write_json
from .manifest import Utterance, read_manifest, resolve_audio, write_manifest

log = logging.getLogger(__name__)

KINDS = ("clean", "noise", "reverb", "noise+reverb", "random")
MIXTURE_KINDS = ("clean", "noise", "reverb", "noise+reverb")  # what a random condition draws from


def fmt(value: float) -> str:
    """A number as it appears in a condition id: ``20``, ``7.5``, ``0.3``."""
    return f"{float(value):g}"


def is_simulated_room(rir: str) -> bool:
    """A number names a simulated room by its target RT60; anything else names a corpus RIR bank."""
    try:
        float(rir)
    except ValueError:
        return False
    return True


def rir_key(rir: float | str) -> str:
    return fmt(float(rir)) if isinstance(rir, (int, float)) or is_simulated_room(rir) else str(rir)


@dataclasses.dataclass(frozen=True)
class Condition:
    kind: str
    noise: str | None = None
    snr_db: float | None = None
    rir: str | None = None
    protocol: str | None = None

    @property
    def id(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "noise":
            return f"noise/{self.noise}/{fmt(self.snr_db)}"
        if self.kind == "reverb":
            return f"reverb/{self.rir}"
        if self.kind == "random":
            return f"random/{self.protocol}"
        return f"noise+reverb/{self.noise}/{fmt(self.snr_db)}/{self.rir}"

    @property
    def rt60_s(self) -> float | None:
        """The target RT60 of a simulated room; ``None`` for real RIR banks (measured per RIR instead)."""
        return float(self.rir) if self.rir is not None and is_simulated_room(self.rir) else None

    @property
    def uses_noise(self) -> bool:
        return self.noise is not None

    @property
    def uses_reverb(self) -> bool:
        return self.rir is not None

    @classmethod
    def parse(cls, condition_id: str) -> "Condition":
        kind, *parts = condition_id.split("/")
        try:
            if kind == "clean" and not parts:
                return cls("clean")
            if kind == "noise" and len(parts) == 2:
                return cls("noise", parts[0], float(parts[1]))
            if kind == "reverb" and len(parts) == 1:
                return cls("reverb", rir=rir_key(parts[0]))
            if kind == "noise+reverb" and len(parts) == 3:
                return cls("noise+reverb", parts[0], float(parts[1]), rir_key(parts[2]))
            if kind == "random" and len(parts) == 1 and parts[0]:
                return cls("random", protocol=parts[0])
        except ValueError:
            pass
        raise ValueError(f"not a condition id: {condition_id!r} (expected one of {', '.join(KINDS)} with its parameters)")

    def describe(self) -> dict[str, Any]:
        noise = "mixed" if self.kind == "random" else self.noise or "none"
        return {"condition": self.id, "kind": self.kind, "noise": noise, "snr_db": self.snr_db, "rir": self.rir,
                "rt60_s": self.rt60_s}


@dataclasses.dataclass(frozen=True)
class RandomProtocol:
    """Per-utterance random corruption (``config.conditions.random.<name>``).

    Defaults follow Pimentel et al. / RobustDistiller (``robustness.py``): one of clean, noise, reverb,
    noise+reverb uniformly; integer SNR uniform in [0, 20] dB; white noise instead of a bank file 30% of
    the time; a random crop of the noise file (tiled only when shorter than the speech); and, for
    noise+reverb, noise added first and the mixture reverberated (``order: noise_first``).
    """

    name: str
    noise: tuple[str, ...]
    rir: str
    snr_db: tuple[int, int] = (0, 20)
    white_noise_prob: float = 0.3
    kinds: tuple[str, ...] = MIXTURE_KINDS
    order: str = "noise_first"

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> "RandomProtocol":
        key = f"conditions.random.{name}"
        kinds = tuple(entry.get("kinds", MIXTURE_KINDS))
        unknown = [k for k in kinds if k not in MIXTURE_KINDS]
        if unknown or not kinds:
            raise ConfigError(f"{key}.kinds", f"{unknown or 'empty'}: choose among {', '.join(MIXTURE_KINDS)}")
        low, high = (int(v) for v in entry.get("snr_db", (0, 20)))
        if low > high:
            raise ConfigError(f"{key}.snr_db", f"lower bound {low} is above upper bound {high}")
        noise = tuple(entry.get("noise", ()))
        white = float(entry.get("white_noise_prob", 0.3))
        if any("noise" in k for k in kinds) and not noise and white < 1:
            raise ConfigError(f"{key}.noise", "needs at least one noise bank unless white_noise_prob is 1")
        if "rir" not in entry and any("reverb" in k for k in kinds):
            raise ConfigError(f"{key}.rir", "needs an RIR bank (a corpus bank name or a simulated RT60)")
        order = entry.get("order", "noise_first")
        if order not in ("noise_first", "reverb_first"):
            raise ConfigError(f"{key}.order", f"{order!r}: choose noise_first or reverb_first")
        return cls(name, noise, rir_key(entry.get("rir", "0")), (low, high), white, kinds, order)

    @property
    def uses_reverb(self) -> bool:
        return any("reverb" in kind for kind in self.kinds)


def conditions_from_config(section: dict[str, Any]) -> list[Condition]:
    """Expand ``config.conditions`` into the condition grid, in a stable order."""
    result: list[Condition] = []
    if section.get("clean", True):
        result.append(Condition("clean"))
    noise = section.get("noise") or {}
    for noise_type in noise.get("types", []):
        for snr in noise.get("snr_db", []):
            result.append(Condition("noise", noise_type, float(snr)))
    reverb = section.get("reverb") or {}
    for rir in [*reverb.get("rt60_s", []), *reverb.get("rooms", [])]:
        result.append(Condition("reverb", rir=rir_key(rir)))
    both = section.get("noise_reverb") or {}
    for noise_type in both.get("types", []):
        for snr in both.get("snr_db", []):
            for rir in [*both.get("rt60_s", []), *both.get("rooms", [])]:
                result.append(Condition("noise+reverb", noise_type, float(snr), rir_key(rir)))
    for name, entry in (section.get("random") or {}).items():
        RandomProtocol.from_config(name, entry)  # fail at DAG build, not in the job
        result.append(Condition("random", protocol=name))
    ids = [c.id for c in result]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError("conditions", f"conditions listed twice: {', '.join(duplicates)}")
    if not result:
        raise ConfigError("conditions", "no test condition is enabled")
    return result


# ---------------------------------------------------------------- mixing maths

def crop_or_tile(noise: np.ndarray, length: int, offset: int) -> np.ndarray:
    """``length`` samples of ``noise`` from ``offset``, wrapping around when the noise is shorter."""
    index = (offset + np.arange(length)) % len(noise)
    return noise[index]


SNR_REFERENCES = ("utterance", "active")
SNR_LIMITS_DB = (-20.0, 60.0)
MIN_NOISE_S = 0.1
PEAK = 0.99


@dataclasses.dataclass(frozen=True)
class Mix:
    """A mixture and what it took: the SNR measured on the scaled parts (same reference as the target) and
    the gain applied to both parts to keep the peak below full scale (1.0 when none was needed)."""

    mixture: np.ndarray
    snr_db_measured: float
    gain: float


def active_speech_mask(speech: np.ndarray, sample_rate: int = 16000, frame_ms: float = 20.0,
                       floor_db: float = 40.0) -> np.ndarray:
    """Samples in frames whose energy is within ``floor_db`` of the loudest frame: a simple energy VAD, so
    digital silence and quiet pauses do not inflate the SNR. A recording whose noise floor lies within
    ``floor_db`` of its loudest speech counts its pauses as active (the reference then tends to ``utterance``);
    a percentile floor would also drop the quiet half of pause-free speech, so this stays simple and stated."""
    frame = max(1, int(sample_rate * frame_ms / 1000))
    n_frames = -(-len(speech) // frame)
    padded = np.zeros(n_frames * frame)
    padded[: len(speech)] = speech
    energy_db = 10 * np.log10(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1) + 1e-20)
    active = energy_db >= energy_db.max() - floor_db
    return np.repeat(active, frame)[: len(speech)]


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float, reference: str = "utterance",
        sample_rate: int = 16000) -> Mix:
    """Speech plus noise scaled to ``snr_db``: the power ratio over the whole utterance (``utterance``) or
    over its active-speech frames (``active``). If the mixture would clip, both parts are scaled down
    together, which keeps the SNR, and the gain is returned so it can be recorded."""
    import torch
    import torchaudio.functional as AF

    if not SNR_LIMITS_DB[0] <= snr_db <= SNR_LIMITS_DB[1]:
        raise ValueError(f"SNR {snr_db} dB is outside [{SNR_LIMITS_DB[0]:g}, {SNR_LIMITS_DB[1]:g}] dB")
    if reference not in SNR_REFERENCES:
        raise ValueError(f"SNR reference {reference!r} is not one of {', '.join(SNR_REFERENCES)}")
    speech64, noise64 = np.asarray(speech, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    if float(np.sum(noise64**2)) == 0.0:
        raise ValueError("noise segment is all zeros: cannot reach a finite SNR")
    if float(np.sum(speech64**2)) == 0.0:
        raise ValueError("speech is all zeros: an SNR against it is undefined")
    if reference == "utterance":
        mixture = AF.add_noise(torch.from_numpy(speech64)[None], torch.from_numpy(noise64)[None],
                               torch.tensor([float(snr_db)], dtype=torch.float64))[0].numpy()
        scaled_noise = mixture - speech64
        measured = 10.0 * np.log10(np.sum(speech64**2) / np.sum(scaled_noise**2))
    else:
        active = active_speech_mask(speech64, sample_rate)
        speech_power = np.mean(speech64[active] ** 2)
        scale = np.sqrt(speech_power / (np.mean(noise64**2) * 10 ** (snr_db / 10)))
        scaled_noise = scale * noise64
        mixture = speech64 + scaled_noise
        measured = 10.0 * np.log10(speech_power / np.mean(scaled_noise**2))
    peak = float(np.max(np.abs(mixture)))
    gain = PEAK / peak if peak > PEAK else 1.0
    return Mix((mixture * gain).astype(np.float32), float(measured), gain)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float]:
    """:func:`mix` over the whole utterance: the mixture and the measured SNR."""
    result = mix(speech, noise, snr_db)
    return result.mixture, result.snr_db_measured


def check_noise(noise: np.ndarray, sample_rate: int, path: str) -> None:
    """A noise file must last 0.1 s and not be silent (non-finite samples are refused on reading)."""
    if len(noise) < MIN_NOISE_S * sample_rate:
        raise AudioError(path, f"noise file is {len(noise) / sample_rate:.3f} s long (minimum {MIN_NOISE_S} s)")
    if not np.any(noise):
        raise AudioError(path, "noise file is silent (all zeros)")


def prepare_rir(rir: np.ndarray) -> np.ndarray:
    """Start the RIR at its direct path and scale it to unit energy, so reverberant speech
    keeps the dry timing and roughly its level."""
    direct = int(np.argmax(np.abs(rir)))
    trimmed = rir[direct:].astype(np.float64)
    return trimmed / np.sqrt(np.sum(trimmed**2))


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a prepared RIR; the output keeps the input's length.

    scipy pads the FFT to a fast length; torchaudio's fftconvolve transforms at exactly len(speech) +
    len(rir) - 1, often a slow size: 190x against 2,200x real time per core (benchmarks/augment_benchmark.py),
    with outputs equal to 1e-11.
    """
    from scipy.signal import fftconvolve

    wet = fftconvolve(np.asarray(speech, dtype=np.float64), prepare_rir(rir))
    return wet[: len(speech)].astype(np.float32)


# ---------------------------------------------------------------- building a condition

@dataclasses.dataclass
class AugmentResult:
    utterances: list[Utterance]
    skipped: list[dict[str, str]]


def utterance_seed(seed: int, condition: Condition, utt_id: str) -> int:
    return split_seed(seed, "augment", condition.id, utt_id)


def utterance_rng(seed: int, condition: Condition, utt_id: str) -> np.random.Generator:
    return np.random.default_rng(utterance_seed(seed, condition, utt_id))


def check_babble_speakers(noise_bank: Bank | None, utterances: list[Utterance], noise_manifests: Sequence[str]) -> None:
    """Babble made of the test speakers themselves would let a model hear the target in the noise."""
    if noise_bank is None:
        return
    talkers = {talker for record in noise_bank.records for talker in record.extra.get("talkers", [])}
    shared = sorted(talkers & {utt.speaker for utt in utterances})
    if shared:
        raise ConfigError("banks.noise.babble_voices", f"the babble in {', '.join(noise_manifests)} contains test "
                                                       f"speaker(s) {', '.join(shared)}")


def add_reverb(wave: np.ndarray, rng: np.random.Generator, rir_bank: Bank) -> tuple[np.ndarray, dict[str, Any]]:
    """Convolve with a random RIR of the bank; multichannel RIRs give a random channel."""
    pick = int(rng.integers(len(rir_bank)))
    channels = rir_bank.channels(pick)
    channel = int(rng.integers(channels)) if channels > 1 else 0
    record = rir_bank.records[pick]
    info = {"rir": record.id, "rir_path": record.path, "rir_channel": channel}
    for key in ("rt60_measured_s", "drr_db"):  # the drawn channel's own value when the bank has one per channel
        per_channel = record.extra.get(f"{key}_per_channel")
        info[key] = per_channel[channel] if per_channel else record.extra.get(key)
    rir = rir_bank.wave(pick, channel)
    check_rir(rir, rir_bank.sample_rate, record.path)  # banks are checked when built; a hand-made one is not
    return reverberate(wave, rir), info


def _mixed(wave: np.ndarray, noise: np.ndarray, snr_db: float, reference: str, sample_rate: int,
           source: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    result = mix(wave, noise, snr_db, reference, sample_rate)
    return result.mixture, {**source, "snr_reference": reference, "snr_db_target": float(snr_db),
                            "snr_db_measured": round(result.snr_db_measured, 4), "gain": round(result.gain, 6)}


def add_noise(
    wave: np.ndarray, rng: np.random.Generator, noise_bank: Bank, snr_db: float, wrap: bool = True,
    reference: str = "utterance",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Mix a random segment of a random bank file at ``snr_db``. The segment starts anywhere and wraps
    around (``wrap``), or lies inside the file whenever it is long enough (tiled only when shorter)."""
    pick = int(rng.integers(len(noise_bank)))
    noise = noise_bank.mono(pick)
    record = noise_bank.records[pick]
    check_noise(noise, noise_bank.sample_rate, record.path)
    room = len(noise) - len(wave)
    offset = int(rng.integers(len(noise) if wrap or room < 0 else room + 1))
    source = {"noise_file": record.id, "noise_path": record.path, "noise_offset": offset}
    return _mixed(wave, crop_or_tile(noise, len(wave), offset), snr_db, reference, noise_bank.sample_rate, source)


def add_white_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float, reference: str = "utterance",
                    sample_rate: int = 16000) -> tuple[np.ndarray, dict[str, Any]]:
    source = {"noise_file": "white", "noise_path": None, "noise_offset": 0}
    return _mixed(wave, rng.standard_normal(len(wave)), snr_db, reference, sample_rate, source)


def corrupt(
    speech: np.ndarray, condition: Condition, rng: np.random.Generator, noise_bank: Bank | None, rir_bank: Bank | None,
    snr_reference: str = "utterance",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply a grid ``condition`` to one waveform; returns it and what was done (for the manifest).

    Reverberation comes first, so the SNR is that of the reverberant speech, as in the studies.
    """
    info: dict[str, Any] = {}
    wave = speech
    if condition.uses_reverb:
        assert rir_bank is not None
        wave, done = add_reverb(wave, rng, rir_bank)
        info.update(done)
    if condition.uses_noise:
        assert noise_bank is not None and condition.snr_db is not None
        wave, done = add_noise(wave, rng, noise_bank, condition.snr_db, reference=snr_reference)
        info.update(done)
    return wave, info


def corrupt_random(
    speech: np.ndarray, protocol: RandomProtocol, rng: np.random.Generator, noise_bank: Bank | None, rir_bank: Bank | None,
    snr_reference: str = "utterance",
) -> tuple[np.ndarray, dict[str, Any]]:
    """One draw of a random protocol: the mixture kind, then its RIR, SNR and noise source."""
    kind = protocol.kinds[int(rng.integers(len(protocol.kinds)))]
    info: dict[str, Any] = {"drawn_kind": kind}
    steps = ("noise", "reverb") if protocol.order == "noise_first" else ("reverb", "noise")
    wave = speech
    for step in (s for s in steps if s in kind):
        if step == "reverb":
            assert rir_bank is not None
            wave, done = add_reverb(wave, rng, rir_bank)
        else:
            snr_db = int(rng.integers(protocol.snr_db[0], protocol.snr_db[1] + 1))
            if noise_bank is None or rng.random() < protocol.white_noise_prob:
                wave, done = add_white_noise(wave, rng, snr_db, snr_reference)
            else:
                wave, done = add_noise(wave, rng, noise_bank, snr_db, wrap=False, reference=snr_reference)
        info.update(done)
    if kind == "noise+reverb":
        info["order"] = protocol.order  # the SNR was set on the dry (noise_first) or reverberant speech
    return wave, info


def build_condition(
    condition: Condition,
    test_manifest: str,
    out_dir: str | Path,
    sample_rate: int,
    seed: int,
    noise_bank_manifests: Sequence[str] = (),
    rir_bank_manifest: str | None = None,
    on_bad_audio: str = "error",
    protocol: RandomProtocol | None = None,
    snr_reference: str = "utterance",
) -> AugmentResult:
    """Write one condition's audio and manifest under ``out_dir``.

    A bad source file stops the job with an :class:`AudioError` naming it, unless
    ``on_bad_audio == "skip"``: then it is left out and listed in ``summary.json``.
    """
    if condition.kind == "random" and protocol is None:
        raise ConfigError(f"conditions.random.{condition.protocol}", "the protocol's parameters are missing")
    noise_bank = Bank.load(noise_bank_manifests, sample_rate) if noise_bank_manifests else None
    rir_bank = Bank.load(rir_bank_manifest, sample_rate) if rir_bank_manifest else None
    utterances, skipped = [], []
    test_set = read_manifest(test_manifest)
    check_babble_speakers(noise_bank, test_set, noise_bank_manifests)
    with atomic_directory(out_dir) as staging:
        for utt in test_set:
            source = resolve_audio(utt, test_manifest)
            try:
                speech = read_audio(source, sample_rate)
                if not np.any(speech):
                    raise AudioError(source, "is silent (all zeros): no SNR can be set against it")
            except AudioError as err:
                if on_bad_audio != "skip":
                    raise
                log.warning("skipping %s", err)
                skipped.append({"id": utt.id, "path": str(source), "reason": err.reason})
                continue
            if condition.kind == "clean":
                utterances.append(utt.with_(path=str(source), extra={"condition": condition.id}))
                continue
            utt_seed = utterance_seed(seed, condition, utt.id)
            rng = np.random.default_rng(utt_seed)
            if protocol is not None:
                wave, info = corrupt_random(speech, protocol, rng, noise_bank, rir_bank, snr_reference)
            else:
                wave, info = corrupt(speech, condition, rng, noise_bank, rir_bank, snr_reference)
            info["seed"] = utt_seed
            write_audio(staging / "wav" / f"{utt.id}.wav", wave, sample_rate)
            utterances.append(utt.with_(path=str(Path(out_dir) / "wav" / f"{utt.id}.wav"), extra={"condition": condition.id, **info}))
        if not utterances:
            raise AudioError(test_manifest, "no usable utterance left in the test set")
        write_manifest(staging / "manifest.jsonl", utterances)
        write_json(staging / "summary.json", {
            **condition.describe(),
            "n_utterances": len(utterances),
            "n_skipped": len(skipped),
            "skipped": skipped,
            "snr_db_measured_mean": _mean_of(utterances, "snr_db_measured"),
            "rt60_measured_s_mean": _mean_of(utterances, "rt60_measured_s"),
            "drawn_kinds": _counts_of(utterances, "drawn_kind"),
            "snr_reference": snr_reference,
            "n_gain_reduced": sum(1 for u in utterances if u.extra.get("gain", 1.0) < 1.0),
        })
    return AugmentResult(utterances, skipped)


def _counts_of(utterances: list[Utterance], field: str) -> dict[str, int]:
    values = [str(u.extra[field]) for u in utterances if field in u.extra]
    return {value: values.count(value) for value in sorted(set(values))}


def _mean_of(utterances: list[Utterance], field: str) -> float | None:
    values = [u.extra[field] for u in utterances if u.extra.get(field) is not None]
    return round(float(np.mean(values)), 4) if values else None
