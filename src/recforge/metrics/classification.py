"""Pointwise classification metrics for CTR-style binary labels: AUC, LogLoss and GAUC.

All three take 1-D arrays of n rows (NumPy arrays or torch tensors, which are copied to the
CPU) and compute in float64. Labels must be exactly 0 or 1: a missing label (NaN in a
:class:`~recforge.data.batches.Batch`) has to be masked out by the caller, never scored.

AUC is the Mann–Whitney U statistic over mid-ranks (Hanley & McNeil, "The meaning and use of
the area under a receiver operating characteristic (ROC) curve", Radiology 143(1), 1982, which
shows the area equals the Wilcoxon-Mann-Whitney statistic): with n+ positives, n- negatives and
R+ the sum of the positives' 1-based ranks among all scores, ties sharing the mean of the ranks
they span,

    AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-),

which is P(score of a random positive > score of a random negative) with ties counted 1/2,
exactly the area under the ROC curve with linear interpolation across tied scores (what
``sklearn.metrics.roc_auc_score`` computes). One sort: O(n log n) time, O(n) memory.

When a metric is undefined (no rows, or only one class for AUC) the functions return NaN and
emit a :class:`RuntimeWarning` instead of raising, so an evaluation loop can record the gap
and go on; bad input (labels not 0/1, NaN or infinite scores, mismatched lengths) raises
:class:`ValueError`.

Shapes: n rows (impressions), G groups (users).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve, exact, with tied scores counting 1/2.

    Args:
        labels: 0/1 (bool, integer or float) [n].
        scores: any real scores [n] (probabilities, logits or any monotone transform of them:
            only their order matters).

    Returns:
        The AUC in [0, 1]; NaN (with a RuntimeWarning) when there are no rows or only one class.

    Raises:
        ValueError: if labels are not all 0 or 1, scores contain NaN or infinity, or the
            lengths differ.

    Shape:
        labels [n], scores [n] -> float.
    """
    y, s = _check_inputs(labels, scores, "scores")
    if len(y) == 0:
        _warn_undefined("auc: no rows; AUC is undefined, returning NaN")
        return float("nan")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positive" if n_neg == 0 else "negative"
        _warn_undefined(f"auc: all {len(y)} labels are {only}; AUC is undefined, returning NaN")
        return float("nan")
    order = np.argsort(s, kind="stable")
    group = np.zeros(len(s), dtype=np.int64)  # all rows in one group
    rank_sum = _positive_rank_sums(group[order], s[order], y[order], 1)[0]
    return float(_mann_whitney_auc(rank_sum, n_pos, n_neg))


def log_loss(
    labels: Any, probabilities: Any = None, *, logits: Any = None, eps: float = 1e-7
) -> float:
    """Mean binary cross-entropy -mean(y log p + (1 - y) log(1 - p)), in nats, computed in float64.

    Give exactly one of ``probabilities`` and ``logits``. Probabilities are clipped to
    [eps, 1 - eps] so that a confident mistake (p = 0 for a positive) costs -log(eps) instead of
    infinity. Logits need no clipping: the loss is computed as
    softplus(x) - y x = max(x, 0) - y x + log1p(exp(-|x|)), which is exact and never overflows.

    Args:
        labels: 0/1 [n].
        probabilities: predicted P(y = 1) in [0, 1] [n].
        logits: predicted log-odds [n] (what the models return).
        eps: clipping margin for probabilities, in (0, 0.5). Unused with ``logits``.

    Returns:
        The mean loss; NaN (with a RuntimeWarning) when there are no rows.

    Raises:
        ValueError: if not exactly one of probabilities / logits is given, labels are not all
            0 or 1, probabilities lie outside [0, 1], values are NaN or infinite, lengths differ,
            or eps is outside (0, 0.5).

    Shape:
        labels [n], probabilities or logits [n] -> float.
    """
    if (probabilities is None) == (logits is None):
        raise ValueError("log_loss: give exactly one of probabilities and logits")
    if probabilities is not None:
        if not 0.0 < eps < 0.5:
            raise ValueError(f"log_loss: eps must be in (0, 0.5), got {eps}")
        y, p = _check_inputs(labels, probabilities, "probabilities")
        if len(p) and (p.min() < 0.0 or p.max() > 1.0):
            raise ValueError(
                f"log_loss: probabilities must lie in [0, 1], found values in [{p.min()}, {p.max()}]; "
                "pass logits=... for unbounded scores"
            )
        if len(y) == 0:
            _warn_undefined("log_loss: no rows; returning NaN")
            return float("nan")
        p = np.clip(p, eps, 1.0 - eps)
        return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))
    y, x = _check_inputs(labels, logits, "logits")
    if len(y) == 0:
        _warn_undefined("log_loss: no rows; returning NaN")
        return float("nan")
    # -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x); both folded into one form.
    return float(np.mean(np.maximum(x, 0.0) - y * x + np.log1p(np.exp(-np.abs(x)))))


