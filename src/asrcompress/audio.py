"""Audio reading, writing and validation (soundfile for I/O, torchaudio for resampling).

Every reader goes through :func:`read_audio`, so every stage rejects the same bad files
with the same message naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from .errors import AudioError
from .io import atomic_path

MIN_DURATION_S = 0.025


def read_audio(path: str | os.PathLike[str], sample_rate: int, *, resample: bool = False, channel: int = 0) -> np.ndarray:
    """Read a mono float32 waveform and check it is usable.

    Raises :class:`AudioError` naming ``path`` if the file is unreadable, empty, shorter
    than 25 ms, contains NaN/inf, or has the wrong sample rate (unless ``resample``).
    Multichannel files give one channel (``channel``), never a downmix, which keeps room
    impulse responses physical.
    """
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for corrupt files
        raise AudioError(path, f"cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(path, "file holds no samples")
    if not 0 <= channel < data.shape[1]:
        raise AudioError(path, f"has {data.shape[1]} channel(s); channel {channel} requested")
    wave = np.ascontiguousarray(data[:, channel])
    if file_rate != sample_rate:
        if not resample:
            raise AudioError(path, f"sample rate is {file_rate} Hz, expected {sample_rate} Hz")
        wave = resample_wave(wave, file_rate, sample_rate)
    if len(wave) < MIN_DURATION_S * sample_rate:
        raise AudioError(path, f"only {len(wave) / sample_rate * 1000:.1f} ms long (minimum {MIN_DURATION_S * 1000:.0f} ms)")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "contains NaN or infinite samples")
    return wave


def resample_wave(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    tensor = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    return AF.resample(tensor, orig_rate, new_rate).numpy()


def write_audio(path: str | os.PathLike[str], wave: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically. Peaks above full scale are an error, not a silent clip."""
    wave = np.asarray(wave, dtype=np.float32)
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "refusing to write NaN or infinite samples")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 32767 / 32768), sample_rate, subtype="PCM_16", format="WAV")


def duration_s(path: str | os.PathLike[str]) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


def peak_normalize(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    top = float(np.max(np.abs(wave)))
    return wave if top == 0 else (wave * (peak / top)).astype(np.float32)
