"""RT60 and DRR measurement, RIR checks, and the calibration of simulated rooms to their target RT60."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrcompress.acoustics import check_rir, drr_db, rir_metrics, rt60_schroeder, schroeder_fit
from asrcompress.banks import RirBankSpec, build_rir_bank
from asrcompress.errors import AudioError

RATE = 16000


def _exponential_rir(rt60_s: float, seconds: float, noise_floor_db: float | None = None, seed: int = 0) -> np.ndarray:
    """A direct path then Gaussian noise decaying 60 dB in ``rt60_s`` (the textbook diffuse tail)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    rir = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s)
    rir[0] = 5.0
    if noise_floor_db is not None:
        rir += rng.standard_normal(len(t)) * 10 ** (noise_floor_db / 20)
    return rir


@pytest.mark.parametrize("rt60_s", [0.2, 0.5, 1.0])
def test_rt60_of_an_exponential_decay(rt60_s):
    assert rt60_schroeder(_exponential_rir(rt60_s, 2 * rt60_s), RATE) == pytest.approx(rt60_s, rel=0.03)


def test_noise_floor_and_truncation_are_compensated():
    # A noise floor 45 dB down flattens the plain Schroeder curve: T30 would read 1.3 s for 0.5 s.
    assert rt60_schroeder(_exponential_rir(0.5, 1.0, noise_floor_db=-45), RATE) == pytest.approx(0.5, rel=0.08)
    # Cut at half its RT60, the decay spans less than 35 dB: T20 is used instead of a fit of the final plunge.
    fit = schroeder_fit(_exponential_rir(0.5, 0.25), RATE)
    assert fit.decay_db == 20 and fit.rt60_s == pytest.approx(0.5, rel=0.05)


def test_delta_has_no_reverberation():
    delta = np.zeros(RATE // 10)
    delta[40] = 1.0
    assert rt60_schroeder(delta, RATE) == 0.0
    reverberant = _exponential_rir(0.5, 1.0)
    assert drr_db(delta, RATE) >= 100.0 > drr_db(reverberant, RATE) + 50


def test_real_rirs_give_finite_metrics(real_data):
    paths = sorted((real_data / "rir").glob("*.flac"))
    assert len(paths) >= 4
    for path in paths:
        rir, rate = sf.read(str(path), dtype="float32")
        check_rir(rir, rate, str(path))
        metrics = rir_metrics(rir, rate)
        assert set(metrics) == {"rt60_measured_s", "drr_db", "duration_s"}
        assert all(np.isfinite(value) for value in metrics.values()), (path.name, metrics)
        assert 0.05 < metrics["rt60_measured_s"] < 10, (path.name, metrics)
        assert metrics["duration_s"] == pytest.approx(len(rir) / rate, abs=1e-4)


def test_seminar_room_clap_rt60_ignores_its_noise_floor(real_data):
    # Its envelope falls ~100 dB/s before a floor at -44 dB: RT60 about 0.6 s (plain T30 reads 0.93 s).
    rir, rate = sf.read(str(real_data / "rir" / "rir_clap_seminar_room.flac"))
    assert 0.5 < rt60_schroeder(rir, rate) < 0.75


@pytest.mark.parametrize("rir, reason", [
    (np.zeros(RATE), "no energy"),
    (np.full(RATE, 1e-9), "no energy"),
    (np.r_[1.0, np.zeros(11 * RATE)], "long"),
    (np.r_[1.0, np.nan, np.zeros(10)], "NaN"),
])
def test_check_rir_names_the_file(rir, reason):
    with pytest.raises(AudioError, match=reason) as caught:
        check_rir(rir, RATE, "banks/rir/bad.wav")
    assert caught.value.path == "banks/rir/bad.wav" and "banks/rir/bad.wav" in str(caught.value)


def _digests(records) -> list[str]:
    return [hashlib.sha256(Path(r.path).read_bytes()).hexdigest() for r in records]


@pytest.mark.parametrize("target_s", [0.3, 0.6])
def test_simulated_rooms_reach_their_target(tmp_path, target_s):
    records = build_rir_bank(RirBankSpec(rt60_s=target_s, n_rooms=3, sample_rate=RATE, seed=1), tmp_path / "rir")
    for record in records:
        rir, rate = sf.read(record.path)
        assert rt60_schroeder(rir, rate) == pytest.approx(target_s, rel=0.15)  # as written, PCM16 and all
        extra = record.extra
        assert extra["rt60_target_s"] == target_s and extra["rt60_calibrated"] is True
        assert extra["rt60_measured_s"] == pytest.approx(target_s, rel=0.05)
        assert 1 <= extra["rt60_calibration_iterations"] <= 6
        assert np.isfinite(extra["drr_db"]) and extra["rt60_sabine_s"] > 0


def test_rir_bank_is_deterministic(tmp_path):
    spec = RirBankSpec(rt60_s=0.3, n_rooms=3, sample_rate=RATE, seed=5)
    first = build_rir_bank(spec, tmp_path / "a")
    second = build_rir_bank(spec, tmp_path / "b")
    assert _digests(first) == _digests(second)
    assert [r.extra for r in first] == [r.extra for r in second]
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes().replace(b"/a/", b"/b/") == \
        (tmp_path / "b" / "manifest.jsonl").read_bytes()
    other = build_rir_bank(RirBankSpec(rt60_s=0.3, n_rooms=3, sample_rate=RATE, seed=6), tmp_path / "c")
    assert _digests(other) != _digests(first)
