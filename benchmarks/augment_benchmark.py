"""Benchmark test-set augmentation per CPU core: noise, reverb and noise+reverb at 16 kHz.

Real material only: the LibriSpeech utterances in tests/data, repeated to about ten minutes of audio,
mixed with the real noise recordings and convolved with the real measured RIRs there, through the pipeline's
own functions (``conditions.corrupt`` with :class:`~asrcompress.banks.Bank` s loaded from manifests written
to a temporary folder). tests/data stores FLAC; the benchmark first copies every recording's samples,
bit-exact, to a PCM16 WAV in that folder, so the I/O figure reads WAV as the test sets of a run do. One
thread: OpenMP, MKL, OpenBLAS and torch are limited to one before import.

Two figures per condition, as x real time (audio seconds per wall second):

* in memory: ``corrupt`` on waveforms already decoded (banks warm), what the transform itself costs;
* with I/O: ``conditions.build_condition``, which reads each WAV, corrupts it and writes a PCM16 WAV and
  the manifest (the source files are in the page cache after the first pass).

The first version of this benchmark measured torchaudio's fftconvolve at 190x for noise+reverb; scipy's,
which pads the FFT to a fast length, replaced it in ``conditions.reverberate`` (outputs equal to 1e-11).

Usage: .venv/bin/python benchmarks/augment_benchmark.py [--minutes 10] [--repeats 3]
Writes benchmarks/results/augment.md and prints it.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy/scipy/torch load their thread pools: per-core figures

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src")]

from reporting import cpu_name, publish  # noqa: E402
from asrcompress.acoustics import rir_metrics  # noqa: E402
from asrcompress.banks import Bank  # noqa: E402
from asrcompress.conditions import Condition, build_condition, corrupt, utterance_rng  # noqa: E402
from asrcompress.manifest import Utterance, write_manifest  # noqa: E402

REAL_DATA = REPO / "tests" / "data"
RATE = 16000
SEED = 0
CONDITIONS = ("noise/real-noise/10", "reverb/real-rirs", "noise+reverb/real-noise/10/real-rirs")
GOAL_X_REAL_TIME = 1000  # noise+reverb, in memory, one core (the target)


# ---------------------------------------------------------------- material

def _as_wavs(folder: Path, out: Path) -> list[Path]:
    """Every FLAC recording in ``folder`` as a PCM16 WAV in ``out`` (the same samples, bit-exact)."""
    sources = sorted(folder.glob("*.flac"))
    if not sources:
        sys.exit(f"no FLAC recording under {folder} (tests/data is part of the repository)")
    out.mkdir(parents=True, exist_ok=True)
    wavs = []
    for source in sources:
        data, rate = sf.read(str(source), dtype="int16")
        wavs.append(out / f"{source.stem}.wav")
        sf.write(str(wavs[-1]), data, rate, format="WAV", subtype="PCM_16")
    return wavs


def _test_set(files: Sequence[Path], minutes: float) -> list[Utterance]:
    """The utterances repeated, under new ids, until they last ``minutes``."""
    durations = [sf.info(str(path)).frames / RATE for path in files]
    utterances: list[Utterance] = []
    total, copy = 0.0, 0
    while total < minutes * 60:
        for path, duration in zip(files, durations):
            utterances.append(Utterance(f"{path.stem}-r{copy:02d}", str(path), duration, path.stem.split("-")[0], ""))
            total += duration
        copy += 1
    return utterances


def _bank_manifest(files: Sequence[Path], kind: str, out: Path) -> Path:
    """A manifest of the real ``files``; RIRs get their measured acoustics, as a real bank does."""
    records = []
    for path in files:
        wave, rate = sf.read(str(path), dtype="float32")
        extra = rir_metrics(wave, rate) if kind == "rir" else {}
        records.append(Utterance(path.stem, str(path), len(wave) / rate, kind, "", extra=extra))
    write_manifest(out, records)
    return out


# ---------------------------------------------------------------- measuring

def _in_memory(condition: Condition, test_set: Sequence[Utterance], waves: dict[str, np.ndarray],
               noise_bank: Bank, rir_bank: Bank, repeats: int) -> tuple[float, list[np.ndarray]]:
    """Best wall time of ``repeats`` passes of ``corrupt`` over the test set, and the last pass's outputs."""
    best, outputs = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs = [corrupt(waves[utt.path], condition, utterance_rng(SEED, condition, utt.id), noise_bank, rir_bank)[0]
                   for utt in test_set]
        best = min(best, time.perf_counter() - started)
    return best, outputs


