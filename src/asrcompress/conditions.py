"""The registry of test conditions and the mixing that makes them.

A condition id is a path-like string that names everything about it:
``clean``, ``noise/{type}/{snr}``, ``reverb/{rt60}``, ``noise+reverb/{type}/{snr}/{rt60}``.
Each utterance's randomness (which noise file and offset, which RIR) comes from a seed
derived from (global seed, condition id, utterance id), so test sets are bitwise identical
across runs and independent of job order.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .audio import read_audio, write_audio
from .banks import Bank
from .corpora.demo import split_seed
from .errors import AudioError, ConfigError
from .io import atomic_directory, write_json
from .manifest import Utterance, read_manifest, resolve_audio, write_manifest

log = logging.getLogger(__name__)

KINDS = ("clean", "noise", "reverb", "noise+reverb")


def fmt(value: float) -> str:
    """A number as it appears in a condition id: ``20``, ``7.5``, ``0.3``."""
    return f"{float(value):g}"


@dataclasses.dataclass(frozen=True)
class Condition:
    kind: str
    noise: str | None = None
    snr_db: float | None = None
    rt60_s: float | None = None

    @property
    def id(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "noise":
            return f"noise/{self.noise}/{fmt(self.snr_db)}"
        if self.kind == "reverb":
            return f"reverb/{fmt(self.rt60_s)}"
        return f"noise+reverb/{self.noise}/{fmt(self.snr_db)}/{fmt(self.rt60_s)}"

    @property
    def uses_noise(self) -> bool:
        return self.noise is not None

    @property
    def uses_reverb(self) -> bool:
        return self.rt60_s is not None

    @classmethod
    def parse(cls, condition_id: str) -> "Condition":
        kind, *parts = condition_id.split("/")
        try:
            if kind == "clean" and not parts:
                return cls("clean")
            if kind == "noise" and len(parts) == 2:
                return cls("noise", parts[0], float(parts[1]))
            if kind == "reverb" and len(parts) == 1:
                return cls("reverb", rt60_s=float(parts[0]))
            if kind == "noise+reverb" and len(parts) == 3:
                return cls("noise+reverb", parts[0], float(parts[1]), float(parts[2]))
        except ValueError:
            pass
        raise ValueError(f"not a condition id: {condition_id!r} (expected one of {', '.join(KINDS)} with its parameters)")

    def describe(self) -> dict[str, Any]:
        return {"condition": self.id, "kind": self.kind, "noise": self.noise or "none", "snr_db": self.snr_db, "rt60_s": self.rt60_s}


def conditions_from_config(section: dict[str, Any]) -> list[Condition]:
    """Expand ``config.conditions`` into the condition grid, in a stable order."""
    result: list[Condition] = []
    if section.get("clean", True):
        result.append(Condition("clean"))
    noise = section.get("noise") or {}
    for noise_type in noise.get("types", []):
        for snr in noise.get("snr_db", []):
            result.append(Condition("noise", noise_type, float(snr)))
    for rt60 in (section.get("reverb") or {}).get("rt60_s", []):
        result.append(Condition("reverb", rt60_s=float(rt60)))
    both = section.get("noise_reverb") or {}
    for noise_type in both.get("types", []):
        for snr in both.get("snr_db", []):
            for rt60 in both.get("rt60_s", []):
                result.append(Condition("noise+reverb", noise_type, float(snr), float(rt60)))
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


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float]:
    """Speech plus noise scaled to ``snr_db`` (power ratio over the whole utterance).

    Returns the mixture and the SNR measured on the scaled components. If the mixture would clip,
    both components are scaled down together, which leaves the SNR unchanged.
    """
    import torch
    import torchaudio.functional as AF

    speech_t = torch.from_numpy(np.asarray(speech, dtype=np.float64))[None]
    noise_t = torch.from_numpy(np.asarray(noise, dtype=np.float64))[None]
    if float(noise_t.pow(2).sum()) == 0.0:
        raise ValueError("noise segment is all zeros: cannot reach a finite SNR")
    mixture = AF.add_noise(speech_t, noise_t, torch.tensor([float(snr_db)], dtype=torch.float64))[0]
    scaled_noise = mixture - speech_t[0]
    measured = 10.0 * torch.log10(speech_t[0].pow(2).sum() / scaled_noise.pow(2).sum())
    peak = float(mixture.abs().max())
    if peak > 0.99:
        mixture = mixture * (0.99 / peak)
    return mixture.numpy().astype(np.float32), float(measured)


def prepare_rir(rir: np.ndarray) -> np.ndarray:
    """Start the RIR at its direct path and scale it to unit energy, so reverberant speech
    keeps the dry timing and roughly its level."""
    direct = int(np.argmax(np.abs(rir)))
    trimmed = rir[direct:].astype(np.float64)
    return trimmed / np.sqrt(np.sum(trimmed**2))


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a prepared RIR; the output keeps the input's length."""
    import torch
    import torchaudio.functional as AF

    wet = AF.fftconvolve(torch.from_numpy(np.asarray(speech, dtype=np.float64)), torch.from_numpy(prepare_rir(rir)))
    return wet[: len(speech)].numpy().astype(np.float32)


