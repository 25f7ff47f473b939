"""Noise and room-impulse-response banks: audio files plus a manifest of their measured properties.

A bank is a folder holding WAVs and ``manifest.jsonl`` (the :class:`~asrcompress.manifest.Utterance`
record; ``speaker`` holds the source or category, ``text`` is empty). The demo makes its banks
here; real corpora (MUSAN, OpenSLR-28) will fill the same format.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from .acoustics import calibrate_rt60, drr_db, min_sabine_rt60, rt60_schroeder
from .audio import peak_normalize, read_audio, write_audio
from .corpora.demo import Speaker, random_sentence, split_seed, synthesize
from .io import atomic_directory
from .manifest import Utterance, read_manifest, resolve_audio, write_manifest

# Power-spectrum slope of each colour: |X(f)|^2 ~ f^-exponent.
COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
DEMO_NOISE_TYPES = (*COLOUR_EXPONENTS, "babble")


def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped to a 1/f^k power spectrum, unit RMS."""
    exponent = COLOUR_EXPONENTS[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples)
    freqs[0] = freqs[1]  # avoid the DC singularity for pink and brown
    spectrum *= freqs ** (-exponent / 2.0)
    spectrum[0] = 0.0
    wave = np.fft.irfft(spectrum, n=n_samples)
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


