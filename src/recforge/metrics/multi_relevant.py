"""Top-K ranking metrics for several relevant (held-out) items per user, with exact tie handling.

Real test logs hold more than one item per user (a temporal split, the last N items). For user u
with relevant set R_u, binary relevance and a 0-based rank rho_r for each r in R_u:

* Recall@K    = |{r : rho_r < K}| / |R_u|                                  (RecBole ``Recall``)
* Precision@K = |{r : rho_r < K}| / K      (K even when fewer than K candidates exist, as trec_eval)
* NDCG@K      = DCG / IDCG, DCG = sum_{r: rho_r < K} 1 / log2(rho_r + 2) and
  IDCG = sum_{i < min(|R_u|, K)} 1 / log2(i + 2) (Jarvelin & Kekalainen, 2002; RecBole ``NDCG``)
* AP@K        = 1 / min(|R_u|, K) * sum_{r: rho_r < K} P@(rho_r + 1), the normaliser min(|R_u|, K)
  of RecBole's ``MAP`` (Zhao et al., 2021) and Kaggle's ``apk``: a perfect top-K list scores 1
  even when |R_u| > K.
* HR@K        = [min_r rho_r < K] (any relevant item in the top K)
* RR          = 1 / (min_r rho_r + 1) (the first relevant item; MRR when averaged)

Ties follow :mod:`recforge.metrics.ranking`: items with equal scores are ordered uniformly at
random and every metric is its exact expectation over that order. How each one is exact:

* Recall, Precision, NDCG are sums over r of a function of rho_r alone, and each rho_r is
  marginally uniform on its tie block ``greater_r, ..., greater_r + ties_r`` (``greater``: items
  of any kind scoring strictly above r; ``ties``: other items scoring the same). Linearity of
  expectation gives them from the single-item gains of :mod:`~recforge.metrics.ranking`.
* AP's summand for r is h(rho_r) * (1 + #relevant ranked before r), h(rho) = [rho < K] / (rho + 1).
  The a_r relevant items scoring strictly above r always come first; each of the c_r relevant
  items tied with r comes first with probability x / t_r given rho_r = greater_r + x (the other
  block members take the remaining t_r places uniformly). So
  E = (1 + a_r) E[h(rho_r)] + c_r / t_r * E[(rho_r - greater_r) h(rho_r)], again over the uniform
  rho_r: exact, via prefix sums.
* HR and RR depend on the *first* relevant item, and the relevant items of one tie block are not
  independent. Only the top relevant score's block matters: it starts after g items (none of them
  relevant), holds T = t + 1 items, b of them relevant. The number M of non-relevant items placed
  before the first relevant one is negative-hypergeometric, P(M = j) = C(T-1-j, b-1) / C(T, b).
  HR@K = 1 - P(no relevant in the s = K - g top slots of the block) = 1 - C(T-b, s) / C(T, s)
  (hypergeometric) when g < K < g + T, else 1 or 0; RR = E[1 / (g + M + 1)], summed over
  j = 0..T-b (closed form for b = 1; for b >= 2 the cost is T terms per user, bounded by the
  candidates scored, and computed in pieces of bounded memory).

With one relevant item per user all of these reduce to :mod:`recforge.metrics.ranking`
(Recall@K = HR@K, AP@K = RR truncated at K).

Users without a relevant item: their metrics are undefined (0/0 for Recall, IDCG = 0), so
per-user functions return NaN for them, :func:`multi_relevant_metrics` leaves them out of every
mean and reports how many there were as ``users_without_relevant`` (never counted as 0).

Layout (CSR): U users, P relevant items in all; the relevant items of user u are entries
``offsets[u]:offsets[u + 1]`` of every per-item array. K is the cut-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import hypergeom, nhypergeom

from recforge.metrics import ranking
from recforge.metrics.ranking import _check_k, _expected_over_ties


@dataclass(frozen=True)
class RelevantRankStatistics:
    """Rank statistics of every relevant item, grouped by user (CSR).

    Attributes:
        offsets: int64 [U + 1], non-decreasing, ``offsets[0] = 0``, ``offsets[-1] = P``.
        greater: int64 [P], candidates of any kind (relevant or not) scoring strictly above.
        ties: int64 [P], other candidates of any kind scoring the same.
        relevant_greater: int64 [P], relevant items of the same user scoring strictly above.
        relevant_ties: int64 [P], other relevant items of the same user scoring the same.
    """

    offsets: np.ndarray
    greater: np.ndarray
    ties: np.ndarray
    relevant_greater: np.ndarray
    relevant_ties: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_relevant(self) -> np.ndarray:
        """int64 [U], |R_u|."""
        return np.diff(self.offsets)

    @property
    def user_of_item(self) -> np.ndarray:
        """int64 [P], the user (0..U-1) each relevant item belongs to."""
        return np.repeat(np.arange(self.num_users, dtype=np.int64), self.num_relevant)


def candidate_counts(
    relevant_scores: np.ndarray,
    rows: np.ndarray,
    candidate_scores: np.ndarray,
    candidate_mask: np.ndarray | None = None,
    max_cells: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray]:
    """Count, for each relevant item, the candidates of its user's row scoring above and equal.

    The building block for both layouts: sampled negatives ([U, C], one row per user) and one
    chunk of the catalogue in full ranking (summed over chunks).

    Args:
        relevant_scores: float [P].
        rows: int64 [P], the row of ``candidate_scores`` each relevant item is compared with.
        candidate_scores: float [R, C].
        candidate_mask: bool [R, C], True where a candidate takes part (None: all). Mask out the
            relevant items themselves here; they are compared among themselves by
            :func:`relevant_rank_statistics`.
        max_cells: bound on the [P', C] comparison blocks held at once (cells).

    Returns:
        (greater, ties): int64 [P] each.

    Raises:
        ValueError: on NaN scores or mismatched shapes.
    """
    relevant_scores = np.asarray(relevant_scores)
    rows = np.asarray(rows, dtype=np.int64)
    candidate_scores = np.asarray(candidate_scores)
    if candidate_scores.ndim != 2 or relevant_scores.shape != rows.shape or relevant_scores.ndim != 1:
        raise ValueError(
            f"expected relevant_scores [P], rows [P] and candidate_scores [R, C], got {relevant_scores.shape}, "
            f"{rows.shape} and {candidate_scores.shape}"
        )
    if candidate_mask is not None and np.shape(candidate_mask) != candidate_scores.shape:
        raise ValueError(f"candidate_mask has shape {np.shape(candidate_mask)}, expected {candidate_scores.shape}")
    if np.isnan(relevant_scores).any() or np.isnan(candidate_scores).any():
        raise ValueError("scores contain NaN; cannot rank")
    greater = np.zeros(len(rows), dtype=np.int64)
    ties = np.zeros(len(rows), dtype=np.int64)
    step = max(1, max_cells // max(1, candidate_scores.shape[1]))
    for start in range(0, len(rows), step):
        r = rows[start : start + step]
        scores = candidate_scores[r]
        s = relevant_scores[start : start + step, None]
        above, equal = scores > s, scores == s
        if candidate_mask is not None:
            mask = candidate_mask[r]
            above &= mask
            equal &= mask
        greater[start : start + len(r)] = above.sum(axis=1)
        ties[start : start + len(r)] = equal.sum(axis=1)
    return greater, ties


def relevant_rank_statistics(
    relevant_scores: np.ndarray, offsets: np.ndarray, other_greater: np.ndarray, other_ties: np.ndarray
) -> RelevantRankStatistics:
    """Combine counts against the non-relevant candidates with the relevant items' own order.

    Args:
        relevant_scores: float [P], scores of the relevant items, user by user (CSR).
        offsets: int64 [U + 1].
        other_greater, other_ties: int64 [P], non-relevant candidates scoring above / equal to
            each relevant item (from :func:`candidate_counts`, summed over catalogue chunks).

    Returns:
        The statistics; relevant items are compared within their user by one sort (no
        |R_u|^2 comparison).

    Raises:
        ValueError: on NaN scores or inconsistent shapes.
    """
    relevant_scores = np.asarray(relevant_scores, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise ValueError("offsets must be a non-decreasing int array [U + 1] starting at 0")
    if relevant_scores.shape != (offsets[-1],) or np.shape(other_greater) != relevant_scores.shape or np.shape(
        other_ties
    ) != relevant_scores.shape:
        raise ValueError(
            f"expected [P] = [{offsets[-1]}] relevant scores and counts, got {relevant_scores.shape}, "
            f"{np.shape(other_greater)} and {np.shape(other_ties)}"
        )
    if np.isnan(relevant_scores).any():
        raise ValueError("scores contain NaN; cannot rank")
    user = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    order = np.lexsort((-relevant_scores, user))  # by user, then score descending
    s, u = relevant_scores[order], user[order]
    new_block = np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])]
    block = np.cumsum(new_block) - 1
    block_start = np.flatnonzero(new_block)
    block_size = np.diff(np.r_[block_start, len(s)])
    relevant_greater = np.empty(len(s), dtype=np.int64)
    relevant_ties = np.empty(len(s), dtype=np.int64)
    relevant_greater[order] = block_start[block] - offsets[u]
    relevant_ties[order] = block_size[block] - 1
    return RelevantRankStatistics(
        offsets=offsets,
        greater=np.asarray(other_greater, dtype=np.int64) + relevant_greater,
        ties=np.asarray(other_ties, dtype=np.int64) + relevant_ties,
        relevant_greater=relevant_greater,
        relevant_ties=relevant_ties,
    )


def rank_among_candidates(
    relevant_scores: np.ndarray,
    offsets: np.ndarray,
    candidate_scores: np.ndarray,
    candidate_mask: np.ndarray | None = None,
) -> RelevantRankStatistics:
    """Statistics for the padded layout: user u's relevant items against row u of the candidates.

    Args:
        relevant_scores: float [P] (CSR by ``offsets``).
        offsets: int64 [U + 1].
        candidate_scores: float [U, C], the non-relevant candidates (sampled negatives).
        candidate_mask: bool [U, C], False for padding or for a candidate that is one of the
            user's relevant items (None: all take part).

    Returns:
        The statistics.

    Raises:
        ValueError: on NaN scores or mismatched shapes.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if np.ndim(candidate_scores) != 2 or len(candidate_scores) != len(offsets) - 1:
        raise ValueError(f"expected candidate_scores [U, C] with U = {len(offsets) - 1}, got {np.shape(candidate_scores)}")
    rows = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    greater, ties = candidate_counts(relevant_scores, rows, candidate_scores, candidate_mask)
    return relevant_rank_statistics(relevant_scores, offsets, greater, ties)


def _per_user(stats: RelevantRankStatistics, per_item: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Sum ``per_item`` over each user's relevant items and divide; NaN for users without any."""
    total = np.bincount(stats.user_of_item, weights=per_item, minlength=stats.num_users)
    out = np.full(stats.num_users, np.nan)
    has = stats.num_relevant > 0
    out[has] = total[has] / np.broadcast_to(denominator, has.shape)[has]
    return out


def recall(stats: RelevantRankStatistics, k: int) -> np.ndarray:
    """Per-user expected Recall@K = E|top K ∩ R_u| / |R_u|. float64 [U], NaN where R_u is empty."""
    return _per_user(stats, ranking.hit_rate(stats.greater, stats.ties, k), stats.num_relevant)


def precision(stats: RelevantRankStatistics, k: int) -> np.ndarray:
    """Per-user expected Precision@K = E|top K ∩ R_u| / K. float64 [U], NaN where R_u is empty."""
    return _per_user(stats, ranking.hit_rate(stats.greater, stats.ties, k), np.float64(k))


def _ideal_dcg(num_relevant: np.ndarray, k: int) -> np.ndarray:
    discounts = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0))]
    return discounts[np.minimum(num_relevant, k)]


