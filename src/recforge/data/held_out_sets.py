"""Splits of implicit feedback with several held-out items per user (``last:N``, ``time:COL``).

Leave-one-out (:mod:`recforge.data.interactions`) holds out one item per user; real logs are
evaluated with more (a user's last N events, or everything after a global time cut), ranked
against the full catalogue with :func:`recforge.evaluation.protocols.evaluate_full_ranking_multi_relevant`
(Recall, Precision, NDCG, MAP; Krichene & Rendle, KDD 2020, on why not sampled candidates).

Rules (each user's events in a canonical order: time, then internal item id, so the result
never depends on the row order; a tie on the time goes to the larger item id, as in
leave-one-out):

* ``last:N``: a user's latest N events are its test items. A user with ``n <= N`` events keeps
  its earliest event for training and holds out the other ``n - 1`` (counted as
  ``test_users_with_fewer_items``); a user with a single event trains only (counted as
  ``test_users_train_only``; for validation ``valid_...``). The validation hold-out applies the same rule to the training events.
* ``time:COL``: a global cut at the 80 % and 90 % quantiles of the event times (``method="lower"``,
  as own tables' ``time:COL``): training events have ``t <= t80``, validation ``t80 < t <= t90``,
  test ``t > t90``; without a validation hold-out, training is ``t <= t90``. No training event
  is later than a test event. A user with no test event, or with test events but no training
  event (a cold user: its embedding is untrained), is left out of the test set and counted
  (``test_users_without_items``, ``test_cold_users``); the same for validation against the
  events left for training. The test set is fixed before the validation hold-out: a test user
  whose earlier events all fall in the validation window stays in the test set.

Held-out pairs are stored as pairs (``test_users`` [M] repeats a user, ``test_candidates``
[M, 1] holds the item), so the leave-one-out fields keep their meaning for masking known items;
there are no sampled negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from recforge.data.interactions import LeaveOneOutData
from recforge.errors import ConfigError, DataError

TIME_QUANTILES = (0.8, 0.9)


@dataclass(frozen=True)
class LogSplit:
    """A parsed ``data.split`` of an interaction log.

    Attributes:
        kind: ``leave-one-out``, ``last`` or ``time``.
        count: N of ``last:N`` (0 otherwise).
        column: COL of ``time:COL`` (None otherwise).
    """

    kind: str
    count: int = 0
    column: str | None = None

    @property
    def several(self) -> bool:
        """Whether the split holds out several items per user."""
        return self.kind != "leave-one-out"


def parse_log_split(split: str) -> LogSplit:
    """``random`` (the default) or ``leave-one-out``: one latest item; ``last:N``; ``time:COL``.

    Raises:
        ConfigError: for any other value, or N that is not an integer >= 1.
    """
    if split in ("random", "leave-one-out"):
        return LogSplit("leave-one-out")
    if split.startswith("last:"):
        text = split[5:].strip()
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"data.split last:N needs an integer N >= 1, got {split!r}")
        return LogSplit("last", count=int(text))
    if split.startswith("time:") and split[5:].strip():
        return LogSplit("time", column=split[5:].strip())
    raise ConfigError(f"data.split of an interaction log must be 'leave-one-out', 'last:N' or 'time:COLUMN', got {split!r}")


@dataclass(frozen=True)
class HeldOutSetsData(LeaveOneOutData):
    """Training pairs plus several held-out (user, item) pairs per user, no sampled negatives.

    Attributes (besides :class:`LeaveOneOutData`'s):
        test_users / test_candidates: int64 [M] and [M, 1]: one row per held-out pair.
        valid_users / valid_candidates: the same for validation (or None).
        train_times: int64/float [P] event time of each training pair (for the validation hold-out).
        split: the rule (:class:`LogSplit`).
        user_ids, item_ids: raw ids of the internal ids (ascending), or None.
        counts: users left out or short of items, per rule (see the module docstring).
        valid_cut: ``time:COL``: the validation cut t80 of the whole log (None for ``last:N``).
    """

    train_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    split: LogSplit = LogSplit("last", 1)
    user_ids: pa.Array | None = None
    item_ids: pa.Array | None = None
    counts: dict[str, int] = field(default_factory=dict)
    valid_cut: float | None = None

    def with_validation(self, seed: int, num_negatives: int | None = None) -> "HeldOutSetsData":
        """Hold validation pairs out of the training pairs by the split's rule (``seed`` unused: the rule is by time).

        Raises:
            DataError: if no user keeps both a validation item and a training item.
        """
        held, counts = hold_out(self.train_users, self.train_items, self.train_times, self.split, self.valid_cut)
        keep = ~held
        valid_users, valid_items = self.train_users[held], self.train_items[held]
        valid_users, valid_items, left_out = _drop_cold(valid_users, valid_items, self.train_users[keep])
        if len(valid_users) == 0:
            raise DataError(
                f"split {split_info(self)['split']}: no user has a validation item and a training item left after the test "
                "hold-out; train without validation (--set data.validation=false) or hold out fewer items"
            )
        counts = {f"valid_{k}": v for k, v in counts.items()} | {"valid_cold_users": left_out}
        return replace(
            self,
            train_users=self.train_users[keep],
            train_items=self.train_items[keep],
            train_times=self.train_times[keep],
            valid_users=valid_users,
            valid_candidates=valid_items[:, None],
            counts={**self.counts, **counts},
        )

    def users_left_out(self, split: str) -> int:
        """Users left out of the ``valid`` or ``test`` means: no held-out item, or no training item left."""
        return sum(v for k, v in self.counts.items() if k.startswith(f"{split}_") and k != f"{split}_users_with_fewer_items")

    def describe(self) -> dict[str, int]:
        """Counts for messages and ``summary.json``."""
        info = {
            "users": self.num_users,
            "items": self.num_items,
            "train interactions": self.num_train,
            "test users": int(len(np.unique(self.test_users))),
            "test items": int(len(self.test_users)),
        }
        if self.valid_users is not None:
            info["validation users"] = int(len(np.unique(self.valid_users)))
            info["validation items"] = int(len(self.valid_users))
        return {**info, **self.counts}


def hold_out(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, split: LogSplit, threshold: float | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Which pairs a several-items split holds out (see the module docstring for the rules).

    Args:
        users, items: int64 [P] internal ids, each pair once.
        times: [P] event times (integers or floats).
        split: ``last`` or ``time``.
        threshold: for ``time``: pairs with a time above it are held out.

    Returns:
        (held bool [P], counts) -- counts of users short of items or left out.
    """
    users, items, times = np.asarray(users, np.int64), np.asarray(items, np.int64), np.asarray(times)
    if split.kind == "time":
        assert threshold is not None
        held = times > threshold
        return held, {"users_without_items": int(len(np.unique(users)) - len(np.unique(users[held])))}
    order = np.lexsort((items, times, users))  # by user, then time, then item
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if len(order) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(order)])
    taken = np.minimum(counts - 1, split.count)  # at least one event stays in training
    position = np.arange(len(order)) - np.repeat(starts, counts)  # 0-based position within the user
    held = np.zeros(len(order), bool)
    held[order[position >= np.repeat(counts - taken, counts)]] = True
    return held, {
        "users_with_fewer_items": int(((taken < split.count) & (taken > 0)).sum()),
        "users_train_only": int((taken == 0).sum()),
    }


