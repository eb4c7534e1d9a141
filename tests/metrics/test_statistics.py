"""Spread and paired tests, checked against SciPy on fixed inputs."""

import math

import numpy as np
import pytest
from scipy import stats

from recforge.metrics.statistics import paired_t_test, spread, wilcoxon_test


def test_spread_matches_the_student_t_interval():
    x = [0.701, 0.712, 0.695, 0.708, 0.699]
    s = spread(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert s.mean == pytest.approx(np.mean(x)) and s.std == pytest.approx(np.std(x, ddof=1))
    assert (s.low, s.high) == pytest.approx((low, high)) and s.n == 5
    assert s.half_width == pytest.approx((high - low) / 2)


def test_spread_of_one_run_has_no_interval():
    s = spread([0.5])
    assert s.mean == 0.5 and math.isnan(s.std) and math.isnan(s.low)


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")]])
def test_spread_rejects_empty_and_nan(bad):
    with pytest.raises(ValueError):
        spread(bad)


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(0.70, 0.01, 12)
    b = a - rng.normal(0.004, 0.006, 12)
    ours = paired_t_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(ref.pvalue)
    d = a - b
    assert ours.effect_size == pytest.approx(d.mean() / d.std(ddof=1)) and ours.n == 12


def test_wilcoxon_matches_scipy_with_per_user_binary_metrics():
    rng = np.random.default_rng(5)
    a = (rng.random(500) < 0.70).astype(float)  # per-user HR@10 of model A
    b = (rng.random(500) < 0.64).astype(float)
    ours = wilcoxon_test(a, b)
    ref = stats.wilcoxon(a - b)
    assert ours.statistic == pytest.approx(ref.statistic) and ours.p_value == pytest.approx(ref.pvalue)
    assert ours.p_value < 0.05 and ours.mean_difference > 0


def test_identical_models_are_not_significant():
    x = np.random.default_rng(0).random(50)
    for test in (paired_t_test, wilcoxon_test):
        result = test(x, x.copy())
        assert result.p_value == 1.0 and result.effect_size == 0.0 and result.mean_difference == 0.0


def test_two_runs_of_one_model_with_noise_are_not_significant():
    rng = np.random.default_rng(11)
    truth = rng.random(2000) < 0.7
    a = np.where(rng.random(2000) < 0.05, ~truth, truth).astype(float)  # same model, other noise
    b = np.where(rng.random(2000) < 0.05, ~truth, truth).astype(float)
    assert paired_t_test(a, b).p_value > 0.05 and wilcoxon_test(a, b).p_value > 0.05


def test_paired_tests_reject_unpaired_input():
    with pytest.raises(ValueError, match="one length"):
        paired_t_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        wilcoxon_test([1.0], [0.0])