def _with_io(condition: Condition, test_manifest: Path, out_dir: Path, noise_manifest: Path,
             rir_manifest: Path) -> float:
    """Wall time of ``build_condition``: read, corrupt, write WAV and manifest, for the whole test set."""
    started = time.perf_counter()
    build_condition(condition, str(test_manifest), out_dir, RATE, SEED,
                    noise_bank_manifests=[str(noise_manifest)] if condition.uses_noise else (),
                    rir_bank_manifest=str(rir_manifest) if condition.uses_reverb else None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _as_wavs(REAL_DATA / "speech" / "librispeech", root / "material" / "speech")
        test_set = _test_set(files, args.minutes)
        audio_s = sum(utt.duration for utt in test_set)
        waves = {str(path): sf.read(str(path), dtype="float32")[0] for path in files}
        noise_manifest = _bank_manifest(_as_wavs(REAL_DATA / "noise", root / "material" / "noise"), "noise",
                                        root / "noise.jsonl")
        rir_manifest = _bank_manifest(_as_wavs(REAL_DATA / "rir", root / "material" / "rir"), "rir", root / "rir.jsonl")
        test_manifest = root / "test.jsonl"
        write_manifest(test_manifest, test_set)
        noise_bank, rir_bank = Bank.load(noise_manifest, RATE), Bank.load(rir_manifest, RATE)
        for condition_id in CONDITIONS:
            condition = Condition.parse(condition_id)
            _in_memory(condition, test_set[: len(files)], waves, noise_bank, rir_bank, 1)  # warm: banks decoded
            memory_s, _ = _in_memory(condition, test_set, waves, noise_bank, rir_bank, args.repeats)
            _with_io(condition, test_manifest, root / "warm", noise_manifest, rir_manifest)  # page cache, imports
            io_s = _with_io(condition, test_manifest, root / condition.kind, noise_manifest, rir_manifest)
            rows.append((condition_id, f"{audio_s / memory_s:.0f}x", f"{audio_s / io_s:.0f}x"))
    reached = float(dict((row[0], row[1]) for row in rows)[CONDITIONS[2]].rstrip("x"))
    table = (
        f"Augmentation speed on one core ({cpu_name()}; OMP/MKL/OpenBLAS/torch threads = 1), "
        f"{len(test_set)} utterances = {audio_s / 60:.1f} min of real LibriSpeech audio at 16 kHz "
        f"({len(files)} utterances repeated), real noise ({len(noise_bank)} files, SNR 10 dB) and measured RIRs "
        f"({len(rir_bank)} files, up to {max(r.duration for r in rir_bank.records):.1f} s). "
        "x real time = audio seconds per wall second; "
        f"in memory = `corrupt` on decoded waveforms (best of {args.repeats}); with I/O = `build_condition` "
        "(read WAV, corrupt, write PCM16 WAV + manifest; files in the page cache).\n\n"
        "| condition | in memory | with I/O |\n|---|---|---|\n"
        + "\n".join(f"| {' | '.join(row)} |" for row in rows)
        + f"\n\nGoal: >= {GOAL_X_REAL_TIME}x real time per core for noise+reverb in memory; current: {reached:.0f}x "
        + ("(met).\n" if reached >= GOAL_X_REAL_TIME else "(not met).\n")
    )
    publish(table, REPO / "benchmarks" / "results" / "augment.md")


if __name__ == "__main__":
    main()
