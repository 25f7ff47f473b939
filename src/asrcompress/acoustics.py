"""Room acoustics measured on an impulse response: RT60 (Schroeder), DRR, and checks of a usable RIR.

RT60 comes from Schroeder's backward-integrated energy decay curve (EDC): a straight line is fitted to
the EDC in dB between -5 dB and ``-5 - decay_db`` dB and extrapolated to -60 dB (T30 for the default
``decay_db=30``), as ISO 3382-1 describes. Two things would bias that fit on real recordings, and both
are handled the way Lundeby et al. (1995) propose, in one pass:

* a measured RIR ends in a noise floor, which flattens the tail of the EDC (a clap in a seminar room
  measures 0.93 s with the plain integral, 0.65 s with the compensation);
* a file may stop before the decay is over, which makes the EDC plunge towards -inf at its end.

The RIR is cut where a line fitted to its smoothed envelope meets the noise floor (or at its end),
and the energy that decay would have had after the cut is added back to the EDC.

When the EDC does not reach ``-5 - decay_db`` dB before the cut (short or noisy RIRs), the fit falls
back to 20 dB (T20), then 10 dB (T10), then to whatever range the EDC spans below -5 dB; the result is
then rougher but finite. :func:`schroeder_fit` says which range was used.

The calibration of simulated rooms (:func:`calibrate_rt60`) lives here too: pyroomacoustics' inverse
Sabine formula misses its target (a 0.15 s target measures 0.113 s), so the RT60 asked of it is
rescaled until the measured one is within tolerance.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Sequence

import numpy as np

from .errors import AudioError

MAX_RIR_S = 10.0
MIN_RIR_PEAK = 1e-8  # below this the file is silence written as float, not a response
FIT_START_DB = -5.0  # skip the direct sound and early reflections, as ISO 3382-1 does
FALLBACK_DECAYS_DB = (20.0, 10.0)
ENVELOPE_MS = 10.0  # smoothing of the envelope used to find the noise floor (Lundeby: 10-50 ms)
NOISE_TAIL_FRACTION = 0.1  # the last 10 % of the RIR estimates its noise floor
NOISE_MARGIN_DB = 10.0  # the envelope regression uses only what lies this far above the noise
DRR_LIMIT_DB = 100.0  # a pure delta has no reverberant energy: cap instead of returning inf
EXPONENT_BOUNDS = (0.5, 4.0)  # of d log(measured RT60) / d log(asked RT60) in the calibration's secant steps


@dataclasses.dataclass(frozen=True)
class DecayFit:
    """An RT60 estimate and how it was obtained."""

    rt60_s: float
    decay_db: float  # the EDC range fitted below -5 dB: the requested one or a fallback
    cut_s: float  # where the EDC was cut (noise floor or end of the file), from the RIR's start
    compensated: bool  # whether the energy after the cut was added back


def _power(rir: np.ndarray) -> np.ndarray:
    power = np.square(np.asarray(rir, dtype=np.float64).ravel())
    top = float(power.max()) if power.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        raise ValueError("the impulse response has no (finite) energy")
    return power / top  # relative levels only: the RIR's scale is arbitrary


def _cut_and_tail(power: np.ndarray, sample_rate: int) -> tuple[int, float]:
    """Where the decay meets the noise floor (or the file ends), and the energy it would have had after.

    One pass of Lundeby's method: the noise level is the mean power of the last 10 % of the RIR, a line
    is fitted to the envelope (10 ms frames, dB) from the direct path down to 10 dB above that noise,
    and the RIR is cut where the line crosses it. Returns ``(len(power), 0.0)`` when no decay can be
    fitted (fewer than two frames above the noise, or no decay at all).
    """
    start = int(np.argmax(power))
    frame = max(1, int(round(sample_rate * ENVELOPE_MS / 1000)))
    n_frames = (len(power) - start) // frame
    if n_frames < 2:
        return len(power), 0.0
    envelope = power[start: start + n_frames * frame].reshape(n_frames, frame).mean(axis=1)
    envelope_db = 10 * np.log10(np.maximum(envelope, 1e-30))
    tail = power[-max(frame, int(len(power) * NOISE_TAIL_FRACTION)):]
    noise_db = 10 * math.log10(max(float(tail.mean()), 1e-30))
    below = np.nonzero(envelope_db < noise_db + NOISE_MARGIN_DB)[0]
    n_fit = int(below[0]) if below.size else n_frames
    if n_fit < 2:
        return len(power), 0.0
    times = (np.arange(n_fit) + 0.5) * frame / sample_rate
    slope_db_s, intercept_db = np.polyfit(times, envelope_db[:n_fit], 1)
    if slope_db_s >= 0:
        return len(power), 0.0
    crossing_s = (noise_db - intercept_db) / slope_db_s
    cut = min(len(power), start + max(1, int(round(crossing_s * sample_rate))))
    # The fitted decay continued past the cut: add its energy, a geometric series of per-sample powers.
    level_db = intercept_db + slope_db_s * (cut - start) / sample_rate
    ratio = 10 ** (slope_db_s / (10 * sample_rate))
    return cut, float(10 ** (level_db / 10) * ratio / (1 - ratio))


def energy_decay_curve_db(rir: np.ndarray, sample_rate: int, compensate: bool = True) -> tuple[np.ndarray, bool]:
    """Schroeder's backward integral in dB re the total energy, up to the cut.

    With ``compensate`` the RIR is cut at its noise floor and the energy of the fitted decay after the cut
    is added (see the module docstring); without, it is the plain integral over the whole RIR, trailing
    zeros dropped. Returns the curve and whether a compensation was applied.
    """
    power = _power(rir)
    cut, tail = _cut_and_tail(power, sample_rate) if compensate else (len(power), 0.0)
    if tail == 0.0:
        cut = int(np.nonzero(power)[0][-1]) + 1  # the integral of trailing zeros is 0: -inf dB
    energy = np.cumsum(power[:cut][::-1])[::-1] + tail
    return 10 * np.log10(energy / energy[0]), tail > 0.0


def _fit_range(edc_db: np.ndarray, top_db: float, bottom_db: float) -> tuple[int, int] | None:
    """First samples at or below ``top_db`` and ``bottom_db``; ``None`` if the curve never gets there."""
    start = np.nonzero(edc_db <= top_db)[0]
    end = np.nonzero(edc_db <= bottom_db)[0]
    if not start.size or not end.size:
        return None
    return int(start[0]), int(end[0])


def schroeder_fit(rir: np.ndarray, sample_rate: int, decay_db: float = 30.0) -> DecayFit:
    """RT60 from a line fitted to the EDC between -5 and ``-5 - decay_db`` dB, extrapolated to -60 dB.

    Falls back to 20 dB, then 10 dB, then the whole range below -5 dB when the EDC does not reach
    ``-5 - decay_db`` before its cut (see the module docstring). An RIR whose EDC falls from above -5 dB to
    below ``-5 - decay_db`` within one sample (a delta, say) has an RT60 of 0.
    Raises ``ValueError`` for an RIR without finite energy.
    """
    fit = _fit_edc(*energy_decay_curve_db(rir, sample_rate), sample_rate, decay_db)
    if fit.rt60_s == 0.0 and fit.compensated:
        # The added tail swamped the curve (a decay too slow for its envelope fit): use the plain integral.
        fit = _fit_edc(*energy_decay_curve_db(rir, sample_rate, compensate=False), sample_rate, decay_db)
    return fit


def _fit_edc(edc_db: np.ndarray, compensated: bool, sample_rate: int, decay_db: float) -> DecayFit:
    cut_s = len(edc_db) / sample_rate
    decays = [decay_db, *(d for d in FALLBACK_DECAYS_DB if d < decay_db)]
    for decay in decays:
        span = _fit_range(edc_db, FIT_START_DB, FIT_START_DB - decay)
        if span is not None:
            break
    else:
        span = _fit_range(edc_db, FIT_START_DB, float(edc_db[-1]))
        decay = max(0.0, FIT_START_DB - float(edc_db[-1]))
    if span is None or span[1] - span[0] < 1:
        return DecayFit(0.0, decay, cut_s, compensated)
    first, last = span
    times = np.arange(first, last + 1) / sample_rate
    slope_db_s = float(np.polyfit(times, edc_db[first: last + 1], 1)[0])
    rt60 = -60.0 / slope_db_s if slope_db_s < 0 else 0.0
    return DecayFit(rt60, decay, cut_s, compensated)


def rt60_schroeder(rir: np.ndarray, sample_rate: int, decay_db: float = 30) -> float:
    """RT60 in seconds by Schroeder backward integration (T30 by default); see :func:`schroeder_fit`.

    pyroomacoustics' ``measure_rt60`` is not used: with too little dynamic range it silently fits the
    whole curve including its final plunge, and it does not compensate a noise floor.
    """
    return schroeder_fit(rir, sample_rate, decay_db).rt60_s


def drr_db(rir: np.ndarray, sample_rate: int, direct_window_ms: float = 2.5) -> float:
    """Direct-to-reverberant ratio in dB: energy within ``±direct_window_ms`` of the strongest sample (the
    direct path) over the energy after that window. Energy before the window (pre-delay noise) counts
    in neither. Capped at ±100 dB so an anechoic RIR (a delta) gives a finite number."""
    power = _power(rir)
    peak = int(np.argmax(power))
    half = int(round(direct_window_ms * sample_rate / 1000))
    direct = float(power[max(0, peak - half): peak + half + 1].sum())
    reverberant = float(power[peak + half + 1:].sum())
    floor = direct * 10 ** (-DRR_LIMIT_DB / 10)
    return float(np.clip(10 * math.log10(direct / max(reverberant, floor)), -DRR_LIMIT_DB, DRR_LIMIT_DB))


def rir_metrics(rir: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The measured acoustics recorded in an RIR bank's manifest. The DRR is taken from the direct path on,
    as the mixer applies the RIR (``conditions.prepare_rir`` drops what precedes the peak)."""
    from_direct_path = np.asarray(rir)[int(np.argmax(np.abs(rir))):]
    return {
        "rt60_measured_s": round(rt60_schroeder(rir, sample_rate), 4),
        "drr_db": round(drr_db(from_direct_path, sample_rate), 4),
        "duration_s": round(len(rir) / sample_rate, 4),
    }


