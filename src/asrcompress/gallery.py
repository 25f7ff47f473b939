"""A small gallery per test condition: what the model heard, as spectrograms and audio.

For a few utterances of a condition folder (``results/conditions/<condition>``) this writes, into
one output folder:

* ``<utt>.png``: the clean and the corrupted spectrogram, one above the other, on the same dB
  colour scale (the ``clean`` condition shows only the one), titled with what was done to the
  utterance (noise file and target/measured SNR, RIR and its RT60, the kind a ``random`` condition
  drew);
* ``<utt>.wav``: the corrupted audio as the model got it, and ``<utt>.clean.wav``: the clean
  source (not written for the ``clean`` condition, where both are the same). WAV sources are copied
  byte for byte; other formats (LibriSpeech FLAC) are re-encoded to 16-bit PCM WAV, which is
  sample-exact for 16-bit sources;
* ``index.json``: the examples, their files and their manifest records.

The examples are the ``n_examples`` utterances ranked first by a hash of (seed, utterance id), so
every condition of a run shows the same utterances (wherever none was skipped) and reruns give the
same files.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from PIL import Image  # noqa: E402

from .audio import read_audio, write_audio  # noqa: E402
from .corpora.demo import split_seed  # noqa: E402
from .errors import PipelineError  # noqa: E402
from .io import atomic_directory, write_json  # noqa: E402
from .manifest import Utterance, read_manifest, resolve_audio  # noqa: E402

log = logging.getLogger(__name__)

WINDOW_S = 0.025
HOP_S = 0.010
DYNAMIC_RANGE_DB = 80.0
DPI = 100
COLOUR_STEPS = 64
TITLE_WIDTH = 105  # characters per title line at 8 pt across the figure
FIG_WIDTH_IN = 7.0
PANEL_HEIGHT_IN = 1.9


# ---------------------------------------------------------------- spectrogram

def spectrogram_db(wave: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float, float]:
    """Power spectrogram in dBFS (a full-scale sine reads 0 dB): Hann window of 25 ms, hop of 10 ms.

    Returns ``(db, hop_s, max_freq_hz)`` with ``db`` shaped (frequency bins, frames).
    """
    win = int(round(WINDOW_S * sample_rate))
    hop = int(round(HOP_S * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < win:
        wave = np.pad(wave, (0, win - len(wave)))
    window = np.hanning(win + 1)[:-1]  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop] * window
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2 / (window.sum() / 2) ** 2
    return 10.0 * np.log10(power.T + 1e-12), hop / sample_rate, sample_rate / 2


# ---------------------------------------------------------------- what was done

def _num(value: Any, spec: str) -> str | None:
    return None if value is None else format(float(value), spec)


def describe_corruption(utt: Utterance) -> str:
    """One line saying what the condition did to this utterance, from its manifest record."""
    extra = utt.extra
    parts = []
    if extra.get("drawn_kind"):
        parts.append(f"drawn: {extra['drawn_kind']}")
    if extra.get("rir") is not None:
        text = f"RIR {extra['rir']}"
        if extra.get("rir_channel"):
            text += f" ch{extra['rir_channel']}"
        rt60 = _num(extra.get("rt60_measured_s"), ".2f")
        parts.append(text + (f" (RT60 {rt60} s)" if rt60 else ""))
    if extra.get("noise_file") is not None:
        text = f"noise {extra['noise_file']}"
        target, measured = _num(extra.get("snr_db_target"), "g"), _num(extra.get("snr_db_measured"), ".1f")
        if target is not None:
            text += f" at {target} dB SNR"
        if measured is not None:
            text += f" (measured {measured} dB)"
        parts.append(text)
    if extra.get("order"):
        parts.append(str(extra["order"]).replace("_", " "))
    return "; ".join(parts) if parts else "no corruption"


# ---------------------------------------------------------------- choosing and writing

def pick_examples(utterances: list[Utterance], n_examples: int, seed: int) -> list[Utterance]:
    """The ``n_examples`` utterances ranked first by a hash of (seed, id), returned sorted by id.

    The rank of an utterance does not depend on the others, so conditions that skipped different
    files still share their examples wherever possible.
    """
    if n_examples < 1:
        raise ValueError(f"n_examples must be at least 1, not {n_examples}")
    ranked = sorted(utterances, key=lambda utt: (split_seed(seed, "gallery", utt.id), utt.id))
    return sorted(ranked[:n_examples], key=lambda utt: utt.id)


def _copy_as_wav(source: Path, dest: Path, sample_rate: int) -> None:
    """A WAV source byte for byte; anything else re-encoded as 16-bit PCM WAV."""
    if sf.info(str(source)).format == "WAV":
        shutil.copyfile(source, dest)
    else:
        write_audio(dest, read_audio(source, sample_rate), sample_rate)


def _title(utt: Utterance, condition: str, what: str) -> str:
    transcript = utt.text if len(utt.text) <= TITLE_WIDTH else utt.text[: TITLE_WIDTH - 3].rstrip() + "..."
    head = f"{utt.id} | {condition} | {utt.duration:.1f} s"
    return "\n".join([head, *textwrap.wrap(what, TITLE_WIDTH), f'"{transcript}"'])


def _figure(path: Path, panels: list[tuple[str, np.ndarray]], sample_rate: int, title: str) -> None:
    specs = [spectrogram_db(wave, sample_rate) for _, wave in panels]
    vmax = float(np.ceil(max(db.max() for db, _, _ in specs)))
    vmin = vmax - DYNAMIC_RANGE_DB
    # A stepped colour map (1.25 dB a step), resampled in data space: the spectrograms hold only these
    # 64 colours, so the 256-colour palette below keeps them exactly (only text anti-aliasing is rounded).
    cmap = matplotlib.colormaps["magma"].resampled(COLOUR_STEPS)
    fig, axes = plt.subplots(len(panels), 1, figsize=(FIG_WIDTH_IN, 0.6 + PANEL_HEIGHT_IN * len(panels)),
                             sharex=True, squeeze=False, layout="constrained")
    image = None
    for ax, (label, _), (db, hop_s, top_hz) in zip(axes[:, 0], panels, specs):
        image = ax.imshow(db, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          extent=(0.0, db.shape[1] * hop_s, 0.0, top_hz / 1000), interpolation="antialiased",
                          interpolation_stage="data")
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=8, loc="left")
        ax.grid(False)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dBFS", pad=0.01, fraction=0.04)
    fig.suptitle(title, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    plt.close(fig)
    # A noisy spectrogram compresses badly as RGBA; a 256-colour palette keeps it under ~200 kB.
    with Image.open(buffer) as rendered:
        palette = rendered.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        palette.save(path, format="PNG", optimize=True)


def make_gallery(
    condition_manifest: str | os.PathLike[str],
    clean_manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sample_rate: int,
    n_examples: int = 3,
    seed: int = 0,
) -> list[Path]:
    """Write the gallery of one condition into ``out_dir`` (atomically: on any error, no folder).

    ``condition_manifest`` is a condition folder's ``manifest.jsonl``; ``clean_manifest`` the clean
    test set's, which must hold every utterance of the condition. Returns the files written (their
    final paths): per example its PNG, its audio and (unless clean) its clean audio, then ``index.json``.
    """
    condition_utts = read_manifest(condition_manifest)
    if not condition_utts:
        raise PipelineError(f"{condition_manifest}: no utterance to show")
    clean_by_id = {utt.id: utt for utt in read_manifest(clean_manifest)}
    missing = [utt.id for utt in condition_utts if utt.id not in clean_by_id]
    if missing:
        raise PipelineError(f"{clean_manifest}: lacks utterance(s) of {condition_manifest}: {', '.join(missing[:5])}")
    condition = str(condition_utts[0].extra.get("condition", Path(condition_manifest).parent.name))
    is_clean = condition == "clean"
    examples = pick_examples(condition_utts, n_examples, seed)

    out_dir = Path(out_dir)
    written: list[str] = []
    records: list[dict[str, Any]] = []
    with atomic_directory(out_dir) as staging:
        for utt in examples:
            clean = clean_by_id[utt.id]
            corrupted_path = resolve_audio(utt, condition_manifest)
            clean_path = resolve_audio(clean, clean_manifest)
            corrupted = read_audio(corrupted_path, sample_rate)
            what = describe_corruption(utt)
            files = {"figure": f"{utt.id}.png", "audio": f"{utt.id}.wav"}
            if is_clean:
                panels = [("clean", corrupted)]
            else:
                files["clean_audio"] = f"{utt.id}.clean.wav"
                panels = [("clean", read_audio(clean_path, sample_rate)), (f"corrupted: {condition}", corrupted)]
            _figure(staging / files["figure"], panels, sample_rate, title=_title(utt, condition, what))
            _copy_as_wav(corrupted_path, staging / files["audio"], sample_rate)
            if not is_clean:
                _copy_as_wav(clean_path, staging / files["clean_audio"], sample_rate)
            written.extend(files.values())
            records.append({"id": utt.id, "text": utt.text, "speaker": utt.speaker, "duration": utt.duration,
                            "description": what, "files": files, "source": str(corrupted_path),
                            "clean_source": str(clean_path), "record": utt.extra})
            log.info("gallery %s: %s (%s)", condition, utt.id, what)
        write_json(staging / "index.json", {
            "condition": condition, "sample_rate": sample_rate, "seed": seed, "n_requested": n_examples,
            "window_s": WINDOW_S, "hop_s": HOP_S, "dynamic_range_db": DYNAMIC_RANGE_DB, "examples": records,
        })
        written.append("index.json")
    return [out_dir / name for name in written]
