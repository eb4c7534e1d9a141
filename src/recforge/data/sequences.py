"""Behaviour-sequence samples without leakage, as in DIN's Amazon protocol (Zhou et al., KDD 2018).

Each user's events are ordered by (time, item id), so a tie of timestamps is broken by the item
id and the result never depends on the order of the input rows. For the k-th event of a user
(k = 0 included, with an empty history) two rows are emitted: the positive (target = the item
of event k, label 1) and one sampled negative (same user, history and time; target drawn
uniformly, seeded, from the items the user never interacted with, label 0). The history holds
the user's items strictly before event k, oldest first, at most the last ``max_length``, so a
row never sees its own event or anything after it.

Splits:

* ``per_user`` (DIN, Sec. 5.1, Amazon): each user's last event is the test sample, the one
  before it the validation sample, the rest train. Users with fewer than 3 events give all their
  events to train (they have no event to spare for validation and test). Test times differ
  between users, so training rows of one user may lie after another user's test event:
  cross-user future information (a trend, a newly popular item). The *leakage figure* reports
  it: the share of training rows whose time is later than the earliest test time.
* ``global_time``: one cut in time over all events: ``time_fractions`` (train, valid, test) of
  the events in time order, each boundary moved back to the first event of its timestamp, so a
  timestamp is never split between two sets and train < valid < test in time strictly. The
  leakage figure is 0 by construction; the number of test users with no training event (cold
  users) is reported instead. Histories still hold every earlier event of the user, whatever
  its set: it lies in the past of the row.

All work is vectorised with NumPy and PyArrow: no Python loop over events.

Shape letters: E events, U users, I items, R rows (2 per event).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from recforge.data.sampling import InteractionIndex, sample_negatives
from recforge.errors import ConfigError, DataError

SPLIT_MODES = ("per_user", "global_time")
SPLIT_NAMES = ("train", "valid", "test")
MIN_EVENTS_PER_USER = 3  # per_user: one event each for train, valid and test


def behaviour_samples(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    item_categories: np.ndarray,
    num_items: int,
    max_length: int = 50,
    seed: int = 0,
    split: str = "per_user",
    time_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    item_ids: np.ndarray | None = None,
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """Turn time-stamped events into DIN-style samples (one positive, one negative per event).

    Args:
        users: int64 [E] user id of each event (any integers; written to ``user_id`` as is, so
            they can group rows for GAUC).
        items: int64 [E] item index of each event in ``[0, num_items)``.
        times: integer [E] event time (for example Unix seconds).
        item_categories: int64 [num_items] category of each item index.
        num_items: the catalogue size; negatives are drawn from ``[0, num_items)``.
        max_length: keep at most this many most recent history events (>= 1).
        seed: fixes the sampled negatives.
        split: ``per_user`` (each user's last event = test, second-last = valid) or
            ``global_time`` (one cut in time, see ``time_fractions``).
        time_fractions: ``global_time``: shares of the events (in time order) for train, valid
            and test; non-negative, summing to 1.
        item_ids: int64 [num_items] id written to the tables for each item index (default: the
            index itself), for example the raw id of the files.

    Returns:
        (tables, info). ``tables`` maps ``train`` / ``valid`` / ``test`` to a table with columns
        ``user_id`` int64, ``item_id`` int64, ``item_category`` int64, ``hist_item_id``
        list<int64>, ``hist_item_category`` list<int64> (same positions), ``label`` float32
        (1 positive, 0 negative) and ``time`` int64; rows come in (user, time, item) order of
        the events, the positive row first, then its negative. ``info`` (JSON-safe) holds the
        split's description, events, users and rows per split, the leakage figure
        (``leakage_share``: share of training rows later than ``first_test_time``) and the cold
        test users (``test_users_without_train_events``).

    Raises:
        ConfigError: for an unknown split, bad ``time_fractions`` or ``max_length``.
        DataError: for arrays of different lengths, non-integer times, an item index outside
            ``[0, num_items)``, or a user who interacted with every item (no negative exists).
    """
    users = np.asarray(users)
    items = np.asarray(items)
    times = np.asarray(times)
    item_categories = np.asarray(item_categories)
    _check(users, items, times, item_categories, num_items, max_length, split, time_fractions, item_ids)
    users, items, times = users.astype(np.int64), items.astype(np.int64), times.astype(np.int64)
    item_categories = item_categories.astype(np.int64)
    labels_of_items = np.arange(num_items, dtype=np.int64) if item_ids is None else np.asarray(item_ids, np.int64)

    # (user, time, item) order: the tie rule never looks at the input row order.
    order = np.lexsort((items, times, users))
    u, it, t = users[order], items[order], times[order]
    n = len(u)
    first = np.ones(n, dtype=bool)
    first[1:] = u[1:] != u[:-1]
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1  # dense user index, ascending user id
    counts = np.diff(np.append(starts, n))
    position = np.arange(n) - starts[group]  # k: events of the user before this one
    remaining = counts[group] - 1 - position  # 0 for the user's last event

    # History of event e: the sorted events [e - h, e) of the same user, h = min(k, max_length).
    lengths = np.minimum(position, max_length)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    hist = it[np.repeat(np.arange(n) - lengths, lengths) + within]
    offsets32 = pa.array(offsets.astype(np.int32))
    hist_items = pa.ListArray.from_arrays(offsets32, pa.array(labels_of_items[hist]))
    hist_categories = pa.ListArray.from_arrays(offsets32, pa.array(item_categories[hist]))

    # Negatives avoid every item of the user, past and future (DIN's build_dataset.py does too).
    negatives = np.zeros(n, dtype=np.int64)
    if n:
        index = InteractionIndex(group, it, num_items)
        negatives = sample_negatives(group, index, np.random.default_rng(seed))

    if split == "per_user":
        assignment, split_info = _per_user(counts, group, remaining)
    else:
        assignment, split_info = _global_time(t, time_fractions)

    tables = {}
    for code, name in enumerate(SPLIT_NAMES):
        events = np.flatnonzero(assignment == code)
        rows = np.repeat(events, 2)
        targets = np.stack([it[events], negatives[events]], axis=1).ravel()
        take = pa.array(rows)
        tables[name] = pa.table({
            "user_id": pa.array(u[rows]),
            "item_id": pa.array(labels_of_items[targets]),
            "item_category": pa.array(item_categories[targets]),
            "hist_item_id": hist_items.take(take),
            "hist_item_category": hist_categories.take(take),
            "label": pa.array(np.tile(np.array([1.0, 0.0], np.float32), len(events))),
            "time": pa.array(t[rows]),
        })

    info: dict[str, Any] = {
        "split": split_info.pop("description"),
        "split_mode": split,
        "events": int(n),
        "users": int(len(starts)),
        "items": int(num_items),
        "max_length": int(max_length),
        "negatives": f"1 per positive, uniform over the items the user never interacted with (seed {seed})",
        "tie_rule": "events ordered per user by (time, item id)",
    }
    info.update(split_info)
    info["rows"] = {name: int(tables[name].num_rows) for name in SPLIT_NAMES}
    info["events_per_split"] = {name: int((assignment == code).sum()) for code, name in enumerate(SPLIT_NAMES)}
    info["users_per_split"] = {
        name: int(len(np.unique(group[assignment == code]))) for code, name in enumerate(SPLIT_NAMES)
    }
    info["empty_history_rows"] = {
        name: int(2 * ((assignment == code) & (position == 0)).sum()) for code, name in enumerate(SPLIT_NAMES)
    }
    info.update(_leakage(t, group, assignment))
    return tables, info


def _check(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    item_categories: np.ndarray,
    num_items: int,
    max_length: int,
    split: str,
    time_fractions: tuple[float, float, float],
    item_ids: np.ndarray | None,
) -> None:
    if split not in SPLIT_MODES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    if max_length < 1:
        raise ConfigError(f"max_length must be >= 1, got {max_length}")
    fractions = np.asarray(time_fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ConfigError(f"time_fractions must be 3 non-negative shares (train, valid, test) summing to 1, got {time_fractions}")
    if not (users.ndim == items.ndim == times.ndim == 1 and len(users) == len(items) == len(times)):
        raise DataError(f"users, items and times must be 1-D of one length, got shapes {users.shape}, {items.shape}, {times.shape}")
    for name, array in (("users", users), ("items", items), ("times", times), ("item_categories", item_categories)):
        if len(array) and not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{name} must be integers, got {array.dtype}")
    if item_categories.shape != (num_items,):
        raise DataError(f"item_categories must hold one category per item ({num_items}), got shape {item_categories.shape}")
    if item_ids is not None and np.shape(item_ids) != (num_items,):
        raise DataError(f"item_ids must hold one id per item ({num_items}), got shape {np.shape(item_ids)}")
    if len(items) and (items.min() < 0 or items.max() >= num_items):
        bad = int(items[(items < 0) | (items >= num_items)][0])
        raise DataError(f"item index {bad} is outside [0, {num_items})")


def _per_user(counts: np.ndarray, group: np.ndarray, remaining: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Split code per sorted event (0 train, 1 valid, 2 test): last event test, second-last valid."""
    long_enough = counts[group] >= MIN_EVENTS_PER_USER
    assignment = np.zeros(len(group), dtype=np.int8)
    assignment[long_enough & (remaining == 1)] = 1
    assignment[long_enough & (remaining == 0)] = 2
    info = {
        "description": (
            "per user (DIN's Amazon protocol): each user's last event is test, the one before valid, the rest "
            f"train; users with fewer than {MIN_EVENTS_PER_USER} events are train only"
        ),
        "users_with_3_or_more_events": int((counts >= MIN_EVENTS_PER_USER).sum()),
        "users_train_only": int((counts < MIN_EVENTS_PER_USER).sum()),
    }
    return assignment, info


def _global_time(times: np.ndarray, fractions: tuple[float, float, float]) -> tuple[np.ndarray, dict[str, Any]]:
    """Split code per event by two time boundaries at the ``fractions`` quantiles of the events."""
    n = len(times)
    ordered = np.sort(times)
    cuts = np.rint(np.cumsum(fractions[:2]) * n).astype(np.int64)
    # A boundary is the timestamp of the first event past the cut; events at it go to the later set.
    bounds = [int(ordered[c]) if c < n else None for c in cuts]
    assignment = np.zeros(n, dtype=np.int8)
    for code, bound in enumerate(bounds, start=1):
        if bound is not None:
            assignment[times >= bound] = code
    info = {
        "description": (
            f"global time cut: {tuple(float(f) for f in fractions)} of the events in time order (train, valid, test); "
            "a timestamp is never split between sets; histories hold every earlier event of the user"
        ),
        "valid_start_time": bounds[0],
        "test_start_time": bounds[1],
    }
    return assignment, info


def _leakage(times: np.ndarray, group: np.ndarray, assignment: np.ndarray) -> dict[str, Any]:
    """The leakage figure and the cold users of the evaluation sets."""
    train, valid, test = (assignment == code for code in range(3))
    out: dict[str, Any] = {"first_test_time": int(times[test].min()) if test.any() else None}
    if test.any() and train.any():
        out["leakage_share"] = float((times[train] > times[test].min()).mean())
        out["leakage_share_after_median_test_time"] = float((times[train] > np.median(times[test])).mean())
    else:
        out["leakage_share"] = 0.0
        out["leakage_share_after_median_test_time"] = 0.0
    trained = np.unique(group[train])
    for name, mask in (("valid", valid), ("test", test)):
        cold = np.setdiff1d(np.unique(group[mask]), trained, assume_unique=True)
        out[f"{name}_users_without_train_events"] = int(len(cold))
    return out


__all__ = ["SPLIT_MODES", "behaviour_samples"]
