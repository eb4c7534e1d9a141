import itertools

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from recforge.metrics import multi_relevant as mr
from recforge.metrics import ranking


def _stats_from_rows(scores: np.ndarray, relevant: np.ndarray) -> mr.RelevantRankStatistics:
    """Statistics from a full [U, I] score matrix and a bool [U, I] relevance matrix."""
    rows, cols = np.nonzero(relevant)
    offsets = np.r_[0, np.cumsum(relevant.sum(axis=1))]
    return mr.rank_among_candidates(scores[rows, cols], offsets, scores, ~relevant)


def _brute_force(scores: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, float]:
    """Exact expectation by enumerating every order of the tied items (each equally likely)."""
    levels = sorted(set(scores.tolist()), reverse=True)
    blocks = [np.flatnonzero(scores == s).tolist() for s in levels]
    totals = dict.fromkeys(("recall", "precision", "ndcg", "map", "hit_rate", "mrr"), 0.0)
    n_orders = 0
    n_rel = int(relevant.sum())
    idcg = sum(1 / np.log2(i + 2) for i in range(min(n_rel, k)))
    for parts in itertools.product(*(itertools.permutations(b) for b in blocks)):
        order = [i for part in parts for i in part]
        rel = relevant[order]
        top = rel[:k]
        hits = np.flatnonzero(rel)
        totals["recall"] += top.sum() / n_rel
        totals["precision"] += top.sum() / k
        totals["ndcg"] += sum(1 / np.log2(r + 2) for r in np.flatnonzero(top)) / idcg
        totals["map"] += sum((n + 1) / (r + 1) for n, r in enumerate(hits) if r < k) / min(n_rel, k)
        totals["hit_rate"] += float(top.any())
        totals["mrr"] += 1 / (hits[0] + 1)
        n_orders += 1
    return {key: value / n_orders for key, value in totals.items()}


def test_hand_worked_list():
    # relevant {0,1,2,3,4}; ranked list starts 1, 0, 20, 30, 40; every other item (2, 3, 4 too) is lower
    scores = np.zeros(50)
    others = np.setdiff1d(np.arange(50), [0, 1, 2, 3, 4, 20, 30, 40])
    scores[others] = 50.0 - np.arange(len(others))
    scores[[1, 0, 20, 30, 40]] = [100, 99, 98, 97, 96]
    scores[[2, 3, 4]] = [-10, -11, -12]
    relevant = np.isin(np.arange(50), [0, 1, 2, 3, 4])[None]
    stats = _stats_from_rows(scores[None], relevant)
    ks = [1, 2, 3, 4, 5]
    assert [mr.recall(stats, k)[0] for k in ks] == pytest.approx([0.2, 0.4, 0.4, 0.4, 0.4])
    assert [mr.precision(stats, k)[0] for k in ks] == pytest.approx([1, 1, 2 / 3, 2 / 4, 2 / 5])
    idcg = np.cumsum([1 / np.log2(i + 2) for i in range(5)])
    dcg = 1 + 1 / np.log2(3)
    assert [mr.ndcg(stats, k)[0] for k in ks] == pytest.approx([1, 1, dcg / idcg[2], dcg / idcg[3], dcg / idcg[4]])
    # AP@K: precisions 1/1 and 2/2 at the two hits, divided by min(5, K)
    assert [mr.average_precision(stats, k)[0] for k in ks] == pytest.approx([1, 1, 2 / 3, 2 / 4, 2 / 5])
    assert [mr.hit_rate(stats, k)[0] for k in ks] == [1.0] * 5
    assert mr.reciprocal_rank(stats)[0] == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_exact_over_tie_orders_on_tiny_cases(seed):
    rng = np.random.default_rng(seed)
    n_items = 7
    scores = rng.integers(0, 3, size=(4, n_items)).astype(float)  # blocks of several items
    relevant = np.zeros((4, n_items), dtype=bool)
    for u in range(4):
        relevant[u, rng.choice(n_items, size=rng.integers(1, 5), replace=False)] = True
    stats = _stats_from_rows(scores, relevant)
    for k in (1, 2, 3, 5, 10):  # 10 > catalogue
        expected = [_brute_force(scores[u], relevant[u], k) for u in range(4)]
        for name, fn in (
            ("recall", mr.recall),
            ("precision", mr.precision),
            ("ndcg", mr.ndcg),
            ("map", mr.average_precision),
            ("hit_rate", mr.hit_rate),
        ):
            np.testing.assert_allclose(fn(stats, k), [e[name] for e in expected], atol=1e-12, err_msg=f"{name}@{k}")
        np.testing.assert_allclose(mr.reciprocal_rank(stats), [e["mrr"] for e in expected], atol=1e-12)


