import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from recforge.metrics.ranking import hit_rate, ndcg, rank_statistics, ranking_metrics, reciprocal_rank


def test_hand_worked_ranks():
    # positive scored 0.9 against negatives: rank 0, 2 and 12 (no ties)
    pos = np.array([0.9, 0.5, 0.1])
    negs = np.array([[0.1] * 20, [0.8, 0.7] + [0.0] * 18, [0.5] * 12 + [0.0] * 8])
    greater, ties = rank_statistics(pos, negs)
    assert greater.tolist() == [0, 2, 12] and ties.tolist() == [0, 0, 0]
    assert hit_rate(greater, ties, 10).tolist() == [1.0, 1.0, 0.0]
    assert ndcg(greater, ties, 10) == pytest.approx([1.0, 1 / np.log2(4), 0.0])
    assert reciprocal_rank(greater, ties) == pytest.approx([1.0, 1 / 3, 1 / 13])


def test_constant_model_gets_chance_level_not_one():
    # 100 candidates with identical scores: the positive's rank is uniform on 0..99
    greater, ties = rank_statistics(np.zeros(5), np.zeros((5, 99)))
    m = ranking_metrics(greater, ties, ks=(10,))
    assert m["hit_rate@10"] == pytest.approx(0.1)
    expected_ndcg = sum(1 / np.log2(r + 2) for r in range(10)) / 100
    assert m["ndcg@10"] == pytest.approx(expected_ndcg)
    assert m["ndcg@10"] == pytest.approx(0.04544, abs=1e-5)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in range(1, 101)) / 100)


def test_partial_ties_hand_worked():
    # 8 negatives above, positive tied with 4 others: rank uniform on 8..12
    greater, ties = np.array([8]), np.array([4])
    assert hit_rate(greater, ties, 10)[0] == pytest.approx(2 / 5)
    assert ndcg(greater, ties, 10)[0] == pytest.approx((1 / np.log2(10) + 1 / np.log2(11)) / 5)


def test_mask_removes_candidates():
    greater, ties = rank_statistics(np.array([0.5]), np.array([[0.9, 0.5, 0.1]]), np.array([[False, True, True]]))
    assert (greater[0], ties[0]) == (0, 1)


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(50, 30)).astype(float)  # many ties
    pos = scores[:, 0]
    greater, ties = rank_statistics(pos, scores[:, 1:])
    relevance = np.zeros_like(scores)
    relevance[:, 0] = 1
    for k in (1, 5, 10):
        ours = ndcg(greater, ties, k)
        ref = [ndcg_score(relevance[i : i + 1], scores[i : i + 1], k=k, ignore_ties=False) for i in range(len(scores))]
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_hit_rate_matches_brute_force_over_tie_orders():
    rng = np.random.default_rng(0)
    pos = np.array([3.0])
    negs = rng.integers(0, 6, size=(1, 15)).astype(float)
    greater, ties = rank_statistics(pos, negs)
    # brute force: average over random tie-breaking permutations
    hits = []
    for _ in range(20000):
        noise = rng.random(16)
        all_scores = np.r_[pos, negs[0]]
        order = np.lexsort((noise, -all_scores))
        hits.append(np.flatnonzero(order == 0)[0] < 5)
    assert hit_rate(greater, ties, 5)[0] == pytest.approx(np.mean(hits), abs=0.01)


def test_nan_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        rank_statistics(np.array([np.nan]), np.zeros((1, 3)))


def test_bad_k_and_empty():
    with pytest.raises(ValueError):
        hit_rate(np.array([0]), np.array([0]), 0)
    with pytest.raises(ValueError, match="no users"):
        ranking_metrics(np.zeros(0, np.int64), np.zeros(0, np.int64))
