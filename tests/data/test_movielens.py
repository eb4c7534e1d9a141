"""Real-data loader tests on ../shared/data (they run in CI)."""

import gzip
import shutil

import numpy as np
import pytest

from recforge.data.datasets import get_dataset
from recforge.data.readers import read_int_columns, read_ncf_negatives
from recforge.errors import DataError, DataMissingError, UnknownNameError


def test_ncf_counts(shared_data):
    data = get_dataset("movielens-1m-ncf").load(shared_data)
    assert (data.num_users, data.num_items) == (6040, 3706)
    assert data.num_train == 994169
    assert data.test_candidates.shape == (6040, 100)
    assert np.array_equal(data.test_users, np.arange(6040))
    # the authors' file repeats the test item among its own negatives 156 times (kept as is)
    assert int((data.test_candidates[:, 1:] == data.test_candidates[:, :1]).sum()) == 156
    valid = data.with_validation(seed=0)
    assert valid.num_train == 994169 - 6040
    assert valid.valid_candidates.shape == (6040, 100)
    known = data.train_index()
    assert not known.contains(np.repeat(valid.valid_users, 99), valid.valid_candidates[:, 1:].ravel()).any()
    # the validation interaction really left the training pairs
    assert not valid.train_index().contains(valid.valid_users, valid.valid_candidates[:, 0]).any()


def test_cache_round_trip_is_identical(shared_data):
    source = get_dataset("movielens-100k")
    a = source.load(shared_data, seed=3)
    b = source.load(shared_data, seed=3)  # from the cache written by the first call
    c = source.load(shared_data, seed=3, use_cache=False)
    for x in (b, c):
        assert np.array_equal(a.test_candidates, x.test_candidates)
        assert np.array_equal(a.train_items, x.train_items)


def test_raw_movielens_counts_and_negatives(shared_data):
    for name, users, items, ratings in (("movielens-100k", 943, 1682, 100000), ("movielens-1m", 6040, 3706, 1000209)):
        data = get_dataset(name).load(shared_data, seed=0)
        assert (data.num_users, data.num_items) == (users, items)
        assert data.num_train == ratings - users
        negs = data.test_candidates[:, 1:]
        assert negs.shape == (users, 99)
        assert all(len(set(r)) == 99 for r in negs.tolist())
        assert not (negs == data.test_candidates[:, :1]).any()
        assert not data.train_index().contains(np.repeat(data.test_users, 99), negs.ravel()).any()
        other = get_dataset(name).load(shared_data, seed=1, use_cache=False)
        assert not np.array_equal(other.test_candidates[:, 1:], negs)


def test_movielens_100k_holds_out_latest(shared_data):
    data = get_dataset("movielens-100k").load(shared_data)
    with gzip.open(shared_data / "ml-100k" / "u.data.gz", "rt") as f:
        raw = np.loadtxt(f, dtype=np.int64)
    user0 = raw[raw[:, 0] == 1]  # raw user 1 -> dense 0
    latest = user0[user0[:, 3] == user0[:, 3].max()]
    assert data.test_candidates[0, 0] + 1 == latest[:, 1].max()


def test_missing_directory_says_how_to_get_data(tmp_path):
    with pytest.raises(DataMissingError, match="recforge data prepare movielens-1m-ncf --download"):
        get_dataset("movielens-1m-ncf").load(tmp_path)


def test_corrupt_file_fails_checksum(tmp_path, shared_data):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    data = gzip.decompress((shared_data / "ml-100k" / "u.data.gz").read_bytes())
    (folder / "u.data").write_bytes(data[:-100])
    with pytest.raises(DataError, match="checksum mismatch"):
        get_dataset("movielens-100k").load(tmp_path)


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("0\t1\n0\t2\n1\tx\n")
    with pytest.raises(DataError, match=r"pairs.tsv, line 3: expected 2 '\\t'-separated integers"):
        read_int_columns(path, 2, "\t", ("user", "item"))
    path.write_text("0\t1\n5\n")
    with pytest.raises(DataError, match="line 2"):
        read_int_columns(path, 2, "\t")
    neg = tmp_path / "x.test.negative"
    neg.write_text("(0,1)\t5\t6\n(1,2)\t5\n")
    with pytest.raises(DataError, match="line 2: expected 2 negative items"):
        read_ncf_negatives(neg)
    neg.write_text("0,1\t5\t6\n")
    with pytest.raises(DataError, match=r"line 1: expected '\(user,item\)'"):
        read_ncf_negatives(neg)


def test_multichar_separator(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::978300760\n2::20::3::978302109\n")
    users, items, _, ts = read_int_columns(path, 4, "::")
    assert users.tolist() == [1, 2] and ts.tolist() == [978300760, 978302109]
    path.write_text("1::10::5::978300760\n2::20\n")
    with pytest.raises(DataError, match="ratings.dat, line 2"):
        read_int_columns(path, 4, "::")


def test_unknown_dataset_lists_names():
    with pytest.raises(UnknownNameError, match="movielens-1m-ncf"):
        get_dataset("movielens-2m")


def test_data_dir_from_environment(monkeypatch, shared_data, tmp_path):
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    shutil.copytree(shared_data / "ml-100k", tmp_path / "ml-100k")
    assert get_dataset("movielens-100k").load().num_users == 943
