"""Behaviour-sequence samples (recforge.data.sequences) and the sequence datasets: no leakage into
histories, tie rule, negatives, per-user and global time splits, the leakage figure, real data."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.datasets import get_dataset
from recforge.data.datasets.sequence_sets import read_electronics, read_electronics_sample
from recforge.data.preprocessing import Preprocessor
from recforge.data.sequences import behaviour_samples
from recforge.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


def _events(seed: int = 0, num_users: int = 6, num_items: int = 40):
    """Random events with many timestamp ties and 1..12 events per user, no repeated (user, item)."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(num_users):
        n = int(rng.integers(1, 13))
        users += [user * 10 + 7] * n  # raw ids need not be dense
        items += rng.choice(num_items, size=n, replace=False).tolist()
        times += rng.integers(100, 106, size=n).tolist()  # few distinct times: ties
    categories = np.arange(num_items) % 5 + 100
    return np.array(users), np.array(items), np.array(times), categories, num_items


def _expected_histories(users, items, times, max_length):
    """Brute force: (user, time, item) of each event -> the items strictly before it, oldest first."""
    out = {}
    for user in set(users.tolist()):
        events = sorted((t, i) for u, t, i in zip(users, times, items) if u == user)
        for k, (t, i) in enumerate(events):
            out[(user, t, i)] = [item for _, item in events[:k]][-max_length:] if k else []
    return out


def _all_rows(tables):
    return pa.concat_tables([tables[s] for s in SPLITS]).to_pylist()


@pytest.mark.parametrize("max_length", [50, 3])
def test_history_is_exactly_the_earlier_events_and_truncation_keeps_the_latest(max_length):
    users, items, times, categories, num_items = _events()
    tables, info = behaviour_samples(users, items, times, categories, num_items, max_length=max_length)
    expected = _expected_histories(users, items, times, max_length)
    rows = _all_rows(tables)
    assert len(rows) == 2 * len(users) == 2 * info["events"]
    for pos, neg in zip(rows[0::2], rows[1::2]):
        assert pos["label"] == 1.0 and neg["label"] == 0.0
        history = expected[(pos["user_id"], pos["time"], pos["item_id"])]
        assert pos["hist_item_id"] == history  # exactly the earlier events, never the target or later ones
        assert pos["item_id"] not in pos["hist_item_id"]
        assert pos["hist_item_category"] == [int(categories[i]) for i in history]
        assert pos["item_category"] == categories[pos["item_id"]]
        for key in ("user_id", "time", "hist_item_id", "hist_item_category"):
            assert neg[key] == pos[key]
        assert neg["item_category"] == categories[neg["item_id"]]
    longest = max(int((users == u).sum()) for u in set(users.tolist()))
    assert max(len(r["hist_item_id"]) for r in rows) == min(max_length, longest - 1)


def test_truncation_keeps_the_last_max_length_items():
    users = np.zeros(7, np.int64)
    items = np.arange(7)
    times = np.arange(7) * 10
    tables, _ = behaviour_samples(users, items, times, np.zeros(10, np.int64), 10, max_length=3)
    test = tables["test"].to_pylist()
    assert test[0]["item_id"] == 6 and test[0]["hist_item_id"] == [3, 4, 5]
    train = tables["train"].to_pylist()
    assert [r["hist_item_id"] for r in train[0::2]] == [[], [0], [0, 1], [0, 1, 2], [1, 2, 3]]


def test_first_event_has_an_empty_history_and_every_user_has_one():
    users, items, times, categories, num_items = _events(seed=1)
    tables, info = behaviour_samples(users, items, times, categories, num_items)
    rows = _all_rows(tables)
    first_time = {u: min(t for uu, t in zip(users, times) if uu == u) for u in set(users.tolist())}
    empty = [r for r in rows if r["label"] == 1.0 and not r["hist_item_id"]]
    assert sorted(r["user_id"] for r in empty) == sorted(first_time)  # one empty history per user
    for r in empty:
        assert r["time"] == first_time[r["user_id"]]
        assert r["hist_item_category"] == []
    assert sum(info["empty_history_rows"].values()) == 2 * len(first_time)