def check_rir(rir: np.ndarray, sample_rate: int, path: str) -> None:
    """Refuse an RIR that cannot be one: empty, non-finite, silent, or longer than 10 s (a recording
    of something else, which would also make every convolution slow)."""
    wave = np.asarray(rir)
    if wave.size == 0:
        raise AudioError(path, "impulse response holds no samples")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "impulse response contains NaN or infinite samples")
    peak = float(np.max(np.abs(wave)))
    if peak < MIN_RIR_PEAK:
        raise AudioError(path, f"impulse response has no energy (peak {peak:.3g} < {MIN_RIR_PEAK:g})")
    duration = len(wave) / sample_rate
    if duration > MAX_RIR_S:
        raise AudioError(path, f"impulse response is {duration:.2f} s long (maximum {MAX_RIR_S:g} s)")


# ---------------------------------------------------------------- calibrating simulated rooms

@dataclasses.dataclass(frozen=True)
class Calibration:
    """The simulated RIR closest to the target, and how it was reached."""

    rir: np.ndarray
    rt60_measured_s: float
    rt60_asked_s: float  # what the simulator was given for this RIR
    iterations: int  # simulations run
    converged: bool  # within tolerance of the target


def min_sabine_rt60(room_dim: Sequence[float], speed_of_sound: float, max_absorption: float = 0.99) -> float:
    """The shortest RT60 inverse Sabine gives a shoebox room, its wall absorption capped at ``max_absorption``
    (it refuses absorption above 1; at 1 the room is anechoic, which no calibration step can use)."""
    volume = float(np.prod(room_dim))
    surface = 2 * sum(a * b for a, b in itertools.combinations(room_dim, 2))
    return 24 * math.log(10) * volume / (speed_of_sound * surface * max_absorption)