def split_cuts(times: np.ndarray) -> tuple[float, float]:
    """The validation and test cut times of ``time:COL``: the 80 % and 90 % quantiles (``lower``)."""
    low, high = np.quantile(np.asarray(times, np.float64), TIME_QUANTILES, method="lower")
    return float(low), float(high)


def _drop_cold(users: np.ndarray, items: np.ndarray, train_users: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Held-out pairs of users that keep at least one training pair; the number of users dropped."""
    warm = np.isin(users, train_users)
    return users[warm], items[warm], int(len(np.unique(users[~warm])))


def several_items_split(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    num_users: int,
    num_items: int,
    split: LogSplit,
    user_ids: pa.Array | None = None,
    item_ids: pa.Array | None = None,
) -> HeldOutSetsData:
    """Training pairs and held-out test pairs by ``split`` (no validation yet: call ``with_validation``).

    Args:
        name: dataset name.
        users, items: int64 [P] internal ids, each (user, item) pair once.
        times: [P] event times.
        num_users, num_items: id ranges.
        split: ``last:N`` or ``time:COL``.
        user_ids, item_ids: the raw ids, kept for the run's id maps.

    Raises:
        ValueError: if no user has a test item (the caller names the file).
    """
    cuts = split_cuts(times) if split.kind == "time" else (None, None)
    held, counts = hold_out(users, items, times, split, cuts[1])
    keep = ~held
    test_users, test_items, cold = _drop_cold(users[held], items[held], users[keep])
    if len(test_users) == 0:
        raise ValueError(f"split {split.kind}: no user has a test item and a training item")
    counts = {**{f"test_{k}": v for k, v in counts.items()}, "test_cold_users": cold}
    return HeldOutSetsData(
        name=name,
        num_users=num_users,
        num_items=num_items,
        train_users=users[keep],
        train_items=items[keep],
        test_users=test_users,
        test_candidates=test_items[:, None],
        train_times=np.asarray(times)[keep],
        split=split,
        user_ids=user_ids,
        item_ids=item_ids,
        counts=counts,
        valid_cut=cuts[0],
    )


def split_info(data: HeldOutSetsData) -> dict[str, Any]:
    """The split's rule and counts as JSON-safe values (for messages and run summaries)."""
    rule = f"last:{data.split.count}" if data.split.kind == "last" else f"time:{data.split.column}"
    return {"split": rule, **data.describe()}


__all__ = ["HeldOutSetsData", "LogSplit", "hold_out", "parse_log_split", "several_items_split", "split_cuts", "split_info"]