def ndcg(stats: RelevantRankStatistics, k: int) -> np.ndarray:
    """Per-user expected NDCG@K (binary gains, IDCG over min(|R_u|, K) items). float64 [U]."""
    return _per_user(stats, ranking.ndcg(stats.greater, stats.ties, k), _ideal_dcg(stats.num_relevant, k))


def average_precision(stats: RelevantRankStatistics, k: int) -> np.ndarray:
    """Per-user expected AP@K, normalised by min(|R_u|, K) (see the module notes). float64 [U]."""
    _check_k(k)
    rank = np.arange(k, dtype=np.float64)
    h = np.r_[0.0, np.cumsum(1.0 / (rank + 1.0))]  # prefix sums of h(rho) = [rho < K] / (rho + 1)
    rho_h = np.r_[0.0, np.cumsum(rank / (rank + 1.0))]  # of rho * h(rho)
    g, t = stats.greater, stats.ties
    expected_h = _expected_over_ties(g, t, h)
    expected_offset_h = _expected_over_ties(g, t, rho_h) - g * expected_h  # E[(rho - g) h(rho)]
    tied_share = np.divide(stats.relevant_ties, t, out=np.zeros(len(t)), where=t > 0)
    per_item = (1.0 + stats.relevant_greater) * expected_h + tied_share * expected_offset_h
    return _per_user(stats, per_item, np.minimum(stats.num_relevant, k).astype(np.float64))


