"""Confidence intervals for error rates: bootstrap over utterances (Bisani & Ney, 2004)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_rate_ci(
    errors: Sequence[int], totals: Sequence[int], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of sum(errors)/sum(totals) when utterances are resampled with replacement."""
    errors_a, totals_a = np.asarray(errors, dtype=np.float64), np.asarray(totals, dtype=np.float64)
    if len(errors_a) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(errors_a), size=(n_resamples, len(errors_a)))
    denominators = totals_a[picks].sum(axis=1)
    rates = np.divide(errors_a[picks].sum(axis=1), denominators, out=np.zeros(n_resamples), where=denominators > 0)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(rates, [alpha, 1.0 - alpha])
    return float(low), float(high)