def test_tie_rule_does_not_depend_on_row_order():
    users, items, times, categories, num_items = _events(seed=2)
    assert len(np.unique(np.stack([users, times]), axis=1).T) < len(users)  # the case has ties
    reference, info = behaviour_samples(users, items, times, categories, num_items, seed=5)
    for shuffle_seed in range(3):
        perm = np.random.default_rng(shuffle_seed).permutation(len(users))
        shuffled, other = behaviour_samples(users[perm], items[perm], times[perm], categories, num_items, seed=5)
        for split in SPLITS:
            assert shuffled[split].equals(reference[split])
        assert other == info
    # ties are broken by item id: two events at one time come out smaller item first
    tables, _ = behaviour_samples(np.zeros(3, np.int64), np.array([9, 4, 6]), np.array([5, 5, 5]), np.zeros(10, np.int64), 10)
    assert tables["test"].column("item_id")[0].as_py() == 9
    assert tables["test"].column("hist_item_id")[0].as_py() == [4, 6]


def test_negatives_avoid_every_item_of_the_user_and_are_seeded():
    users, items, times, categories, num_items = _events(seed=3, num_items=25)
    owned = {u: set(items[users == u].tolist()) for u in set(users.tolist())}
    first, _ = behaviour_samples(users, items, times, categories, num_items, seed=11)
    negatives = [r for r in _all_rows(first) if r["label"] == 0.0]
    assert len(negatives) == len(users)
    for r in negatives:
        assert r["item_id"] not in owned[r["user_id"]]  # not even the user's later items
        assert 0 <= r["item_id"] < num_items
    again, _ = behaviour_samples(users, items, times, categories, num_items, seed=11)
    other, _ = behaviour_samples(users, items, times, categories, num_items, seed=12)
    assert all(again[s].equals(first[s]) for s in SPLITS)
    assert any(not other[s].column("item_id").equals(first[s].column("item_id")) for s in SPLITS)
    with pytest.raises(DataError, match="all 3 items"):
        behaviour_samples(np.zeros(3, np.int64), np.arange(3), np.arange(3), np.zeros(3, np.int64), 3)


def test_item_ids_label_the_tables_but_sampling_uses_the_indices():
    raw = np.array([1000, 2000, 3000, 4000])
    tables, _ = behaviour_samples(np.zeros(3, np.int64), np.array([0, 1, 2]), np.arange(3), np.zeros(4, np.int64), 4, item_ids=raw)
    test = tables["test"].to_pylist()
    assert test[0]["item_id"] == 3000 and test[0]["hist_item_id"] == [1000, 2000]
    assert test[1]["item_id"] == 4000  # the only item the user never had


def test_per_user_split_last_event_test_second_last_valid():
    users, items, times, categories, num_items = _events(seed=4, num_users=8)
    tables, info = behaviour_samples(users, items, times, categories, num_items)
    counts = {u: int((users == u).sum()) for u in set(users.tolist())}
    ordered = {u: sorted(zip(times[users == u], items[users == u])) for u in counts}
    long_users = [u for u, n in counts.items() if n >= 3]
    assert any(n < 3 for n in counts.values())  # the case has short users
    for split, k in (("test", -1), ("valid", -2)):
        rows = tables[split].to_pylist()
        assert len(rows) == 2 * len(long_users)
        assert sorted(r["user_id"] for r in rows[0::2]) == sorted(long_users)
        for r in rows[0::2]:
            assert (r["time"], r["item_id"]) == ordered[r["user_id"]][k]
    train_users = tables["train"].column("user_id").to_numpy()
    for user, n in counts.items():
        assert (train_users == user).sum() == 2 * (n if n < 3 else n - 2)  # short users: all train
    assert info["users_with_3_or_more_events"] == len(long_users)
    assert info["users_train_only"] == len(counts) - len(long_users)
    assert info["rows"] == {s: tables[s].num_rows for s in SPLITS}
    assert info["test_users_without_train_events"] == 0