# ---------------------------------------------------------------- building a condition

@dataclasses.dataclass
class AugmentResult:
    utterances: list[Utterance]
    skipped: list[dict[str, str]]


def utterance_rng(seed: int, condition: Condition, utt_id: str) -> np.random.Generator:
    return np.random.default_rng(split_seed(seed, "augment", condition.id, utt_id))


def corrupt(
    speech: np.ndarray, condition: Condition, rng: np.random.Generator, noise_bank: Bank | None, rir_bank: Bank | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply ``condition`` to one waveform; returns it and what was done (for the manifest)."""
    info: dict[str, Any] = {}
    wave = speech
    if condition.uses_reverb:
        assert rir_bank is not None
        pick = int(rng.integers(len(rir_bank.records)))
        record = rir_bank.records[pick]
        wave = reverberate(wave, rir_bank.waves[pick])
        info.update(rir=record.id, rir_path=record.path, rt60_measured_s=record.extra.get("rt60_measured_s"))
    if condition.uses_noise:
        assert noise_bank is not None
        pick = int(rng.integers(len(noise_bank.records)))
        noise = noise_bank.waves[pick]
        offset = int(rng.integers(len(noise)))
        wave, measured = mix_at_snr(wave, crop_or_tile(noise, len(wave), offset), condition.snr_db)
        info.update(noise_file=noise_bank.records[pick].id, noise_path=noise_bank.records[pick].path,
                    noise_offset=offset, snr_db_measured=round(measured, 4))
    return wave, info


def build_condition(
    condition: Condition,
    test_manifest: str,
    out_dir: str | Path,
    sample_rate: int,
    seed: int,
    noise_bank_manifest: str | None = None,
    rir_bank_manifest: str | None = None,
    on_bad_audio: str = "error",
) -> AugmentResult:
    """Write one condition's audio and manifest under ``out_dir``.

    A bad source file stops the job with an :class:`AudioError` naming it, unless
    ``on_bad_audio == "skip"``: then it is left out and listed in ``summary.json``.
    """
    noise_bank = Bank.load(noise_bank_manifest, sample_rate) if condition.uses_noise else None
    rir_bank = Bank.load(rir_bank_manifest, sample_rate) if condition.uses_reverb else None
    utterances, skipped = [], []
    with atomic_directory(out_dir) as staging:
        for utt in read_manifest(test_manifest):
            source = resolve_audio(utt, test_manifest)
            try:
                speech = read_audio(source, sample_rate)
            except AudioError as err:
                if on_bad_audio != "skip":
                    raise
                log.warning("skipping %s", err)
                skipped.append({"id": utt.id, "path": str(source), "reason": err.reason})
                continue
            if condition.kind == "clean":
                utterances.append(utt.with_(path=str(source), extra={"condition": condition.id}))
                continue
            wave, info = corrupt(speech, condition, utterance_rng(seed, condition, utt.id), noise_bank, rir_bank)
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
        })
    return AugmentResult(utterances, skipped)


def _mean_of(utterances: list[Utterance], field: str) -> float | None:
    values = [u.extra[field] for u in utterances if u.extra.get(field) is not None]
    return round(float(np.mean(values)), 4) if values else None
