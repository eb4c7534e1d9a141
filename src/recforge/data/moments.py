"""Streaming mean and variance that stay accurate far from zero.

Each chunk is summarised two-pass with NumPy (the mean, then the sum of squared deviations with
the rounding correction of the "corrected two-pass algorithm", Chan, Golub & LeVeque 1983), and
summaries are merged with the pairwise update of Chan, Golub & LeVeque (1979), "Updating formulae
and a pairwise algorithm for computing sample variances". The merge is exact in real arithmetic, so
the result does not depend on how the rows were chunked (up to float64 rounding). The one-pass
``E[x^2] - E[x]^2`` this replaces cancels catastrophically: values of 1.7e12 +- 1000 gave a
standard deviation of ~23,000 instead of ~1,000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (``m2``) of a stream of float64 values.

    Args:
        count: values summarised.
        mean: their mean (0.0 when ``count`` is 0).
        m2: sum of squared deviations from ``mean``.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> "Moments":
        """Two-pass summary of one chunk (float64 [N], finite values only)."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        deviations = values - mean
        correction = float(deviations.sum())  # zero in exact arithmetic; removes the mean's rounding error
        m2 = float(np.dot(deviations, deviations)) - correction * correction / values.size
        return cls(int(values.size), mean + correction / values.size, max(m2, 0.0))

    @classmethod
    def constant(cls, value: float, count: int) -> "Moments":
        """``count`` copies of ``value`` (no deviation)."""
        return cls(count, float(value), 0.0) if count else cls()

    def merge(self, other: "Moments") -> "Moments":
        """Summary of both streams together (the pairwise update of Chan et al. 1979)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta * delta * (self.count * (other.count / count))
        return Moments(count, mean, m2)

    @property
    def variance(self) -> float:
        """Population variance (ddof = 0, as NumPy's and scikit-learn's StandardScaler); 0.0 if empty."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation; 0.0 if empty."""
        return math.sqrt(self.variance)
