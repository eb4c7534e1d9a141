import numpy as np
import pytest
import torch
from torch import nn

from recforge.data.sampling import InteractionIndex
from recforge.evaluation.protocols import (
    evaluate_full_ranking,
    evaluate_full_ranking_multi_relevant,
    evaluate_sampled,
    evaluate_sampled_multi_relevant,
    relevant_sets,
    score_pairs,
)
from recforge.metrics import multi_relevant


class TableScorer(nn.Module):
    """Scores (u, i) from a fixed [U, I] table."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def forward(self, batch):
        return self.table[batch.sparse_features[:, 0], batch.sparse_features[:, 1]]


def test_sampled_protocol_on_hand_made_scores():
    # item scores identical for all users: item i scores i
    model = TableScorer(np.tile(np.arange(20, dtype=float), (3, 1)))
    users = np.array([0, 1, 2])
    candidates = np.array(
        [
            [19, 0, 1, 2, 3],  # best: rank 0
            [10, 11, 12, 0, 1],  # two above: rank 2
            [0, 5, 6, 7, 8],  # last: rank 4
        ]
    )
    metrics, greater, ties = evaluate_sampled(model, users, candidates, ks=(1, 3))
    assert greater.tolist() == [0, 2, 4] and ties.tolist() == [0, 0, 0]
    assert metrics["hit_rate@1"] == pytest.approx(1 / 3)
    assert metrics["hit_rate@3"] == pytest.approx(2 / 3)
    assert metrics["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 5) / 3)


def test_negative_equal_to_positive_is_ignored():
    # the NCF file repeats the test item among its negatives; it must not tie with itself
    model = TableScorer(np.tile(np.arange(10, dtype=float), (1, 1)))
    metrics, greater, ties = evaluate_sampled(model, np.array([0]), np.array([[9, 9, 1, 2]]), ks=(1,))
    assert (greater[0], ties[0]) == (0, 0) and metrics["hit_rate@1"] == 1.0


def test_full_ranking_masks_training_items_only():
    table = np.array([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    model = TableScorer(table)
    exclude = InteractionIndex(np.array([0, 0]), np.array([1, 2]), 6)  # items 1, 2 are training items
    metrics, greater, ties = evaluate_full_ranking(model, np.array([0]), np.array([4]), exclude, ks=(1, 2))
    assert greater[0] == 1  # only item 3 (score 3) beats item 4 once 1 and 2 are masked
    assert metrics["hit_rate@1"] == 0 and metrics["hit_rate@2"] == 1
    # chunked scoring gives the same result
    metrics2, g2, _ = evaluate_full_ranking(model, np.array([0]), np.array([4]), exclude, ks=(1, 2), max_scores=1)
    assert g2[0] == 1 and metrics2 == metrics


def test_score_pairs_restores_training_mode_and_chunks():
    model = TableScorer(np.arange(12, dtype=float).reshape(3, 4))
    model.train()
    scores = score_pairs(model, np.array([0, 1, 2, 2]), np.array([0, 1, 2, 3]), batch_size=3)
    assert scores.tolist() == [0, 5, 10, 11] and model.training


# --- several relevant items per user -------------------------------------------------------------


def test_relevant_sets_drop_repeats_and_keep_empty_users():
    users, offsets, items = relevant_sets(np.array([2, 0, 2, 2]), np.array([5, 1, 3, 5]), evaluated_users=np.array([2, 1, 0]))
    assert users.tolist() == [2, 1, 0] and offsets.tolist() == [0, 2, 2, 3] and items.tolist() == [3, 5, 1]
    with pytest.raises(ValueError, match="not among the evaluated users"):
        relevant_sets(np.array([4]), np.array([0]), evaluated_users=np.array([0]))


def test_full_ranking_multi_relevant_hand_made():
    # one user, item i scores 5 - i; relevant {1, 4}; training items {0, 1}: 1 is relevant, so never masked
    model = TableScorer(np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]]))
    exclude = InteractionIndex(np.array([0, 0]), np.array([0, 1]), 6)
    m, stats = evaluate_full_ranking_multi_relevant(model, np.array([0]), np.array([0, 2]), np.array([1, 4]), exclude, ks=(1, 3))
    # ranking once item 0 is masked: 1, 2, 3, 4, 5 -> relevant at ranks 0 and 3 (item 1 still above item 4)
    assert stats.greater.tolist() == [0, 3] and stats.ties.tolist() == [0, 0]
    assert m["recall@1"] == 0.5 and m["recall@3"] == 0.5 and m["precision@3"] == pytest.approx(1 / 3)
    assert m["map@3"] == pytest.approx(1 / 2) and m["mrr"] == 1.0 and m["users_without_relevant"] == 0


def _random_case(seed, n_users=9, n_items=23):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 4, size=(n_users, n_items)).astype(float)  # many ties
    train = rng.random((n_users, n_items)) < 0.3
    relevant = rng.random((n_users, n_items)) < 0.2
    relevant[3] = False  # a user without a relevant item
    tu, ti = np.nonzero(train)
    users, offsets, items = relevant_sets(*np.nonzero(relevant), evaluated_users=np.arange(n_users))
    return table, train, relevant, InteractionIndex(tu, ti, n_items), users, offsets, items


@pytest.mark.parametrize("user_chunk", [1, 7, 9])
@pytest.mark.parametrize("item_chunk", [1, 7, 23])
def test_full_ranking_multi_relevant_chunks_agree_with_dense(user_chunk, item_chunk):
    table, train, relevant, exclude, users, offsets, items = _random_case(0)
    m, stats = evaluate_full_ranking_multi_relevant(
        TableScorer(table), users, offsets, items, exclude, ks=(1, 5, 30), user_chunk=user_chunk, item_chunk=item_chunk
    )
    # dense reference: the whole [U, I] matrix, training items masked except relevant ones
    rows, cols = np.nonzero(relevant)
    dense = multi_relevant.rank_among_candidates(table[rows, cols], offsets, table, ~train & ~relevant)
    for field in ("greater", "ties", "relevant_greater", "relevant_ties"):
        assert getattr(stats, field).tolist() == getattr(dense, field).tolist()
    assert m == multi_relevant.multi_relevant_metrics(dense, (1, 5, 30))
    assert m["users_without_relevant"] == 1 and m["users"] == 8


@pytest.mark.parametrize("seed", range(3))
def test_full_ranking_multi_relevant_matches_leave_one_out(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 5, size=(12, 30)).astype(float)
    positives = rng.integers(0, 30, size=12)
    train = rng.integers(0, 30, size=40)
    train_users = rng.integers(0, 12, size=40)
    keep = train != positives[train_users]
    exclude = InteractionIndex(train_users[keep], train[keep], 30)
    model = TableScorer(table)
    old, greater, ties = evaluate_full_ranking(model, np.arange(12), positives, exclude, ks=(1, 10))
    new, stats = evaluate_full_ranking_multi_relevant(model, np.arange(12), np.arange(13), positives, exclude, ks=(1, 10), item_chunk=7)
    assert stats.greater.tolist() == greater.tolist() and stats.ties.tolist() == ties.tolist()
    for k in (1, 10):
        assert new[f"recall@{k}"] == pytest.approx(old[f"hit_rate@{k}"], abs=1e-12)
        assert new[f"hit_rate@{k}"] == pytest.approx(old[f"hit_rate@{k}"], abs=1e-12)
        assert new[f"ndcg@{k}"] == pytest.approx(old[f"ndcg@{k}"], abs=1e-12)
    assert new["mrr"] == pytest.approx(old["mrr"], abs=1e-12)


def test_sampled_multi_relevant_ignores_negatives_that_are_relevant():
    model = TableScorer(np.tile(np.arange(20, dtype=float), (2, 1)))  # item i scores i
    users = np.array([0, 1])
    offsets = np.array([0, 2, 2])  # user 1 has no relevant item
    relevant = np.array([19, 5])
    negatives = np.array([[5, 10, 0, 1], [1, 2, 3, 4]])  # 5 is one of user 0's relevant items
    m, stats = evaluate_sampled_multi_relevant(model, users, offsets, relevant, negatives, ks=(1, 2))
    # user 0's list: 19, 10, 5, 1, 0 (the negative 5 is the relevant 5, counted once)
    assert stats.greater.tolist() == [0, 2] and stats.ties.tolist() == [0, 0]
    assert m["recall@1"] == 0.5 and m["recall@2"] == 0.5 and m["precision@2"] == 0.5
    assert m["map@2"] == pytest.approx(1 / 2) and m["users"] == 1 and m["users_without_relevant"] == 1