def test_reciprocal_rank_pieces_do_not_change_the_value():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 2, size=(6, 40)).astype(float)  # big tie blocks, several relevant in them
    relevant = rng.random((6, 40)) < 0.2
    relevant[:, 0] = True
    stats = _stats_from_rows(scores, relevant)
    np.testing.assert_allclose(mr.reciprocal_rank(stats, max_terms=1), mr.reciprocal_rank(stats), atol=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_ndcg_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(30, 25)).astype(float)  # many ties
    relevant = rng.random((30, 25)) < 0.25
    relevant[np.arange(30), rng.integers(0, 25, size=30)] = True
    stats = _stats_from_rows(scores, relevant)
    for k in (1, 3, 10, 40):
        ref = [ndcg_score(relevant[u : u + 1], scores[u : u + 1], k=k, ignore_ties=False) for u in range(30)]
        np.testing.assert_allclose(mr.ndcg(stats, k), ref, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_one_relevant_item_reduces_to_leave_one_out(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(200, 30)).astype(float)
    greater, ties = ranking.rank_statistics(scores[:, 0], scores[:, 1:])
    stats = mr.rank_among_candidates(scores[:, 0], np.arange(201), scores[:, 1:])
    for k in (1, 5, 10):
        np.testing.assert_allclose(mr.recall(stats, k), ranking.hit_rate(greater, ties, k), atol=1e-12)
        np.testing.assert_allclose(mr.hit_rate(stats, k), ranking.hit_rate(greater, ties, k), atol=1e-12)
        np.testing.assert_allclose(mr.ndcg(stats, k), ranking.ndcg(greater, ties, k), atol=1e-12)
    np.testing.assert_allclose(mr.reciprocal_rank(stats), ranking.reciprocal_rank(greater, ties), atol=1e-12)
    old, new = ranking.ranking_metrics(greater, ties, (10,)), mr.multi_relevant_metrics(stats, (10,))
    assert new["hit_rate@10"] == pytest.approx(old["hit_rate@10"]) and new["recall@10"] == pytest.approx(old["hit_rate@10"])
    assert new["ndcg@10"] == pytest.approx(old["ndcg@10"]) and new["mrr"] == pytest.approx(old["mrr"])


def test_users_without_relevant_are_excluded_and_counted():
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    relevant = np.array([[True, False, False], [False, False, False], [False, False, True]])
    stats = _stats_from_rows(scores, relevant)
    per_user = mr.recall(stats, 1)
    assert per_user[0] == 1.0 and np.isnan(per_user[1]) and per_user[2] == 0.0
    assert np.isnan(mr.hit_rate(stats, 1)[1]) and np.isnan(mr.reciprocal_rank(stats)[1])
    m = mr.multi_relevant_metrics(stats, (1,))
    assert m["recall@1"] == 0.5 and m["mrr"] == pytest.approx((1 + 1 / 3) / 2)  # not (1 + 0 + 1/3) / 3
    assert m["users"] == 2 and m["users_without_relevant"] == 1
    with pytest.raises(ValueError, match="no user with a relevant item"):
        mr.multi_relevant_metrics(_stats_from_rows(scores, np.zeros_like(relevant)))


def test_k_larger_than_catalogue():
    scores = np.array([[1.0, 4.0, 3.0, 2.0]])
    relevant = np.array([[True, False, True, False]])  # ranks 3 and 1
    stats = _stats_from_rows(scores, relevant)
    assert mr.recall(stats, 10)[0] == 1.0 and mr.hit_rate(stats, 10)[0] == 1.0
    assert mr.precision(stats, 10)[0] == pytest.approx(2 / 10)
    assert mr.ndcg(stats, 10)[0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))
    assert mr.average_precision(stats, 10)[0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        mr.rank_among_candidates(np.array([np.nan]), np.array([0, 1]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="offsets"):
        mr.relevant_rank_statistics(np.zeros(1), np.array([1, 1]), np.zeros(1), np.zeros(1))
    stats = mr.rank_among_candidates(np.zeros(1), np.array([0, 1]), np.zeros((1, 3)))
    with pytest.raises(ValueError):
        mr.recall(stats, 0)
