"""Implicit-feedback data split for leave-one-out evaluation (NCF protocol)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recforge.data.sampling import InteractionIndex, sample_distinct_negatives
from recforge.data.schema import Schema, user_item_schema
from recforge.data.splits import complement, holdout_one_per_user


@dataclass(frozen=True)
class LeaveOneOutData:
    """Training pairs plus one held-out item per user ranked against sampled negatives.

    Attributes:
        name: dataset name.
        num_users: users, ids 0..num_users-1.
        num_items: items, ids 0..num_items-1.
        train_users: int64 [P] user of each training interaction.
        train_items: int64 [P] item of each training interaction.
        test_users: int64 [U] users that have a test item.
        test_candidates: int64 [U, 1 + C]; column 0 is the held-out positive, the rest the
            sampled negatives (C = 99 in NCF).
        valid_users / valid_candidates: same layout for the validation hold-out (or None).
    """

    name: str
    num_users: int
    num_items: int
    train_users: np.ndarray
    train_items: np.ndarray
    test_users: np.ndarray
    test_candidates: np.ndarray
    valid_users: np.ndarray | None = None
    valid_candidates: np.ndarray | None = None

    @property
    def schema(self) -> Schema:
        """Two sparse fields, user and item."""
        return user_item_schema(self.num_users, self.num_items)

    @property
    def num_train(self) -> int:
        """Number of training interactions."""
        return int(len(self.train_users))

    def train_index(self) -> InteractionIndex:
        """Membership index of the training interactions (what negatives must avoid)."""
        return InteractionIndex(self.train_users, self.train_items, self.num_items)

    def with_validation(self, seed: int, num_negatives: int | None = None) -> "LeaveOneOutData":
        """Move one random training interaction per user into a validation hold-out.

        As He et al. (2017, Sec. 4.1) did for tuning: "we randomly sampled one interaction for
        each user as the validation data". Validation negatives are distinct, exclude all of the
        user's known positives (training, validation and test item) and are fixed by ``seed``.

        Args:
            seed: fixes which interaction is held out and the sampled negatives.
            num_negatives: negatives per validation user (default: as many as the test set has).

        Returns:
            A copy whose training pairs no longer contain the validation interactions.
        """
        if num_negatives is None:
            num_negatives = self.test_candidates.shape[1] - 1
        held = holdout_one_per_user(self.train_users, self.train_items, seed=seed)
        keep = complement(len(self.train_users), held)
        valid_users, valid_items = self.train_users[held], self.train_items[held]
        known = InteractionIndex(
            np.r_[self.train_users, self.test_users],
            np.r_[self.train_items, self.test_candidates[:, 0]],
            self.num_items,
        )
        rng = np.random.default_rng([seed, 1])
        negatives = sample_distinct_negatives(valid_users, num_negatives, known, rng)
        return replace(
            self,
            train_users=self.train_users[keep],
            train_items=self.train_items[keep],
            valid_users=valid_users,
            valid_candidates=np.concatenate([valid_items[:, None], negatives], axis=1),
        )

    def describe(self) -> dict[str, int]:
        """Counts for ``recforge data info``."""
        info = {
            "users": self.num_users,
            "items": self.num_items,
            "train interactions": self.num_train,
            "test users": int(len(self.test_users)),
            "candidates per test user": int(self.test_candidates.shape[1]),
        }
        if self.valid_users is not None:
            info["validation users"] = int(len(self.valid_users))
        return info


def leave_one_out(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    num_users: int,
    num_items: int,
    num_negatives: int = 99,
    seed: int = 0,
) -> LeaveOneOutData:
    """Split raw implicit feedback into training pairs and a leave-one-out test set.

    The held-out item is each user's latest interaction (ties: largest item id) or, without
    timestamps, a seeded random one. Test negatives are ``num_negatives`` distinct items the user
    never interacted with, fixed by ``seed`` (NCF, He et al. 2017, Sec. 4.1).

    Args:
        name: dataset name.
        users, items: int64 [P] dense ids.
        timestamps: [P] or None.
        num_users, num_items: id ranges.
        num_negatives: sampled negatives per test user.
        seed: fixes random hold-out (without timestamps) and the negatives.

    Returns:
        LeaveOneOutData without validation (call ``with_validation``).
    """
    held = holdout_one_per_user(users, items, timestamps, seed=seed)
    keep = complement(len(users), held)
    known = InteractionIndex(users, items, num_items)
    negatives = sample_distinct_negatives(users[held], num_negatives, known, np.random.default_rng([seed, 0]))
    return LeaveOneOutData(
        name=name,
        num_users=num_users,
        num_items=num_items,
        train_users=users[keep],
        train_items=items[keep],
        test_users=users[held],
        test_candidates=np.concatenate([items[held][:, None], negatives], axis=1),
    )