def test_leakage_figure_on_a_constructed_case():
    # user 1: times 1, 2, 3 (test at 3); user 2: 10..14 (train 10, 11, 12; valid 13; test 14);
    # user 3: 20, 21, 22 (train 20; valid 21; test 22)
    users = np.array([1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3])
    times = np.array([1, 2, 3, 10, 11, 12, 13, 14, 20, 21, 22])
    items = np.arange(11)
    _, info = behaviour_samples(users, items, times, np.zeros(20, np.int64), 20)
    assert info["first_test_time"] == 3
    # training rows at times 1, 10, 11, 12, 20: four of five lie after the earliest test time 3
    assert info["leakage_share"] == pytest.approx(0.8)
    assert info["leakage_share_after_median_test_time"] == pytest.approx(0.2)  # median test time 14


def test_global_time_split_cuts_time_reports_zero_leakage_and_cold_users():
    # user 5 only has late events: a cold test user; user 1 spans the cut
    users = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 5])
    times = np.array([1, 2, 3, 3, 9, 10, 1, 2, 3, 8, 10, 10])
    items = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 6, 7])
    tables, info = behaviour_samples(
        users, items, times, np.zeros(10, np.int64), 10, split="global_time", time_fractions=(0.5, 0.25, 0.25)
    )
    # times in order 1 1 2 2 3 3 | 3 8 9 | 10 10 10: the cut after 6 events splits timestamp 3, which
    # then goes to valid whole; test starts at time 10.
    assert info["valid_start_time"] == 3 and info["test_start_time"] == 10
    assert info["events_per_split"] == {"train": 4, "valid": 5, "test": 3}
    train_times = tables["train"].column("time").to_numpy()
    test_times = tables["test"].column("time").to_numpy()
    assert train_times.max() < tables["valid"].column("time").to_numpy().min() <= tables["valid"].column("time").to_numpy().max() < test_times.min()
    assert info["leakage_share"] == 0.0
    assert info["test_users_without_train_events"] == 1  # user 5
    # histories keep every earlier event, also those of the training set
    test = {(r["user_id"], r["item_id"]): r for r in tables["test"].to_pylist() if r["label"] == 1.0}
    assert test[(1, 5)]["hist_item_id"] == [0, 1, 2, 3, 4]
    assert test[(5, 7)]["hist_item_id"] == [6]
    assert test[(5, 6)]["hist_item_id"] == []


def test_bad_arguments_and_empty_input():
    ok = (np.zeros(2, np.int64), np.arange(2), np.arange(2), np.zeros(3, np.int64), 3)
    with pytest.raises(ConfigError, match="split"):
        behaviour_samples(*ok, split="random")
    with pytest.raises(ConfigError, match="time_fractions"):
        behaviour_samples(*ok, split="global_time", time_fractions=(0.8, 0.1, 0.2))
    with pytest.raises(DataError, match="outside"):
        behaviour_samples(np.zeros(2, np.int64), np.array([0, 3]), np.arange(2), np.zeros(3, np.int64), 3)
    with pytest.raises(DataError, match="integers"):
        behaviour_samples(np.zeros(2, np.int64), np.arange(2), np.array([0.5, 1.0]), np.zeros(3, np.int64), 3)
    tables, info = behaviour_samples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(3, np.int64), 3)
    assert all(tables[s].num_rows == 0 for s in SPLITS) and info["users"] == 0


def test_empty_histories_encode_as_zero_length_sequences():
    users, items, times, categories, num_items = _events(seed=6)
    tables, _ = behaviour_samples(users, items, times, categories, num_items)
    schema = get_dataset("amazon-grocery").default_schema()
    encoded = Preprocessor(schema).fit(tables["train"]).transform(tables["train"])
    empty = np.array([len(h) == 0 for h in tables["train"].column("hist_item_id").to_pylist()])
    assert empty.any()
    for name in ("hist_item_id", "hist_item_category"):
        assert (encoded.lengths[name][empty] == 0).all() and (encoded.sequences[name][empty] == 0).all()
        assert (encoded.lengths[name][~empty] > 0).all()


