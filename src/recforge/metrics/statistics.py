"""Spread and significance of metric differences between models.

* :func:`spread`: mean, sample standard deviation and a two-sided Student-t confidence interval
  of a metric over repeated runs (seeds).
* :func:`paired_t_test`: the paired t-test on per-unit differences (units are users for ranking
  metrics, seeds for AUC-type metrics), with Cohen's d_z = mean(d) / sd(d) as the effect size.
* :func:`wilcoxon_test`: the Wilcoxon signed-rank test on the same differences (SciPy's
  implementation; zero differences dropped, Wilcox 1959), for metrics that are far from normal,
  such as per-user HR@10 in {0, 1}.

Two identical models give all-zero differences: both tests then return p = 1 (no evidence of a
difference) rather than NaN. The t distribution's quantiles and tails come from SciPy.

Reference: Dror et al., "The Hitchhiker's Guide to Testing Statistical Significance in NLP",
ACL 2018, for the choice of paired tests over units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Spread:
    """Mean ± std over n values, with the ``level`` confidence interval [low, high] of the mean.

    With one value the std and the interval are NaN (no spread can be estimated).
    """

    mean: float
    std: float
    n: int
    low: float
    high: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (``mean ± half_width``)."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test of ``a - b`` over ``n`` units.

    Attributes:
        method: ``paired t`` or ``wilcoxon``.
        n: paired units (users or seeds).
        mean_difference: mean of a - b.
        statistic: t, or Wilcoxon's W (the smaller signed-rank sum).
        p_value: two-sided p-value.
        effect_size: Cohen's d_z = mean(d) / sd(d) (0 when every difference is 0).
    """

    method: str
    n: int
    mean_difference: float
    statistic: float
    p_value: float
    effect_size: float


def spread(values: np.ndarray | list[float], level: float = 0.95) -> Spread:
    """Mean, sample std (ddof 1) and the Student-t confidence interval of the mean.

    Args:
        values: float [n], one value per run; NaN values are an error, not skipped.
        level: confidence level in (0, 1).

    Raises:
        ValueError: for no values, NaN values or a level outside (0, 1).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("spread needs a non-empty 1-D array of values")
    if not np.isfinite(x).all():
        raise ValueError(f"spread got non-finite values: {x.tolist()}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(x.mean())
    if len(x) == 1:
        return Spread(mean, math.nan, 1, math.nan, math.nan, level)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return Spread(mean, std, len(x), mean - half, mean + half, level)


def _differences(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of one length, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {len(a)}")
    d = a - b
    if not np.isfinite(d).all():
        raise ValueError("paired values must be finite")
    return d


def paired_t_test(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> PairedTest:
    """Two-sided paired t-test of mean(a - b) = 0 (Student 1908): t = mean(d) / (sd(d) / sqrt(n)).

    Args:
        a, b: float [n], paired values (same unit at the same index).

    Raises:
        ValueError: for arrays of different shapes, fewer than 2 pairs or non-finite values.
    """
    d = _differences(a, b)
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        # Every pair differs by the same amount: no difference at all gives p = 1; a constant
        # non-zero shift is infinitely significant (t = ±inf).
        if mean == 0.0:
            return PairedTest("paired t", n, 0.0, 0.0, 1.0, 0.0)
        return PairedTest("paired t", n, mean, math.copysign(math.inf, mean), 0.0, math.copysign(math.inf, mean))
    t = mean / (sd / math.sqrt(n))
    p = float(2 * stats.t.sf(abs(t), n - 1))
    return PairedTest("paired t", n, mean, t, p, mean / sd)


def wilcoxon_test(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of the differences a - b (zero differences dropped).

    Args:
        a, b: float [n], paired values.

    Raises:
        ValueError: as :func:`paired_t_test`.
    """
    d = _differences(a, b)
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1))
    effect = mean / sd if sd > 0 else (0.0 if mean == 0.0 else math.copysign(math.inf, mean))
    if not np.any(d != 0):
        return PairedTest("wilcoxon", n, 0.0, 0.0, 1.0, 0.0)
    result = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return PairedTest("wilcoxon", n, mean, float(result.statistic), float(result.pvalue), effect)
