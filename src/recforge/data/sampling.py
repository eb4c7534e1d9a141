"""Negative samplers for implicit feedback that never return a user's known positives.

Training negatives follow NCF (He et al., 2017, Sec. 4.1): for every observed (user, item) pair,
draw ``num_negatives`` items uniformly from those the user has not interacted with in training,
afresh every epoch. Evaluation negatives are distinct per user and fixed by a seed.
All samplers are vectorised: rejection sampling over whole arrays, no per-sample Python loop.
"""

from __future__ import annotations

import numpy as np

from recforge.errors import DataError


class InteractionIndex:
    """Set membership for (user, item) pairs via sorted int64 keys ``user * num_items + item``.

    Args:
        users: int64 [P] user ids of the known positives.
        items: int64 [P] item ids of the known positives.
        num_items: catalogue size; item ids must lie in ``[0, num_items)``.

    Memory is 8 bytes per pair; a lookup of M pairs costs O(M log P). Where users x items is at
    most ``DENSE_CELLS``, the first lookup also builds a dense membership table (one byte per
    cell: 22 MB for MovieLens-1M) and lookups become one gather, O(M): 4 M lookups take 0.015 s
    instead of 0.23 s by binary search (two thirds of an NCF epoch's 0.35 s of negative sampling).
    """

    DENSE_CELLS = 1 << 26  # 64 Mi cells = 64 MiB

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int):
        self.num_items = int(num_items)
        keys = np.asarray(users, dtype=np.int64) * self.num_items + np.asarray(items, dtype=np.int64)
        self.keys = np.unique(keys)
        self.user_counts = np.bincount(self.keys // self.num_items) if len(self.keys) else np.zeros(0, np.int64)
        self._dense: np.ndarray | None = None

    def _dense_table(self) -> np.ndarray | None:
        cells = len(self.user_counts) * self.num_items
        if self._dense is None and 0 < cells <= self.DENSE_CELLS:
            self._dense = np.zeros(cells, dtype=bool)
            self._dense[self.keys] = True
        return self._dense

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean [M]: whether each (users[m], items[m]) is a known positive."""
        users = np.asarray(users, dtype=np.int64)
        query = users * self.num_items + np.asarray(items, dtype=np.int64)
        if len(self.keys) == 0:
            return np.zeros(query.shape, dtype=bool)
        dense = self._dense_table()
        if dense is not None:
            inside = (query >= 0) & (query < len(dense))
            if inside.all():
                return dense[query]
            found = np.zeros(query.shape, dtype=bool)
            found[inside] = dense[query[inside]]
            return found
        pos = np.searchsorted(self.keys, query)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == query

    def positives_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All known positives of ``users`` as (row, item) pairs, vectorised.

        Args:
            users: int64 [U].

        Returns:
            (rows, items): int64 [P'] each; ``items[p]`` is a positive of ``users[rows[p]]``.
        """
        users = np.asarray(users, dtype=np.int64)
        lo = np.searchsorted(self.keys, users * self.num_items)
        hi = np.searchsorted(self.keys, (users + 1) * self.num_items)
        lengths = hi - lo
        rows = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
        within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        items = self.keys[np.repeat(lo, lengths) + within] - users[rows] * self.num_items
        return rows, items

    def count(self, users: np.ndarray) -> np.ndarray:
        """int64 [M]: number of known positives of each user."""
        users = np.asarray(users, dtype=np.int64)
        counts = np.zeros(users.shape, dtype=np.int64)
        known = users < len(self.user_counts)
        counts[known] = self.user_counts[users[known]]
        return counts


def sample_negatives(
    users: np.ndarray, index: InteractionIndex, rng: np.random.Generator, max_rounds: int = 1000
) -> np.ndarray:
    """Draw one uniform negative item per entry of ``users``, never a known positive.

    Args:
        users: int64 [M]; repeat a user to draw several negatives for it.
        index: the user's known positives (the training interactions).
        rng: NumPy generator; fixes the draw given its seed.
        max_rounds: safety bound on rejection rounds.

    Returns:
        int64 [M] item ids, independent uniform draws over each user's non-positives.

    Raises:
        DataError: if a user has interacted with every item, so no negative exists.
    """
    users = np.asarray(users, dtype=np.int64)
    full = index.count(users) >= index.num_items
    if full.any():
        raise DataError(f"user {int(users[full][0])} has interacted with all {index.num_items} items; no negative exists")
    items = rng.integers(0, index.num_items, size=users.shape, dtype=np.int64)
    todo = np.flatnonzero(index.contains(users, items))
    for _ in range(max_rounds):
        if len(todo) == 0:
            return items
        items[todo] = rng.integers(0, index.num_items, size=len(todo), dtype=np.int64)
        todo = todo[index.contains(users[todo], items[todo])]
    raise DataError(f"negative sampling did not finish after {max_rounds} rounds; users are too dense")


def sample_distinct_negatives(
    users: np.ndarray, num_negatives: int, index: InteractionIndex, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``num_negatives`` distinct non-positive items for each user (evaluation candidates).

    Each row is a uniform random subset of the user's non-positives, in random order: every item
    gets a uniform random key, positives get +inf, and the smallest keys are kept. Users are
    processed in chunks so memory stays near 128 MiB whatever the catalogue size.

    Args:
        users: int64 [U] (one row per entry; users may repeat).
        num_negatives: distinct negatives per row (99 in the NCF protocol).
        index: the user's known positives (all of them: train, validation and test).
        rng: NumPy generator.

    Returns:
        int64 [U, num_negatives].

    Raises:
        DataError: if a user has fewer than ``num_negatives`` non-positive items.
    """
    users = np.asarray(users, dtype=np.int64)
    n_items = index.num_items
    short = index.count(users) > n_items - num_negatives
    if short.any():
        raise DataError(
            f"user {int(users[short][0])} has fewer than {num_negatives} items left to sample as negatives "
            f"(catalogue of {n_items} items)"
        )
    out = np.empty((len(users), num_negatives), dtype=np.int64)
    chunk = max(1, (1 << 24) // max(n_items, 1))
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        keys = rng.random((len(u), n_items))
        rows, items = index.positives_of(u)
        keys[rows, items] = np.inf
        picked = np.argpartition(keys, num_negatives - 1, axis=1)[:, :num_negatives]
        # argpartition leaves the kept block in an arbitrary order; order it by key (random order).
        order = np.argsort(np.take_along_axis(keys, picked, axis=1), axis=1)
        out[start : start + len(u)] = np.take_along_axis(picked, order, axis=1)
    return out


def pointwise_examples(
    users: np.ndarray, items: np.ndarray, index: InteractionIndex, num_negatives: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of NCF training examples: every positive plus ``num_negatives`` fresh negatives.

    He et al. (2017, Sec. 3.1.1 and 4.1): pointwise log loss over observed interactions and
    negatives sampled uniformly from unobserved ones, ratio 4:1 by default.

    Args:
        users, items: int64 [P] training interactions.
        index: the training interactions (negatives avoid them; held-out test and validation
            items stay eligible, since excluding them would leak their labels).
        num_negatives: negatives per positive.
        rng: NumPy generator.

    Returns:
        (pairs int64 [P * (1 + num_negatives), 2], labels float32 [same, 1]); positives first.
    """
    neg_users = np.repeat(np.asarray(users, np.int64), num_negatives)
    neg_items = sample_negatives(neg_users, index, rng)
    pairs = np.empty((len(users) + len(neg_users), 2), dtype=np.int64)
    pairs[: len(users), 0] = users
    pairs[: len(users), 1] = items
    pairs[len(users) :, 0] = neg_users
    pairs[len(users) :, 1] = neg_items
    labels = np.zeros((len(pairs), 1), dtype=np.float32)
    labels[: len(users)] = 1.0
    return pairs, labels