def babble(n_samples: int, talkers: Sequence[Speaker], sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Several synthetic talkers, each a stream of random sentences, summed and scaled to unit RMS."""
    mix = np.zeros(n_samples, dtype=np.float64)
    for talker in talkers:
        stream: list[np.ndarray] = []
        filled = 0
        while filled < n_samples:
            wave = synthesize(random_sentence(rng, (4, 10)), talker, sample_rate, seed=int(rng.integers(2**31)))
            stream.append(wave)
            filled += len(wave)
        talk = np.concatenate(stream)[:n_samples]
        mix += talk / (np.sqrt(np.mean(talk**2)) + 1e-9)
    return (mix / np.sqrt(np.mean(mix**2))).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class NoiseBankSpec:
    noise_type: str
    n_files: int
    seconds: float
    sample_rate: int
    seed: int
    babble_talkers: Sequence[Speaker] = ()


def build_noise_bank(spec: NoiseBankSpec, out_dir: str | Path) -> list[Utterance]:
    rng = np.random.default_rng(split_seed(spec.seed, "noise", spec.noise_type))
    n_samples = int(spec.seconds * spec.sample_rate)
    records = []
    for index in range(spec.n_files):
        if spec.noise_type in COLOUR_EXPONENTS:
            wave = coloured_noise(n_samples, spec.noise_type, rng)
        elif spec.noise_type == "babble":
            if not spec.babble_talkers:
                raise ValueError("babble noise needs at least one talker (config: banks.noise.babble_voices)")
            wave = babble(n_samples, spec.babble_talkers, spec.sample_rate, rng)
        else:
            raise ValueError(f"unknown demo noise type {spec.noise_type!r}")
        name = f"{spec.noise_type}-{index:03d}"
        extra = {"license": "generated", "talkers": [t.id for t in spec.babble_talkers]} if spec.noise_type == "babble" \
            else {"license": "generated"}
        records.append((Utterance(name, str(Path(out_dir) / f"{name}.wav"), n_samples / spec.sample_rate, spec.noise_type,
                                  "", extra=extra), wave))
    return _write_bank(out_dir, records, spec.sample_rate)


def _write_bank(out_dir: str | Path, records: list[tuple[Utterance, np.ndarray]], sample_rate: int) -> list[Utterance]:
    with atomic_directory(out_dir) as staging:
        for record, wave in records:
            write_audio(staging / Path(record.path).name, peak_normalize(wave, 0.9), sample_rate)
        write_manifest(staging / "manifest.jsonl", [record for record, _ in records])
    return [record for record, _ in records]


@dataclasses.dataclass(frozen=True)
class RirBankSpec:
    """Simulated shoebox rooms at one target RT60; each room's RT60 is calibrated to within ``rt60_tolerance``
    of the target with at most ``max_calibration_iterations`` simulations."""

    rt60_s: float
    n_rooms: int
    sample_rate: int
    seed: int
    room_size_range: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = ((3.0, 8.0), (3.0, 8.0), (2.5, 3.5))
    rt60_tolerance: float = 0.05
    max_calibration_iterations: int = 6


def measured_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """T30 by Schroeder backward integration, noise floor and truncation compensated (:mod:`.acoustics`)."""
    return rt60_schroeder(rir, sample_rate, decay_db=30)


def simulate_rir(rt60_s: float, room_dim: Sequence[float], source: Sequence[float], mic: Sequence[float], sample_rate: int) -> np.ndarray:
    """Image-method RIR of a shoebox room with the absorption Sabine's formula gives for ``rt60_s``.

    The image method does not follow Sabine: the RT60 measured on the RIR is off by up to 30 % either way
    (short in cubic rooms, long in flat ones); :func:`build_rir_bank` calibrates ``rt60_s`` for that.
    """
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(rt60_s, room_dim)
    room = pra.ShoeBox(room_dim, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(list(source))
    room.add_microphone(list(mic))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def build_rir_bank(spec: RirBankSpec, out_dir: str | Path) -> list[Utterance]:
    """Rooms of random size with random source and microphone positions, each calibrated to the target RT60.

    Inverse Sabine misses the target (a 0.15 s target measured 0.113 s), so each room is simulated again with
    the RT60 asked rescaled until the measured T30 is within ``spec.rt60_tolerance`` (see
    :func:`asrcompress.acoustics.calibrate_rt60`); the target, what was asked, the measured RT60 and DRR and
    the number of simulations are recorded. A room that cannot reach it (too large for a short RT60) keeps
    its closest RIR, with ``rt60_calibrated: false``. Same spec, same RIRs, bit for bit.
    """
    import logging

    import pyroomacoustics as pra

    rng = np.random.default_rng(split_seed(spec.seed, "rir", f"{spec.rt60_s:g}"))
    records = []
    for index in range(spec.n_rooms):
        room = [float(rng.uniform(lo, hi)) for lo, hi in spec.room_size_range]
        margin = 0.5
        source = [float(rng.uniform(margin, d - margin)) for d in room]
        mic = [float(rng.uniform(margin, d - margin)) for d in room]
        calibration = calibrate_rt60(
            lambda asked: simulate_rir(asked, room, source, mic, spec.sample_rate),  # called before the loop moves on
            spec.rt60_s, spec.sample_rate, tolerance=spec.rt60_tolerance,
            max_iterations=spec.max_calibration_iterations,
            min_asked_s=min_sabine_rt60(room, pra.constants.get("c")),
        )
        rir = calibration.rir
        if not calibration.converged:
            logging.getLogger(__name__).warning(
                "rir-%03d: RT60 %.3f s is off the %.3g s target by more than %.0f%% after %d simulations",
                index, calibration.rt60_measured_s, spec.rt60_s, 100 * spec.rt60_tolerance, calibration.iterations)
        name = f"rir-{index:03d}"
        records.append((
            Utterance(
                name, str(Path(out_dir) / f"{name}.wav"), len(rir) / spec.sample_rate, "simulated", "",
                extra={
                    "rt60_target_s": spec.rt60_s,
                    "rt60_measured_s": round(calibration.rt60_measured_s, 4),
                    "rt60_sabine_s": round(calibration.rt60_asked_s, 4),
                    "rt60_calibration_iterations": calibration.iterations,
                    "rt60_calibrated": calibration.converged,
                    "drr_db": round(drr_db(rir, spec.sample_rate), 4),
                    "room_m": [round(d, 3) for d in room],
                    "source_m": [round(d, 3) for d in source],
                    "mic_m": [round(d, 3) for d in mic],
                },
            ),
            rir,
        ))
    return _write_bank(out_dir, records, spec.sample_rate)


@dataclasses.dataclass
class Bank:
    """Records of one or more banks, in manifest order; audio is read on first use.

    Real banks (MUSAN, UrbanSound8K, OpenSLR-28) hold hours of audio at various rates, of which a
    test set touches a few files: reading lazily keeps a condition job's memory and start-up small.
    """

    records: list[Utterance]
    sources: list[Path]  # the manifest each record came from, to resolve its relative path
    sample_rate: int
    cache_size: int = 64  # waveforms kept decoded: a random protocol over MUSAN touches thousands of files
    _cache: collections.OrderedDict[tuple[int, int], np.ndarray] = dataclasses.field(
        default_factory=collections.OrderedDict, repr=False)

    @classmethod
    def load(cls, manifest_paths: str | Path | Sequence[str | Path], sample_rate: int) -> "Bank":
        paths = [manifest_paths] if isinstance(manifest_paths, (str, Path)) else list(manifest_paths)
        records: list[Utterance] = []
        sources: list[Path] = []
        for path in paths:
            bank_records = read_manifest(path)
            if not bank_records:
                raise ValueError(f"{path}: bank is empty")
            records += bank_records
            sources += [Path(path)] * len(bank_records)
        return cls(records, sources, sample_rate)

    def __len__(self) -> int:
        return len(self.records)

    def channels(self, index: int) -> int:
        return int(self.records[index].extra.get("channels", 1))

    def mono(self, index: int) -> np.ndarray:
        """The channels averaged: stereo noise (UrbanSound8K) as one source, unlike an RIR's channels, which
        are positions in a room and are used one at a time."""
        channels = self.channels(index)
        if channels == 1:
            return self.wave(index)
        return np.mean([self.wave(index, c) for c in range(channels)], axis=0, dtype=np.float64).astype(np.float32)

    def wave(self, index: int, channel: int = 0) -> np.ndarray:
        key = (index, channel)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = resolve_audio(self.records[index], self.sources[index])
        wave = self._cache[key] = read_audio(path, self.sample_rate, resample=True, channel=channel)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return wave


def talkers_from_voices(voices: Sequence[str], n_talkers: int) -> list[Speaker]:
    """``n_talkers`` babble talkers cycling through ``voices`` at varied rates and pitches."""
    rates, pitches = (150, 175, 200), (35, 50, 65)
    return [
        Speaker(voices[i % len(voices)], rates[i % len(rates)], pitches[(i // len(rates)) % len(pitches)])
        for i in range(n_talkers if voices else 0)
    ]