# ---------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real(shared_data):
    return {name: get_dataset(name).load(shared_data, seed=0, use_cache=False) for name in ("amazon-grocery", "movielens-100k-seq")}


def _raw_counts(shared_data, name):
    """Events per user straight from the files."""
    source = get_dataset(name)
    events = source.read_events(source.verify(shared_data))
    return np.unique(events.users, return_counts=True)[1]


@pytest.mark.parametrize(("name", "users"), [("amazon-grocery", 14681), ("movielens-100k-seq", 943)])
def test_real_datasets_load_with_expected_users_and_balanced_labels(real, shared_data, name, users):
    data = real[name]
    counts = _raw_counts(shared_data, name)
    assert len(counts) == users == data.info["users"]
    assert len(np.unique(np.concatenate([data.split(s).groups for s in SPLITS]))) == users
    long_users = int((counts >= 3).sum())
    assert len(data.test) == 2 * long_users == len(data.valid)
    assert len(data.train) + len(data.valid) + len(data.test) == 2 * counts.sum()
    for split in SPLITS:
        cols = data.split(split)
        assert cols.labels[:, 0].mean() == 0.5
        assert cols.groups is not None and len(cols.groups) == len(cols)
        for spec in data.schema.features:
            block = cols.sequences[spec.name] if spec.kind == "sequence" else cols.sparse[:, data.schema.column(spec.name)]
            assert block.max() < data.schema.vocab_size(spec.name)
    # a test row's history is all the user's n - 1 earlier events, at most 50
    test_lengths = data.test.lengths["hist_item_id"]
    per_user = dict(zip(*np.unique(np.concatenate([data.split(s).groups for s in SPLITS]), return_counts=True)))
    expected = np.minimum(np.array([per_user[g] // 2 - 1 for g in data.test.groups]), 50)
    assert np.array_equal(test_lengths, expected)
    assert (data.train.lengths["hist_item_id"] == 0).sum() == 2 * users  # first events: empty history
    assert 0.0 <= data.info["leakage_share"] <= 1.0


def test_grocery_time_split_has_no_leakage_and_cold_test_users(shared_data):
    data = get_dataset("amazon-grocery-time").load(shared_data, seed=0, use_cache=False)
    assert data.info["leakage_share"] == 0.0 and data.info["test_users_without_train_events"] > 0
    assert data.info["events"] == 121892
    for split in SPLITS:
        assert data.split(split).labels.mean() == 0.5


# ---------------------------------------------------------------------------------- electronics
@pytest.fixture(scope="module")
def electronics_sample(shared_data):
    return shared_data / "rechub-samples" / "amazon_electronics_sample.csv"


def test_electronics_sample_parses_and_builds_samples(electronics_sample):
    events = read_electronics_sample(electronics_sample)
    assert len(events.users) == 100 and len(np.unique(events.users)) == 17 and events.num_items == 99
    source = get_dataset("amazon-electronics")
    raw = source.samples(events, seed=0)
    data = source.encode(raw, source.default_schema(), seed=0)
    counts = np.unique(events.users, return_counts=True)[1]
    assert len(data.test) == 2 * int((counts >= 3).sum()) == 32
    assert data.info["users_train_only"] == 1  # the sample cut one user down to a single review
    assert sum(len(data.split(s)) for s in SPLITS) == 200
    assert all(data.split(s).labels.mean() == 0.5 for s in SPLITS)


def _mcauley_files(folder, events, extra_review=None):
    """The sample's events written in McAuley's formats (reviews JSON lines, metadata Python literals)."""
    folder.mkdir(parents=True, exist_ok=True)
    reviews = [
        {"reviewerID": f"U{u:05d}", "asin": f"B{i:09d}", "reviewerName": "x", "overall": 5.0, "unixReviewTime": int(t)}
        for u, i, t in zip(events.users, events.item_ids[events.items], events.times)
    ]
    if extra_review:
        reviews.append(extra_review)
    with gzip.open(folder / "reviews_Electronics_5.json.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in reviews)
    lines = [
        repr({"asin": f"B{i:09d}", "title": "It's \"quoted\" [[x]]", "categories": [["Electronics", "Audio"], ["Electronics", "Kids' Toys", f"C{c:04d}"]]})
        for i, c in zip(events.item_ids, events.item_categories)
    ]
    # keys in another order, and an item nobody reviewed (skipped): 100 lines in all
    lines[0] = repr({"categories": [["Home", f"C{events.item_categories[0]:04d}"]], "asin": f"B{events.item_ids[0]:09d}"})
    lines.insert(3, repr({"asin": "UNREVIEWED", "categories": [["Books"]]}))
    with gzip.open(folder / "meta_Electronics.json.gz", "wt") as f:
        f.writelines(line + "\n" for line in lines)
    return folder


def test_electronics_reader_follows_din_preprocessing(tmp_path, electronics_sample):
    sample = read_electronics_sample(electronics_sample)
    folder = _mcauley_files(tmp_path / "amazon-electronics", sample)
    events = read_electronics(folder / "reviews_Electronics_5.json.gz", folder / "meta_Electronics.json.gz")
    # ids in ascending string order (zero-padded, so the same order as the sample's numbers)
    assert np.array_equal(np.unique(events.users, return_inverse=True)[1], np.unique(sample.users, return_inverse=True)[1])
    assert np.array_equal(events.items, sample.items) and np.array_equal(events.times, sample.times)
    # category = categories[-1][-1], numbered in string order
    assert np.array_equal(events.item_categories, np.unique(sample.item_categories, return_inverse=True)[1])
    assert events.notes["items_without_metadata"] == 0
    data = get_dataset("amazon-electronics").load(tmp_path, seed=0, use_cache=False)
    assert len(data.test) == 32 and data.info["users"] == 17


def test_electronics_reader_errors_and_missing_metadata(tmp_path, electronics_sample):
    sample = read_electronics_sample(electronics_sample)
    folder = _mcauley_files(tmp_path / "a", sample, {"reviewerID": "U99999", "asin": "NOMETA", "unixReviewTime": 1})
    events = read_electronics(folder / "reviews_Electronics_5.json.gz", folder / "meta_Electronics.json.gz")
    assert events.notes["items_without_metadata"] == 1 and events.num_items == 100
    bad = tmp_path / "b"
    _mcauley_files(bad, sample, {"reviewerID": "U99999", "asin": "X"})  # no unixReviewTime
    with pytest.raises(DataError, match="unixReviewTime") as info:
        read_electronics(bad / "reviews_Electronics_5.json.gz", bad / "meta_Electronics.json.gz")
    assert info.value.line == 101
    with gzip.open(bad / "meta_Electronics.json.gz", "at") as f:
        f.write("{'asin': 'B%09d', 'categories': 'not a list'\n" % sample.item_ids[0])
    with pytest.raises(DataError, match="categories") as info:
        read_electronics(folder / "reviews_Electronics_5.json.gz", bad / "meta_Electronics.json.gz")
    assert info.value.line == 101
    (tmp_path / "c" / "amazon-electronics").mkdir(parents=True)
    (tmp_path / "c" / "amazon-electronics" / "reviews_Electronics_5.json.gz").write_bytes(b"<html>not found</html>")
    (tmp_path / "c" / "amazon-electronics" / "meta_Electronics.json.gz").write_bytes(gzip.compress(b"{}"))
    with pytest.raises(DataError, match="format only"):
        get_dataset("amazon-electronics").verify(tmp_path / "c")