def gauc(labels: Any, scores: Any, groups: Any) -> tuple[float, dict[str, int]]:
    """Group AUC: per-user AUC weighted by the user's number of impressions.

    Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018
    (arXiv:1706.06978), Sec. 6.3 (Metrics):

        GAUC = sum_i #impression_i * AUC_i / sum_i #impression_i,

    over users i. A user whose labels are all 0 or all 1 has no AUC and is skipped (left out of
    both sums), as in DIN's reference evaluation. Each AUC_i counts ties 1/2, as :func:`auc`.
    Computed in one lexicographic sort by (group, score), with no per-row or per-group Python loop.

    Args:
        labels: 0/1 [n].
        scores: real scores [n].
        groups: the user (or any group key: request, session) of each row [n]; any sortable
            dtype (integers, strings).

    Returns:
        (gauc, counts): the GAUC, NaN (with a RuntimeWarning) when no user has both classes;
        ``counts = {"users": number of users used, "skipped_users": number of single-class users}``.

    Raises:
        ValueError: as :func:`auc`, and if ``groups`` has a different length.

    Shape:
        labels [n], scores [n], groups [n] -> (float, dict).
    """
    y, s = _check_inputs(labels, scores, "scores")
    g = _as_1d(groups, "groups")
    if len(g) != len(y):
        raise ValueError(f"gauc: groups has {len(g)} rows but labels has {len(y)}")
    if len(y) == 0:
        _warn_undefined("gauc: no rows; GAUC is undefined, returning NaN")
        return float("nan"), {"users": 0, "skipped_users": 0}
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    num_groups = int(codes.max()) + 1
    order = np.lexsort((s, codes))  # by group, then by score
    rank_sum = _positive_rank_sums(codes[order], s[order], y[order], num_groups)
    size = np.bincount(codes, minlength=num_groups).astype(np.float64)
    n_pos = np.bincount(codes, weights=y, minlength=num_groups)
    n_neg = size - n_pos
    used = (n_pos > 0) & (n_neg > 0)
    counts = {"users": int(used.sum()), "skipped_users": int((~used).sum())}
    if not used.any():
        _warn_undefined(
            f"gauc: all {num_groups} groups have a single class; GAUC is undefined, returning NaN"
        )
        return float("nan"), counts
    per_group = _mann_whitney_auc(rank_sum[used], n_pos[used], n_neg[used])
    weights = size[used]
    return float(np.sum(weights * per_group) / np.sum(weights)), counts


def _positive_rank_sums(group: np.ndarray, s: np.ndarray, y: np.ndarray, num_groups: int) -> np.ndarray:
    """Sum of the positives' 1-based mid-ranks within each group.

    Args:
        group: int64 group code of each row, sorted ascending [n].
        s: scores, sorted ascending within each group [n].
        y: float64 0/1 labels in the same order [n].
        num_groups: G; group codes lie in [0, G).

    Returns:
        float64 [G].
    """
    n = len(s)
    idx = np.arange(n)
    # A tie block is a maximal run of equal (group, score); a group block a run of equal group.
    new_group = np.r_[True, group[1:] != group[:-1]]
    new_tie = new_group | np.r_[True, s[1:] != s[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    tie_id = np.cumsum(new_tie) - 1
    tie_first = idx[new_tie]
    tie_last = np.r_[tie_first[1:], n] - 1
    # Mid-rank of a tie block: mean of the 0-based positions it spans, made 1-based within its group.
    mid_rank = (tie_first + tie_last) / 2.0 + 1.0
    rank = mid_rank[tie_id] - group_start
    return np.bincount(group, weights=rank * y, minlength=num_groups)


def _mann_whitney_auc(rank_sum: Any, n_pos: Any, n_neg: Any) -> Any:
    """AUC = U / (n+ n-) with U = R+ - n+ (n+ + 1) / 2 (works elementwise on arrays)."""
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _check_inputs(labels: Any, values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert (labels, scores-like values) to float64 1-D arrays of equal length."""
    y = _as_1d(labels, "labels")
    v = _as_1d(values, name)
    if len(y) != len(v):
        raise ValueError(f"labels has {len(y)} rows but {name} has {len(v)}")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"labels must be 0 or 1, found dtype {y.dtype}")
    if v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, found dtype {v.dtype}")
    y = y.astype(np.float64)
    v = v.astype(np.float64)
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        found = np.unique(y[bad])
        shown = ", ".join(str(x) for x in found[:5]) + (", ..." if len(found) > 5 else "")
        raise ValueError(
            f"labels must be 0 or 1; found {int(bad.sum())} other values ({shown}); mask missing labels out first"
        )
    finite = np.isfinite(v)
    if not finite.all():
        nan, inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
        raise ValueError(f"{name} must be finite; found {nan} NaN and {inf} infinite values")
    return y, v


def _as_1d(x: Any, name: str) -> np.ndarray:
    """A NumPy view of ``x`` as one row per element: [n] or [n, 1] accepted."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.to(torch.float64)  # also covers bfloat16, which NumPy cannot hold
        x = x.numpy()
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n] (or [n, 1]), got shape {a.shape}")
    return a


def _warn_undefined(message: str) -> None:
    # stacklevel 3: point at the caller of the public metric, not at this helper.
    warnings.warn(message, RuntimeWarning, stacklevel=3)
