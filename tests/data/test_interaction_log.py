"""Own interaction logs (issue 14, item 2): the same split as the registered datasets, ids of any type."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.data.datasets.interaction_log import InteractionLogSequences, LogOptions, build_leave_one_out, load_leave_one_out
from recforge.data.datasets.movielens import MovieLens100K
from recforge.data.datasets.sequence_sets import MovieLens100KSeq
from recforge.data.id_maps import encode_ids, load_id_maps, load_train_interactions, write_run_artefacts
from recforge.errors import DataError

ML100K_COLUMNS = ("user", "item", "rating", "time")


def ml100k_log(shared_data, **changes) -> LogOptions:
    """``u.data.gz`` exactly as GroupLens ships it: headerless, tab-separated."""
    values = dict(paths=(str(shared_data / "ml-100k" / "u.data.gz"),), user_col="user", item_col="item", time_col="time",
                  columns=ML100K_COLUMNS, sep="\\t")
    values.update(changes)
    return LogOptions(**values)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def test_ml100k_log_gives_the_registered_leave_one_out_split(shared_data):
    paths = MovieLens100K().verify(shared_data)
    registered = MovieLens100K().build(paths, seed=3).with_validation(seed=3)
    own = load_leave_one_out(ml100k_log(shared_data), seed=3).with_validation(seed=3)
    assert (own.num_users, own.num_items) == (registered.num_users, registered.num_items) == (943, 1682)
    for field in ("train_users", "train_items", "test_users", "test_candidates", "valid_users", "valid_candidates"):
        np.testing.assert_array_equal(getattr(own, field), getattr(registered, field), err_msg=field)
    # internal id = position of the raw id in ascending order, as the registered dataset maps them
    raw_users, raw_items, _ = MovieLens100K().read_ratings(paths["ratings"])
    np.testing.assert_array_equal(own.user_ids.to_numpy(), np.unique(raw_users))
    np.testing.assert_array_equal(own.item_ids.to_numpy(), np.unique(raw_items))
    # the second load is served from the cache and equal, vocabularies included
    again = load_leave_one_out(ml100k_log(shared_data), seed=3)
    np.testing.assert_array_equal(again.train_items, load_leave_one_out(ml100k_log(shared_data), seed=3, use_cache=False).train_items)
    assert again.item_ids.equals(own.item_ids) and again.user_ids.equals(own.user_ids)


def test_ml100k_log_gives_the_registered_behaviour_samples(shared_data):
    registered = MovieLens100KSeq()
    reg = registered.read(registered.verify(shared_data), seed=5)
    own_source = InteractionLogSequences(ml100k_log(shared_data))
    own = own_source.read(own_source.verify(), seed=5)
    same = ["user_id", "item_id", "hist_item_id", "label", "time"]  # the log has no genre: category differs
    for split in ("train", "valid", "test"):
        assert getattr(own, split).select(same).equals(getattr(reg, split).select(same)), split
    assert own.stats["leakage_share"] == reg.stats["leakage_share"]
    assert set(own.train.column("item_category").to_numpy()) == {0}


def test_string_ids_and_int64_beyond_2_31_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    users = np.array([f"user-{u}" for u in rng.integers(0, 30, 3000)])
    items = (1 << 40) + rng.integers(0, 500, 3000) * 7919  # > 2**31, sparse
    times = rng.integers(0, 10**6, 3000)
    pq.write_table(pa.table({"u": users, "i": items, "t": times}), tmp_path / "log.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # repeated pairs are dropped with a warning
        data = build_leave_one_out(LogOptions((str(tmp_path / "log.parquet"),), "u", "i", "t"), seed=0)
    assert data.user_ids.type == pa.string() and data.item_ids.type == pa.int64()
    assert data.user_ids.to_pylist() == sorted(set(users.tolist()))
    assert data.item_ids.to_pylist() == sorted(set(items.tolist()))
    pairs = {(u, i) for u, i in zip(users.tolist(), items.tolist())}
    decoded = set(zip(data.user_ids.take(pa.array(data.train_users)).to_pylist(), data.item_ids.take(pa.array(data.train_items)).to_pylist()))
    decoded |= set(zip(data.user_ids.take(pa.array(data.test_users)).to_pylist(), data.item_ids.take(pa.array(data.test_candidates[:, 0])).to_pylist()))
    assert decoded == pairs  # every distinct pair once, as train or test, ids back as they were
    assert len(data.train_users) + len(data.test_users) == len(pairs)
    # the run artefacts keep them exactly
    write_run_artefacts(tmp_path, data.train_users, data.train_items, data.num_users, data.num_items, data.user_ids, data.item_ids)
    user_ids, item_ids = load_id_maps(tmp_path)
    assert user_ids.equals(data.user_ids) and item_ids.equals(data.item_ids)
    saved = load_train_interactions(tmp_path)
    np.testing.assert_array_equal(saved["train_items"], data.train_items)
    assert (saved["num_users"], saved["num_items"]) == (data.num_users, data.num_items)


def test_encode_ids_is_ascending_and_independent_of_row_order():
    internal, vocab = encode_ids(pa.array(["b", "a", "c", "a"]))
    assert vocab.to_pylist() == ["a", "b", "c"] and internal.tolist() == [1, 0, 2, 0]
    internal, vocab = encode_ids(pa.array([3 << 33, -5, 3 << 33, 7]))
    assert vocab.to_pylist() == [-5, 7, 3 << 33] and internal.tolist() == [2, 0, 2, 1]


def sparse_rows(num_users=100, num_items=120, per_user=4, seed=0):
    """(user, item, time) rows, each user a few distinct items: every user has 99 negatives to draw."""
    rng = np.random.default_rng(seed)
    return [(u, int(i), int(t)) for u in range(num_users)
            for i, t in zip(rng.choice(num_items, per_user, replace=False), rng.integers(0, 1000, per_user))]


def test_tie_rule_and_repeated_pairs(tmp_path):
    # user 1: items 20 and 10 share the latest time 5 -> the larger item (20) is the test item,
    # whatever the row order; user 2 repeats item 10 at times 1 and 9 -> one pair, latest time 9, so test.
    rows = [(1, 10, 5), (1, 20, 5), (1, 30, 1), (2, 10, 1), (2, 30, 4), (2, 10, 9), (3, 40, 2), (3, 30, 3)]
    extra = {u: 100 + 2 * (u - 10) + 1 for u in range(10, 60)}  # users 10..59 bring 100 more items,
    rows += [(u, item - j, 2 - j) for u, item in extra.items() for j in (0, 1)]  # enough for 99 negatives
    tests = []
    for order in (rows, rows[::-1]):
        path = write_csv(tmp_path / f"log{len(tests)}.csv", ("u", "i", "t"), order)
        with pytest.warns(UserWarning, match="dropped 1 repeated"):
            data = build_leave_one_out(LogOptions((str(path),), "u", "i", "t"), seed=0)
        raw_test = dict(zip(data.user_ids.take(pa.array(data.test_users)).to_pylist(),
                            data.item_ids.take(pa.array(data.test_candidates[:, 0])).to_pylist()))
        tests.append(raw_test)
        assert data.num_train == len(rows) - 1 - 53  # one repeat dropped, one test item per user
    assert tests[0] == tests[1] == {1: 20, 2: 10, 3: 30, **extra}


def test_without_time_column_a_seeded_random_item_with_a_warning(tmp_path):
    rows = [(u, i) for u, i, _ in sparse_rows()]
    path = write_csv(tmp_path / "log.csv", ("u", "i"), rows)
    with pytest.warns(UserWarning, match="no timestamps"):
        a = build_leave_one_out(LogOptions((str(path),), "u", "i"), seed=1)
    with pytest.warns(UserWarning, match="no timestamps"):
        b = build_leave_one_out(LogOptions((str(path),), "u", "i"), seed=1)
    np.testing.assert_array_equal(a.test_candidates, b.test_candidates)


@pytest.mark.parametrize(
    "content, options, expected",
    [
        ("u,i,t\n1,2,3\n2,3,4\n", dict(user_col="user"), r"no column 'user' \(--user-col\)"),
        ("", {}, "no data rows"),
        ("u,i,t\n1,2,3\n2,3\n", {}, "line 3"),
        ("u,i,t\n" + "".join(f"7,{i},{i}\n" for i in range(200)), {}, "column 'u' holds a single user"),
        ("u,i,t\n1,2,3\n,3,4\n", {}, r"line 3: column 'u' is empty"),
        ("u,i,t\n1,2.5,3\n2,3,4\n", {}, "column 'i' holds double"),
    ],
)
def test_bad_logs_are_one_data_error_naming_the_file(tmp_path, content, options, expected):
    path = tmp_path / "events.csv"
    path.write_text(content)
    values = dict(user_col="u", item_col="i", time_col="t")
    values.update(options)
    with pytest.raises(DataError, match=expected) as info:
        build_leave_one_out(LogOptions((str(path),), **values), seed=0)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_gzip_and_several_files_are_one_log(tmp_path):
    rows = sparse_rows()
    whole = write_csv(tmp_path / "all.csv", ("u", "i", "t"), rows)
    first = tmp_path / "a.csv.gz"
    with gzip.open(first, "wt") as f:
        f.write("u,i,t\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows[:170]))
    second = write_csv(tmp_path / "b.csv", ("u", "i", "t"), rows[170:])
    a = build_leave_one_out(LogOptions((str(whole),), "u", "i", "t"), seed=0)
    b = build_leave_one_out(LogOptions((str(first), str(second)), "u", "i", "t"), seed=0)
    np.testing.assert_array_equal(a.test_candidates, b.test_candidates)
    np.testing.assert_array_equal(a.train_items, b.train_items)
