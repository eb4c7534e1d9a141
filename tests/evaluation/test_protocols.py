import numpy as np
import pytest
import torch
from torch import nn

from recforge.data.sampling import InteractionIndex
from recforge.evaluation.protocols import evaluate_full_ranking, evaluate_sampled, score_pairs


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
