"""Top-K ranking metrics for one held-out positive per user, with exact tie handling.

Every metric here takes the positive item's *rank statistics* per user: how many candidates
score strictly higher (``greater``) and how many score exactly the same (``ties``). Tied items
are ordered at random, so the positive's 0-based rank is uniform on
``greater, ..., greater + ties`` and each metric is the expectation over that order. A constant
model over 100 candidates thus gets HR@10 = 0.1 and NDCG@10 = sum_{r<10} 1/log2(r+2) / 100
= 0.04544, never 1.0 (the optimistic ``>`` convention) nor 0.0 (the pessimistic ``>=`` one).

With one relevant item, the NCF definitions (He et al., 2017, Sec. 4.1) are
HR@K = [rank < K] and NDCG@K = 1 / log2(rank + 2) if rank < K else 0 (IDCG = 1), and
MRR = 1 / (rank + 1). Recall@K equals HR@K when each user has one held-out item.

Shapes: U users, C candidates (negatives) per user, K cut-off.
"""

from __future__ import annotations

import numpy as np


def rank_statistics(
    positive_scores: np.ndarray, candidate_scores: np.ndarray, candidate_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Count, per user, candidates scoring above and equal to the positive.

    Args:
        positive_scores: float [U], the held-out item's score.
        candidate_scores: float [U, C], scores of the other candidates (the negatives).
        candidate_mask: bool [U, C], True where a candidate takes part (False: ignored, for
            example a user's training items in full ranking). None means all take part.

    Returns:
        (greater, ties): int64 [U] each.

    Raises:
        ValueError: on NaN scores or mismatched shapes.
    """
    positive_scores = np.asarray(positive_scores)
    candidate_scores = np.asarray(candidate_scores)
    if candidate_scores.ndim != 2 or positive_scores.shape != (candidate_scores.shape[0],):
        raise ValueError(
            f"expected positive_scores [U] and candidate_scores [U, C], got {positive_scores.shape} and "
            f"{candidate_scores.shape}"
        )
    if np.isnan(positive_scores).any() or np.isnan(candidate_scores).any():
        raise ValueError("scores contain NaN; cannot rank")
    pos = positive_scores[:, None]
    above = candidate_scores > pos
    equal = candidate_scores == pos
    if candidate_mask is not None:
        above &= candidate_mask
        equal &= candidate_mask
    return above.sum(axis=1).astype(np.int64), equal.sum(axis=1).astype(np.int64)


def _expected_over_ties(greater: np.ndarray, ties: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """Mean of a per-rank gain g(r) over r in [greater, greater + ties], via its prefix sums.

    ``prefix[n] = sum_{r < n} g(r)``; ranks beyond the table have zero gain.
    """
    last = len(prefix) - 1
    lo = np.minimum(greater, last)
    hi = np.minimum(greater + ties + 1, last)
    return (prefix[hi] - prefix[lo]) / (ties + 1)


def hit_rate(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user expected HR@K = P(rank < K). float64 [U]."""
    _check_k(k)
    return _expected_over_ties(np.asarray(greater), np.asarray(ties), np.arange(k + 1, dtype=np.float64))


def ndcg(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """Per-user expected NDCG@K = E[1/log2(rank + 2); rank < K]. float64 [U]."""
    _check_k(k)
    gains = 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)
    return _expected_over_ties(np.asarray(greater), np.asarray(ties), np.r_[0.0, np.cumsum(gains)])


def reciprocal_rank(greater: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Per-user expected reciprocal rank E[1/(rank + 1)] (MRR when averaged). float64 [U]."""
    greater, ties = np.asarray(greater), np.asarray(ties)
    n = int((greater + ties).max(initial=0)) + 2
    harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, n, dtype=np.float64))]
    return _expected_over_ties(greater, ties, harmonic)


def ranking_metrics(greater: np.ndarray, ties: np.ndarray, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """Mean HR@K, NDCG@K for each K, and MRR, keyed ``hit_rate@K``, ``ndcg@K``, ``mrr``.

    Raises:
        ValueError: if there are no users.
    """
    if len(greater) == 0:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit_rate@{k}"] = float(hit_rate(greater, ties, k).mean())
        out[f"ndcg@{k}"] = float(ndcg(greater, ties, k).mean())
    out["mrr"] = float(reciprocal_rank(greater, ties).mean())
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cut-off K must be >= 1, got {k}")
