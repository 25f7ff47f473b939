"""Uncertainty of error rates: bootstrap over utterances (Bisani & Ney, ICASSP 2004).

Utterances, not words, are resampled: errors within an utterance are correlated (one misheard
word drags its neighbours), so a word-level bootstrap would give intervals that are too narrow.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


def _resample_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    return np.divide(numerators, denominators, out=np.zeros(len(numerators)), where=denominators > 0)


def bootstrap_rate_ci(
    errors: Sequence[int], totals: Sequence[int], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of sum(errors)/sum(totals) when utterances are resampled with replacement."""
    errors_a, totals_a = np.asarray(errors, dtype=np.float64), np.asarray(totals, dtype=np.float64)
    if len(errors_a) == 0 or n_resamples == 0:
        return float("nan"), float("nan")
    picks = _resample_indices(len(errors_a), n_resamples, seed)
    rates = _ratios(errors_a[picks].sum(axis=1), totals_a[picks].sum(axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(rates, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """System A minus system B on the same utterances: the WER difference, its CI, and a two-sided p-value."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_utts: int


def paired_bootstrap(
    errors_a: Sequence[int], errors_b: Sequence[int], totals: Sequence[int], n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap test of two systems' error rates on the same utterances (Bisani & Ney 2004).

    Both systems are scored on the same resampled utterance sets, so their difference's spread reflects
    only how differently they err, not how hard the sampled utterances happen to be. The p-value is the
    two-sided bootstrap probability of a difference of the other sign (capped at 1); swapping A and B
    negates every difference and leaves it unchanged.
    """
    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    words = np.asarray(totals, dtype=np.float64)
    if not (len(a) == len(b) == len(words)):
        raise ValueError(f"paired test needs the same utterances: {len(a)}, {len(b)} and {len(words)} given")
    if len(a) == 0:
        nan = float("nan")
        return PairedComparison(nan, nan, nan, nan, 0)
    delta = float(_ratios(np.array([a.sum() - b.sum()]), np.array([words.sum()]))[0])
    if n_resamples == 0:
        return PairedComparison(delta, float("nan"), float("nan"), float("nan"), len(a))
    picks = _resample_indices(len(a), n_resamples, seed)
    deltas = _ratios((a - b)[picks].sum(axis=1), words[picks].sum(axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [alpha, 1.0 - alpha])
    p_value = min(1.0, 2.0 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
    return PairedComparison(delta, float(low), float(high), float(p_value), len(a))