def _first_relevant_block(stats: RelevantRankStatistics) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For users with a relevant item: (users, g, T, b) of the block of their top relevant score.

    g: items above the block, T: block size, b: relevant items in the block. int64 [U'] each.
    """
    top = np.flatnonzero(stats.relevant_greater == 0)
    users, first = np.unique(stats.user_of_item[top], return_index=True)
    p = top[first]
    return users, stats.greater[p], stats.ties[p] + 1, stats.relevant_ties[p] + 1


def hit_rate(stats: RelevantRankStatistics, k: int) -> np.ndarray:
    """Per-user expected HR@K = P(some relevant item ranks < K). float64 [U], NaN where R_u is empty."""
    _check_k(k)
    users, g, size, b = _first_relevant_block(stats)
    slots = np.clip(k - g, 0, size)  # top-K places that fall inside the block
    miss = np.where(slots > 0, hypergeom.pmf(0, size, b, slots), 1.0)
    out = np.full(stats.num_users, np.nan)
    out[users] = 1.0 - miss
    return out


def reciprocal_rank(stats: RelevantRankStatistics, max_terms: int = 1 << 22) -> np.ndarray:
    """Per-user expected reciprocal rank of the first relevant item. float64 [U], NaN where R_u is empty.

    Args:
        stats: the rank statistics.
        max_terms: bound on the terms of E[1 / (g + M + 1)] held in memory at once.
    """
    users, g, size, b = _first_relevant_block(stats)
    value = ranking.reciprocal_rank(g, size - 1)  # exact when the block holds one relevant item
    several = np.flatnonzero(b > 1)
    lengths = size[several] - b[several] + 1  # M takes the values 0..T-b
    ends = np.cumsum(lengths)
    start = 0
    while start < len(several):
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + max_terms, "right")))
        part = several[start:stop]
        n = lengths[start:stop]
        piece = np.repeat(np.arange(len(part)), n)
        j = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        t_, b_ = size[part][piece], b[part][piece]
        terms = nhypergeom.pmf(j, t_, t_ - b_, 1) / (g[part][piece] + j + 1.0)
        value[part] = np.bincount(piece, weights=terms, minlength=len(part))
        start = stop
    out = np.full(stats.num_users, np.nan)
    out[users] = value
    return out


def multi_relevant_metrics(stats: RelevantRankStatistics, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """Means over users with at least one relevant item, keyed like :func:`ranking.ranking_metrics`.

    Keys: ``recall@K``, ``precision@K``, ``ndcg@K``, ``map@K``, ``hit_rate@K`` for each K, ``mrr``,
    ``users`` (users in the means) and ``users_without_relevant`` (left out, not counted as 0).

    Raises:
        ValueError: if no user has a relevant item.
    """
    evaluated = int((stats.num_relevant > 0).sum())
    if evaluated == 0:
        raise ValueError(f"no user with a relevant item to evaluate ({stats.num_users} users without one)")
    has = stats.num_relevant > 0
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall(stats, k)[has].mean())
        out[f"precision@{k}"] = float(precision(stats, k)[has].mean())
        out[f"ndcg@{k}"] = float(ndcg(stats, k)[has].mean())
        out[f"map@{k}"] = float(average_precision(stats, k)[has].mean())
        out[f"hit_rate@{k}"] = float(hit_rate(stats, k)[has].mean())
    out["mrr"] = float(reciprocal_rank(stats)[has].mean())
    out["users"] = float(evaluated)
    out["users_without_relevant"] = float(stats.num_users - evaluated)
    return out
