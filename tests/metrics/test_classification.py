import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from recforge.metrics.classification import auc, gauc, log_loss


def _random_case(seed: int, n: int, decimals: int | None):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(np.int64)
    labels[0], labels[1] = 0, 1  # both classes present
    scores = rng.random(n) + 0.3 * labels  # informative but imperfect
    if decimals is not None:
        scores = np.round(scores, decimals)  # heavy ties
    return labels, scores


# --- auc ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_auc_matches_sklearn(seed, decimals):
    labels, scores = _random_case(seed, n=int(np.random.default_rng(seed).integers(2, 400)), decimals=decimals)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_hand_worked_with_ties():
    # pairs (pos, neg): (0.8, 0.2) win, (0.8, 0.5) win, (0.5, 0.2) win, (0.5, 0.5) tie -> 3.5 / 4
    assert auc([1, 0, 1, 0], [0.8, 0.2, 0.5, 0.5]) == pytest.approx(0.875)
    assert auc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)  # one tied pair counts 1/2
    assert auc([0, 0, 1], [0.1, 0.1, 0.1]) == pytest.approx(0.5)  # constant scores
    assert auc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert auc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0


def test_auc_accepts_bool_float_torch_and_column_input():
    labels = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.1, 0.4, 0.4, 0.2])
    expected = roc_auc_score(labels, scores)
    assert auc(labels.astype(bool), scores) == pytest.approx(expected)
    assert auc(labels.astype(np.float32), scores) == pytest.approx(expected)
    assert auc(torch.tensor(labels, dtype=torch.float32), torch.tensor(scores, dtype=torch.bfloat16)) == pytest.approx(
        roc_auc_score(labels, torch.tensor(scores, dtype=torch.bfloat16).double().numpy())
    )
    assert auc(labels[:, None], scores[:, None]) == pytest.approx(expected)
    assert auc(list(labels), list(scores)) == pytest.approx(expected)


def test_auc_invariant_to_monotone_transform():
    labels, scores = _random_case(3, 300, 2)
    logits = np.log(scores + 1e-3) * 7 - 2
    assert auc(labels, logits) == pytest.approx(auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], [0]])
def test_auc_single_class_is_nan_with_warning(labels):
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert np.isnan(auc(labels, np.linspace(0, 1, len(labels))))


