"""Own logs with several test items per user (issue 14, item 3): ``--split last:N`` and ``time:COL``.

The rules of :mod:`recforge.data.held_out_sets` on hand-made logs, and training on them with the
full-catalogue Recall / Precision / NDCG / MAP of :mod:`recforge.metrics.multi_relevant`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recforge.config import DataConfig
from recforge.data.datasets.interaction_log import InteractionLogSequences, LogOptions, build_held_out_sets, load_leave_one_out
from recforge.data.held_out_sets import HeldOutSetsData, parse_log_split
from recforge.errors import ConfigError, DataError


def write_log(path, rows, header=("u", "i", "t")):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def pairs(users, items, data: HeldOutSetsData):
    """Raw (user, item) pairs of internal-id arrays."""
    return sorted(zip(data.user_ids.take(users).to_pylist(), data.item_ids.take(items).to_pylist()))


# user 1: five events, two of them tied at t = 4 (items 13 and 14); user 2: two events; user 3: one event
ROWS = [(1, 10, 1), (1, 11, 2), (1, 14, 4), (1, 12, 3), (1, 13, 4), (2, 20, 5), (2, 21, 6), (3, 30, 7)]


def test_last_n_takes_the_latest_by_time_ties_to_the_larger_item_and_counts_short_users(tmp_path):
    log = write_log(tmp_path / "events.csv", ROWS)
    data = build_held_out_sets(LogOptions((str(log),), "u", "i", "t", split="last:2"))
    assert pairs(data.test_users, data.test_candidates[:, 0], data) == [(1, 13), (1, 14), (2, 21)]
    # user 2 has 2 <= N events: its earliest stays in training; user 3 trains only
    assert data.counts == {"test_users_with_fewer_items": 1, "test_users_train_only": 1, "test_cold_users": 0}
    assert data.users_left_out("test") == 1  # user 3: no test item
    tied = build_held_out_sets(LogOptions((str(log),), "u", "i", "t", split="last:1"))
    assert pairs(tied.test_users, tied.test_candidates[:, 0], tied)[0] == (1, 14)  # the tie at t = 4 goes to item 14
    # the row order does not matter
    shuffled = build_held_out_sets(LogOptions((str(write_log(tmp_path / "shuffled.csv", ROWS[::-1])),), "u", "i", "t", split="last:2"))
    np.testing.assert_array_equal(np.sort(shuffled.test_users * 100 + shuffled.test_candidates[:, 0]),
                                  np.sort(data.test_users * 100 + data.test_candidates[:, 0]))
    # validation: the same rule on the training events; user 2 then has one event left and trains only
    valid = data.with_validation(seed=0)
    assert pairs(valid.valid_users, valid.valid_candidates[:, 0], valid) == [(1, 11), (1, 12)]
    assert pairs(valid.train_users, valid.train_items, valid) == [(1, 10), (2, 20), (3, 30)]
    assert valid.users_left_out("valid") == 2 and valid.describe()["validation items"] == 2


def test_time_split_is_a_global_cut_and_counts_users_left_out(tmp_path):
    # user (t mod 4 or 4) has item 100 + t at t = 1..20; user 9's only event is at t = 20
    rows = [(u, 100 + t, t) for u, t in zip([1, 2, 3, 4] * 5, range(1, 21))] + [(9, 999, 20)]
    log = write_log(tmp_path / "events.csv", rows)
    data = build_held_out_sets(LogOptions((str(log),), "u", "i", "t", split="time:t"))
    # 21 times: t80 = 17, t90 = 19 (method "lower"); test is t > 19
    assert pairs(data.test_users, data.test_candidates[:, 0], data) == [(4, 120)]
    assert data.counts == {"test_users_without_items": 3, "test_cold_users": 1}  # users 1-3; user 9 has no training event
    assert data.users_left_out("test") == 4
    assert pairs(data.train_users, data.train_items, data) == sorted((u, i) for u, i, t in rows if t <= 19)
    valid = data.with_validation(seed=0)  # 17 < t <= 19, cut on the whole log's times
    assert pairs(valid.valid_users, valid.valid_candidates[:, 0], valid) == [(2, 118), (3, 119)]
    assert pairs(valid.train_users, valid.train_items, valid) == sorted((u, i) for u, i, t in rows if t <= 17)
    assert valid.counts["valid_users_without_items"] == 2  # users 1 and 4


@pytest.mark.parametrize(
    ("split", "time_col", "expected"),
    [
        ("last:0", "t", "integer N >= 1"),
        ("last:x", "t", "integer N >= 1"),
        ("newest", "t", "'leave-one-out', 'last:N' or 'time:COLUMN'"),
        ("time:when", "t", "name different columns"),
    ],
)
def test_bad_split_is_one_config_error(split, time_col, expected):
    with pytest.raises(ConfigError, match=expected):
        LogOptions.from_config(DataConfig(path=("events.csv",), user_col="u", item_col="i", time_col=time_col, split=split))


def test_last_n_needs_a_time_column_and_sequence_models_refuse_it(tmp_path):
    log = write_log(tmp_path / "events.csv", ROWS)
    with pytest.raises(ConfigError, match="--time-col"):
        build_held_out_sets(LogOptions((str(log),), "u", "i", split="last:2"))
    with pytest.raises(ConfigError, match="NCF/MF/ItemPop"):
        InteractionLogSequences(LogOptions((str(log),), "u", "i", "t", split="last:2"))
    two_each = build_held_out_sets(LogOptions((str(write_log(tmp_path / "two.csv", [(1, 10, 1), (1, 11, 2), (2, 20, 1), (2, 21, 2)])),),
                                              "u", "i", "t", split="last:1"))
    with pytest.raises(DataError, match=r"split last:1: no user has a validation item .*data.validation=false"):
        two_each.with_validation(seed=0)  # one event left per user: nothing to validate on
    only_one = write_log(tmp_path / "single.csv", [(1, 10, 1), (2, 20, 2)])
    with pytest.raises(DataError, match="single.csv.*no user has a test item"):
        build_held_out_sets(LogOptions((str(only_one),), "u", "i", "t", split="last:1"))


def test_time_split_takes_its_column_as_the_time_column():
    options = LogOptions.from_config(DataConfig(path=("events.csv",), user_col="u", item_col="i", split="time:t"))
    assert options.time_col == "t" and parse_log_split(options.split).column == "t"
    assert parse_log_split("random") == parse_log_split("leave-one-out")  # the default stays leave-one-out
    assert "split" not in LogOptions(("a.csv",), "u", "i").cache_parts()  # leave-one-out cache keys unchanged


def test_itempop_on_last_n_reports_hand_checked_full_catalogue_metrics(tmp_path):
    import recforge

    # items 0..5; popularity in training: item 0 (3 users) > 1 (2) > 2 (1); 3, 4, 5 unseen in training
    rows = [("a", 0, 1), ("a", 1, 2), ("a", 3, 3), ("a", 2, 4),
            ("b", 0, 1), ("b", 1, 2), ("b", 4, 3), ("b", 5, 4),
            ("c", 0, 1), ("c", 2, 2), ("c", 1, 3)]
    log = write_log(tmp_path / "events.csv", rows)
    run = recforge.train("itempop", data=str(log), user_col="u", item_col="i", time_col="t", split="last:1",
                         validation=False, ks=(1, 2), output_dir=tmp_path / "runs")
    m = run.metrics
    # training popularity: item 0: 3 users, 1: 2, 2, 3, 4: 1 each, 5: 0; a user's training items are masked
    # a: test {2} among 2, 4 (pop 1, tied), 5 -> rank 0 or 1; b: test {5} among 2, 3 (pop 1), 5 -> rank 2;
    # c: test {1} among 1 (pop 2), 3, 4, 5 -> rank 0
    assert m["test/users"] == 3 and m["test/users_without_relevant"] == 0
    assert m["test/recall@1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["test/recall@2"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["test/precision@2"] == pytest.approx(m["test/recall@2"] / 2)
    assert m["test/ndcg@1"] == pytest.approx(m["test/recall@1"])
    assert m["test/ndcg@2"] == pytest.approx((0.5 + 0.5 / math.log2(3) + 0 + 1) / 3)
    assert m["test/map@2"] == pytest.approx((0.5 * 1 + 0.5 * 0.5 + 0 + 1) / 3)
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["split"]["split"] == "last:1" and summary["split"]["test items"] == 3
    assert not (run.path / "test_ranks.npz").exists()  # per-user ranks of one item do not apply


@pytest.mark.filterwarnings("ignore:no training epoch beat the initial model")  # random data: epoch 0 may win
def test_mf_selects_on_validation_ndcg_and_leave_one_out_is_unchanged(tmp_path):
    import recforge

    rng = np.random.default_rng(0)
    rows = [(u, int(i), t) for u in range(30) for t, i in enumerate(rng.choice(200, size=8, replace=False))]
    log = write_log(tmp_path / "events.csv", rows)
    run = recforge.train("mf", data=str(log), user_col="u", item_col="i", time_col="t", split="last:3", epochs=2,
                         output_dir=tmp_path / "runs")  # selected on valid/ndcg@10 with several relevant items
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert all("valid/recall@10" in r and "valid/map@10" in r for r in history)
    assert run.metrics["test/users"] == 30 and 0 <= run.metrics["test/map@10"] <= 1
    # leave-one-out stays the default: one item and 99 sampled negatives per user
    data = load_leave_one_out(LogOptions((str(log),), "u", "i", "t"), seed=0)
    assert not isinstance(data, HeldOutSetsData) and data.test_candidates.shape == (30, 100)


@pytest.mark.filterwarnings("ignore:no training epoch beat the initial model")
def test_recall_at_k_can_be_the_monitor_of_held_out_splits_only(tmp_path):
    """train.monitor valid/recall@10 selects the epoch of a last:N split on recall; on leave-one-out
    (one held-out item: recall@K is hit_rate@K) it is refused before training, naming the fix."""
    import recforge

    rng = np.random.default_rng(1)
    rows = [(u, int(i), t) for u in range(30) for t, i in enumerate(rng.choice(200, size=8, replace=False))]
    log = write_log(tmp_path / "events.csv", rows)
    run = recforge.train("mf", data=str(log), user_col="u", item_col="i", time_col="t", split="last:3", epochs=3,
                         output_dir=tmp_path / "runs", **{"train.monitor": "valid/recall@10"})
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["valid/recall@10"])  # ties: the earliest, as selection keeps the first best
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["selected_epoch"] == best["epoch"]
    with pytest.raises(ConfigError, match=r"valid/recall@10.*several held-out items.*hit_rate@K"):
        recforge.train("mf", data=str(log), user_col="u", item_col="i", time_col="t", epochs=1,
                       output_dir=tmp_path / "loo", **{"train.monitor": "valid/recall@10"})
