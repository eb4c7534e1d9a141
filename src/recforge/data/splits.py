"""Per-user hold-out splits: leave-one-out by time, or a seeded random hold-out.

Both are independent of the input row order: rows are put in a canonical order
(user, then timestamp, then item id) before anything is chosen.
"""

from __future__ import annotations

import numpy as np


def holdout_one_per_user(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Pick one interaction per user to hold out.

    With ``timestamps``: the latest interaction (leave-one-out as in NCF, He et al. 2017, Sec. 4.1);
    ties on the timestamp go to the largest item id, so the choice never depends on row order.
    Without: one interaction chosen uniformly at random with ``seed`` (the NCF validation
    hold-out), again independent of row order.
    Users with a single interaction keep it for training and get no held-out row.

    Args:
        users: int64 [P].
        items: int64 [P].
        timestamps: optional int64/float [P].
        seed: required when ``timestamps`` is None.

    Returns:
        int64 [U'] row indices into the inputs, one per user with >= 2 interactions, sorted by user.

    Raises:
        ValueError: if neither timestamps nor seed is given, or lengths differ.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if len(users) != len(items) or (timestamps is not None and len(timestamps) != len(users)):
        raise ValueError("users, items and timestamps must have the same length")
    if timestamps is None and seed is None:
        raise ValueError("a seed is needed to hold out at random when there are no timestamps")
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = (items, users) if timestamps is None else (items, np.asarray(timestamps), users)
    order = np.lexsort(keys)  # canonical order: by user, then time, then item
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    if timestamps is None:
        offsets = np.floor(np.random.default_rng(seed).random(len(starts)) * counts).astype(np.int64)
    else:
        offsets = counts - 1  # the latest
    chosen = order[starts + offsets]
    return chosen[counts >= 2]


def complement(n: int, rows: np.ndarray) -> np.ndarray:
    """Row indices in ``range(n)`` that are not in ``rows`` (int64, ascending)."""
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    return np.flatnonzero(keep)


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split row indices at random into parts of the given fractions, stratified by label.

    Each class (NaN counts as its own class) is shuffled with ``seed`` and cut in the same
    proportions, so every part holds both classes whenever each class has at least one row per
    part; the cuts round down, and the last part takes the remainder.

    Args:
        labels: float [N] (the first task's label for multi-task data).
        fractions: sum to 1, for example (0.8, 0.1, 0.1).
        seed: fixes the split.

    Returns:
        One sorted int64 index array per fraction.

    Raises:
        ValueError: if the fractions are not positive or do not sum to 1.
    """
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    labels = np.asarray(labels, dtype=np.float64)
    rng = np.random.default_rng(seed)
    keys = np.where(np.isnan(labels), -1.0, labels)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for value in np.unique(keys):
        rows = np.flatnonzero(keys == value)
        rows = rows[rng.permutation(len(rows))]
        cuts = np.floor(np.cumsum(fractions)[:-1] * len(rows)).astype(np.int64)
        for k, chunk in enumerate(np.split(rows, cuts)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