def test_auc_empty_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="no rows"):
        assert np.isnan(auc(np.zeros(0), np.zeros(0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_auc_non_finite_scores_raise(bad):
    with pytest.raises(ValueError, match="finite"):
        auc([0, 1, 1], [0.1, bad, 0.3])


@pytest.mark.parametrize("labels", [[0, 1, 2], [0, 1, -1], [0.0, 0.5, 1.0], [0.0, np.nan, 1.0]])
def test_auc_non_binary_labels_raise(labels):
    with pytest.raises(ValueError, match="0 or 1"):
        auc(labels, [0.1, 0.2, 0.3])


def test_auc_bad_shapes_raise():
    with pytest.raises(ValueError, match="rows"):
        auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D"):
        auc(np.zeros((2, 2)), np.zeros((2, 2)))


# --- log_loss ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_log_loss_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = (rng.random(n) < 0.3).astype(np.int64)
    labels[:2] = [0, 1]
    logits = rng.normal(0, 3, n)
    probs = 1 / (1 + np.exp(-logits))
    expected = sk_log_loss(labels, probs, labels=[0, 1])
    assert log_loss(labels, probs) == pytest.approx(expected, rel=1e-9)
    assert log_loss(labels, logits=logits) == pytest.approx(expected, rel=1e-9)
    assert log_loss(labels, logits=torch.tensor(logits, dtype=torch.float64)) == pytest.approx(expected, rel=1e-9)


def test_log_loss_hand_worked():
    # -(log 0.8 + log(1 - 0.4)) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert log_loss([1, 0], logits=[0.0, 0.0]) == pytest.approx(np.log(2))


def test_log_loss_extreme_probabilities_are_finite():
    eps = 1e-7
    # right and confident: tiny loss; wrong and confident: -log(eps) each, not infinity
    assert log_loss([1, 0], [1.0, 0.0], eps=eps) == pytest.approx(-np.log1p(-eps))
    wrong = log_loss([1, 0], [0.0, 1.0], eps=eps)
    assert np.isfinite(wrong) and wrong == pytest.approx(-np.log(eps))


def test_log_loss_extreme_logits_are_exact():
    # softplus form: no overflow and no clipping for |x| = 1000
    assert log_loss([1, 0], logits=[1000.0, -1000.0]) == 0.0
    assert log_loss([0], logits=[1000.0]) == pytest.approx(1000.0)
    assert log_loss([1], logits=[-800.0]) == pytest.approx(800.0)


def test_log_loss_input_checks():
    with pytest.raises(ValueError, match="exactly one"):
        log_loss([0, 1])
    with pytest.raises(ValueError, match="exactly one"):
        log_loss([0, 1], [0.1, 0.2], logits=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log_loss([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="finite"):
        log_loss([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="finite"):
        log_loss([0, 1], logits=[0.1, np.inf])
    with pytest.raises(ValueError, match="0 or 1"):
        log_loss([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="rows"):
        log_loss([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="eps"):
        log_loss([0, 1], [0.1, 0.2], eps=0.0)
    with pytest.warns(RuntimeWarning, match="no rows"):
        assert np.isnan(log_loss([], []))


# --- gauc --------------------------------------------------------------------------------------


def test_gauc_hand_worked_with_impression_weights_and_skipped_user():
    labels = [1, 0, 0, 1, 0, 1, 1, 0, 0]
    scores = [0.9, 0.5, 0.1, 0.2, 0.3, 0.3, 0.5, 0.7, 0.1]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c", "d"]
    # a: 3 impressions, positive above both negatives -> AUC 1
    # b: 3 impressions, positives 0.2 (< 0.3) and 0.3 (tie with 0.3) -> (0 + 1/2) / 2 = 0.25
    # c: 2 impressions, positive 0.5 below negative 0.7 -> 0
    # d: 1 impression, one class only -> skipped
    expected = (3 * 1.0 + 3 * 0.25 + 2 * 0.0) / (3 + 3 + 2)
    value, counts = gauc(labels, scores, groups)
    assert value == pytest.approx(expected)
    assert counts == {"users": 3, "skipped_users": 1}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("decimals", [None, 1])
def test_gauc_matches_per_user_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    n = 600
    groups = rng.integers(0, 40, n) * 7 + 3  # sparse, unordered ids
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = rng.random(n) + 0.2 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    num, den, used, skipped = 0.0, 0.0, 0, 0
    for g in np.unique(groups):
        mask = groups == g
        if labels[mask].min() == labels[mask].max():
            skipped += 1
            continue
        num += mask.sum() * roc_auc_score(labels[mask], scores[mask])
        den += mask.sum()
        used += 1
    value, counts = gauc(labels, scores, torch.from_numpy(groups))
    assert value == pytest.approx(num / den, abs=1e-12)
    assert counts == {"users": used, "skipped_users": skipped}


def test_gauc_one_group_equals_auc():
    labels, scores = _random_case(7, 200, 1)
    value, counts = gauc(labels, scores, np.zeros(200, dtype=np.int64))
    assert value == pytest.approx(auc(labels, scores), abs=1e-12)
    assert counts == {"users": 1, "skipped_users": 0}


def test_gauc_all_single_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="single class"):
        value, counts = gauc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [1, 1, 2, 2])
    assert np.isnan(value) and counts == {"users": 0, "skipped_users": 2}


def test_gauc_mixed_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gauc([1, 0, 1], [0.9, 0.1, 0.5], [1, 1, 2])


def test_gauc_input_checks():
    with pytest.raises(ValueError, match="groups"):
        gauc([0, 1], [0.1, 0.2], [1])
    with pytest.raises(ValueError, match="finite"):
        gauc([0, 1], [0.1, np.nan], [1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        gauc([0, 3], [0.1, 0.2], [1, 1])
    with pytest.warns(RuntimeWarning, match="no rows"):
        value, counts = gauc([], [], [])
    assert np.isnan(value) and counts == {"users": 0, "skipped_users": 0}