def calibrate_rt60(
    simulate: Callable[[float], np.ndarray],
    target_s: float,
    sample_rate: int,
    *,
    tolerance: float = 0.05,
    max_iterations: int = 6,
    min_asked_s: float = 0.0,
) -> Calibration:
    """Simulate, measure (:func:`rt60_schroeder`), rescale the RT60 asked until the measured one is within
    ``tolerance`` of ``target_s`` (at most ``max_iterations`` simulations).

    The first rescaling is by target / measured; later ones by (target / measured) ** (1 / k), k being the
    log-log slope measured between the last two simulations (a secant step), which converges where the
    plain rescaling oscillates.

    ``simulate`` maps the RT60 asked to an RIR (deterministically, so the result is too). The asked RT60
    is kept above ``min_asked_s`` (the smallest a room can take: inverse Sabine needs absorption <= 1);
    when the clamp stops progress the loop ends. Returns the closest RIR even when none is within
    ``tolerance`` of the target.
    """
    if target_s <= 0:
        raise ValueError(f"target RT60 must be positive, got {target_s}")
    asked = max(target_s, min_asked_s)
    best: Calibration | None = None
    previous: tuple[float, float] | None = None  # (asked, measured) of the last simulation
    exponent = 1.0  # d log(measured) / d log(asked): first step rescales by target / measured
    for iteration in range(1, max_iterations + 1):
        rir = simulate(asked)
        measured = rt60_schroeder(rir, sample_rate)
        converged = abs(measured - target_s) <= tolerance * target_s
        if best is None or abs(measured - target_s) < abs(best.rt60_measured_s - target_s):
            best = Calibration(rir, measured, asked, iteration, converged)
        if converged or measured <= 0:
            break
        if previous is not None and measured != previous[1] and asked != previous[0]:
            # Secant step in log-log: short rooms react up to 2.5x more than asked (absorption near 1), where
            # the plain target / measured rescaling overshoots by more than it corrects and diverges.
            exponent = math.log(measured / previous[1]) / math.log(asked / previous[0])
            exponent = min(max(exponent, EXPONENT_BOUNDS[0]), EXPONENT_BOUNDS[1])
        previous = (asked, measured)
        next_asked = max(asked * (target_s / measured) ** (1 / exponent), min_asked_s)
        if next_asked == asked:
            break  # clamped at the smallest feasible RT60: asking again gives the same room
        asked = next_asked
    assert best is not None
    return dataclasses.replace(best, iterations=iteration)
