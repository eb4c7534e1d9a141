"""CTR / multi-task tabular datasets on the real files in ../shared/data: avazu-head-10k, avazu,
movielens-100k-ctr, frappe, census-income (split sizes, label rates, vocabularies, OOV, quirks)."""

from __future__ import annotations

import gzip
import shutil
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.datasets import avazu, census, frappe, get_dataset, movielens, movielens_ctr
from recforge.data.preprocessing import OOV_ID, PADDING_ID, Preprocessor
from recforge.errors import DataError, DataMissingError

# name -> rows per split, positive rate per split (first label), tolerance
EXPECTED = {
    "avazu-head-10k": ({"train": 7998, "valid": 1001, "test": 1000}, {"train": 0.1737, "valid": 0.1738, "test": 0.143}),
    "movielens-100k-ctr": ({"train": 80000, "valid": 9999, "test": 10001}, {"train": 0.5537, "valid": 0.5538, "test": 0.5537}),
    "frappe": ({"train": 202806, "valid": 57722, "test": 28860}, {"train": 1 / 3, "valid": 0.3303, "test": 0.3304}),
    "census-income": ({"train": 79808, "valid": 9977, "test": 9977}, {"train": 0.0620, "valid": 0.0620, "test": 0.0620}),
}
# one categorical feature per dataset for the out-of-vocabulary check on a tiny fitted table
OOV_FEATURE = {"avazu-head-10k": "device_ip", "movielens-100k-ctr": "zip_prefix", "frappe": "user", "census-income": "country_of_birth_self"}


@pytest.fixture(scope="module")
def loaded(shared_data):
    """Each dataset loaded once (seed 0, no cache: module fixtures run outside the temp cache)."""
    return {name: get_dataset(name).load(shared_data, seed=0, use_cache=False) for name in EXPECTED}


@pytest.fixture(scope="module")
def raw_tables(shared_data):
    """The unencoded tables of each dataset (seed 0)."""
    out = {}
    for name in EXPECTED:
        source = get_dataset(name)
        out[name] = source.read(source.verify(shared_data), seed=0)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_split_sizes_labels_and_vocabularies(loaded, name):
    data = loaded[name]
    rows, rates = EXPECTED[name]
    assert data.info["rows"] == rows
    for split, n in rows.items():
        columns = data.split(split)
        assert len(columns) == n
        labels = columns.labels
        assert not np.isnan(labels).any()
        assert set(np.unique(labels[:, 0])) == {0.0, 1.0}  # both classes in every split
        assert labels[:, 0].mean() == pytest.approx(rates[split], abs=5e-4)
        assert (columns.sparse >= 0).all()
        for spec in data.schema.sparse:
            assert columns.sparse[:, data.schema.column(spec.name)].max() < spec.vocab_size
    for spec in data.schema.features:
        if spec.kind != "dense":
            assert spec.vocab_size >= 3, spec.name  # padding, OOV and at least one known value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_value_unseen_in_training_maps_to_oov(raw_tables, name):
    raw = raw_tables[name]
    feature = OOV_FEATURE[name]
    schema = get_dataset(name).default_schema()
    tiny = raw.train.slice(0, 30)
    pre = Preprocessor(schema).fit(tiny)
    other = raw.test if raw.test is not None else raw.train.slice(30)
    values = other.column(feature).to_numpy(zero_copy_only=False)
    seen = set(tiny.column(feature).to_pylist())
    ids = pre.transform(other).sparse[:, schema.column(feature)]
    missing = np.array([v is None for v in values])
    unseen = np.array([v is not None and v not in seen for v in values])
    assert unseen.any() and (~unseen & ~missing).any()
    assert (ids[unseen] == OOV_ID).all()
    assert (ids[missing] == PADDING_ID).all()
    assert (ids[~unseen & ~missing] >= 2).all()


def test_real_unseen_categories_are_oov(loaded, raw_tables):
    """On the real splits: frappe validation users and Avazu test device ips unseen in training get id 1."""
    for name, feature in (("frappe", "user"), ("avazu-head-10k", "device_ip")):
        data, raw = loaded[name], raw_tables[name]
        known = set(data.preprocessing["vocabularies"][feature])
        values = raw.test.column(feature).to_pylist()
        unseen = np.array([v not in known for v in values])
        ids = data.test.sparse[:, data.schema.column(feature)]
        assert unseen.sum() > 0
        assert (ids[unseen] == OOV_ID).all() and (ids[~unseen] >= 2).all()


# ---------------------------------------------------------------------------------- avazu
def test_avazu_head_time_fields_and_test_file(loaded, raw_tables):
    raw = raw_tables["avazu-head-10k"]
    assert raw.train.num_rows == 8999 and raw.test.num_rows == 1000
    # the head sample is one hour: 2014-10-21 00:00, a Tuesday
    for table in (raw.train, raw.test):
        assert set(table.column("hour").to_pylist()) == {"14102100"}
        assert set(table.column("hour_of_day").to_pylist()) == {"00"}
        assert set(table.column("weekday").to_pylist()) == {"1"}
        assert set(table.column("is_weekend").to_pylist()) == {"0"}
    assert "id" not in loaded["avazu-head-10k"].schema and "click" not in loaded["avazu-head-10k"].schema
    assert len(loaded["avazu-head-10k"].schema.sparse) == 25
    # test.gz continues train.gz (rows of the hour are sorted by id as strings)
    assert raw.train.column("id")[-1].as_py() < raw.test.column("id")[0].as_py() == "11255110858913963181"


def test_full_avazu_needs_kaggle_and_reads_its_file(shared_data, tmp_path):
    source = get_dataset("avazu")
    with pytest.raises(DataMissingError, match="kaggle"):
        source.download(tmp_path)
    with pytest.raises(DataMissingError, match="train.gz or train.csv"):
        source.verify(tmp_path)
    # a tiny train.csv from the head sample: header check, parsing, 8:1:1 split, min_count 2
    folder = tmp_path / "avazu"
    folder.mkdir()
    with gzip.open(shared_data / "avazu-head-10k" / "train.gz", "rt") as f:
        lines = [next(f) for _ in range(401)]
    (folder / "train.csv").write_text("".join(lines))
    data = source.load(tmp_path, use_cache=False)
    assert sum(data.info["rows"].values()) == 400
    assert all(spec.min_count == 2 for spec in data.schema.sparse)
    (folder / "train.csv").write_text("x" + "".join(lines))
    with pytest.raises(DataError, match="header"):
        source.verify(tmp_path)


def test_avazu_bad_click_names_file_and_line(tmp_path):
    path = tmp_path / "test"
    row = "1,0,14102100,1005,0,a,b,c,d,e,f,g,h,i,1,2,15706,320,50,1722,0,35,-1,79\n"
    path.write_text(row + row.replace(",0,14102100", ",2,14102100", 1))
    with pytest.raises(DataError, match="click must be 0 or 1") as err:
        avazu.read_avazu(path, header=False)
    assert err.value.path == path and err.value.line == 2


# ---------------------------------------------------------------------------------- movielens
def test_movielens_ctr_genres_features_and_label(loaded, raw_tables):
    data = loaded["movielens-100k-ctr"]
    for split in ("train", "valid", "test"):
        columns = data.split(split)
        seq, lengths = columns.sequences["genres"], columns.lengths["genres"]
        assert seq.shape[1] == 6
        assert lengths.min() == 1 and lengths.max() == 6
        positions = np.arange(6)[None, :]
        assert (seq[positions >= lengths[:, None]] == PADDING_ID).all()  # padded with 0 at the end
        assert (seq[positions < lengths[:, None]] >= 2).all()
    assert data.schema["genres"].vocab_size == 19 + 2
    raw = raw_tables["movielens-100k-ctr"].train
    ratings = raw.column("rating").to_numpy()
    assert np.array_equal(raw.column("click").to_numpy(), (ratings >= 4).astype(np.float32))
    first = raw.slice(0, 1).to_pylist()[0]  # 196 242 3 881250949; user 196: 49|M|writer|55105; Kolya: Comedy
    assert (first["user_id"], first["item_id"], first["age_group"], first["gender"], first["zip_prefix"], first["genres"]) == (
        "196", "242", "45-49", "M", "5", "Comedy"
    )
    assert set(raw.column("age_group").to_pylist()) == set(movielens_ctr.AGE_GROUPS)
    assert "Film-Noir|Mystery|Thriller" in set(raw.column("genres").to_pylist())  # Latin-1 file parsed whole


# ---------------------------------------------------------------------------------- frappe
def test_frappe_official_holdouts_and_rebuilt_train(shared_data, loaded, raw_tables):
    data, raw = loaded["frappe"], raw_tables["frappe"]
    assert (raw.valid.num_rows, raw.test.num_rows) == (57722, 28860)
    assert data.info["train_rebuilt"] is True and "RE-CREATED" in data.info["source"] and "not the official" in data.info["split"]
    key = lambda t: {tuple(r) for r in zip(*(t.column(f).to_pylist() for f in frappe.FIELDS))}  # noqa: E731
    label = lambda t: t.column("label").to_numpy()  # noqa: E731
    train_pos = key(raw.train.filter(pa.array(label(raw.train) == 1)))
    held_out = key(raw.valid) | key(raw.test)
    assert not train_pos & held_out
    assert len(key(raw.train) & held_out) == 0  # sampled negatives avoid validation/test rows too
    # negatives: the positive's user and context, an app the user never used, 2 distinct per positive
    k = frappe.NEGATIVES_PER_POSITIVE
    rows = raw.train.to_pydict()
    n = raw.train.num_rows // (k + 1)
    assert raw.train.num_rows == n * (k + 1) and label(raw.train).reshape(n, k + 1).tolist()[0] == [1.0, 0.0, 0.0]
    log = frappe.read_raw_log(shared_data / "frappe" / "frappe.csv.gz")[0]
    used = {(int(u), int(i)) for u, i in log[:, :2]}
    items = np.asarray(rows["item"]).reshape(n, k + 1)
    users = np.asarray(rows["user"]).reshape(n, k + 1)
    assert (users == users[:, :1]).all()
    for field in frappe.CONTEXT:
        col = np.asarray(rows[field]).reshape(n, k + 1)
        assert (col == col[:, :1]).all()
    assert not any((int(u), int(i)) in used for u, i in zip(users[:, 1:].ravel(), items[:, 1:].ravel()))
    assert (items[:, 1] != items[:, 2]).all()
    # valid/test values decoded to the raw log's strings
    assert set(raw.valid.column("daytime").to_pylist()) == {"morning", "afternoon", "evening", "sunset", "night", "noon", "sunrise"}


def test_frappe_negatives_depend_on_seed(shared_data):
    source = get_dataset("frappe")
    paths = source.verify(shared_data)
    a, b = (frappe.read_frappe(paths, seed)[0].train for seed in (0, 1))
    assert a.column("label").equals(b.column("label"))
    assert not a.column("item").equals(b.column("item"))
    assert frappe.read_frappe(paths, 0)[0].train.column("item").equals(a.column("item"))


def test_frappe_bad_libfm_token_names_file_and_line(tmp_path):
    path = tmp_path / "frappe.test.libfm"
    good = "1 42:1 1572:1 5042:1 5047:1 5053:1 5055:1 5058:1 5060:1 5070:1 5150:1\n"
    path.write_text(good + good.replace("5042:1", "5046:1"))  # 5046 is a weekday id, in the daytime slot
    with pytest.raises(DataError, match="daytime") as err:
        frappe.read_libfm(path)
    assert err.value.line == 2
    path.write_text(good + "1 42:1 1572:1\n")
    with pytest.raises(DataError, match="tokens") as err:
        frappe.read_libfm(path)
    assert err.value.line == 2


# ---------------------------------------------------------------------------------- census
def test_census_columns_and_extra_labels(loaded, raw_tables):
    raw = raw_tables["census-income"].train
    assert raw.num_rows == 99762
    rates = {c: float(np.mean(raw.column(c).to_numpy())) for c in census.LABELS}
    assert rates["income"] == pytest.approx(6186 / 99762)
    assert rates["never_married"] == pytest.approx(43143 / 99762)
    assert rates["education_college"] == pytest.approx(33410 / 99762)
    data = loaded["census-income"]
    assert data.schema.labels == ("income",)
    assert [f.name for f in data.schema.dense] == list(census.STANDARDIZED + census.LOG_STANDARDIZED)
    assert len(data.schema.sparse) == 33 and "instance_weight" not in data.schema
    assert np.isfinite(data.train.dense).all()
    assert abs(data.train.dense.mean(axis=0)).max() < 1e-3  # standardised on the training rows
    multi = get_dataset("census-income").task_schema(("income", "never_married"))
    assert multi.labels == ("income", "never_married") and "marital_stat" not in multi and "education" in multi


def test_census_bad_label_names_file_and_line(shared_data, tmp_path):
    with gzip.open(shared_data / "census-income-kdd" / "census-income.test.gz", "rt") as f:
        lines = [next(f) for _ in range(3)]
    lines[2] = lines[2].replace("- 50000.", "maybe.")
    path = tmp_path / "census-income.test"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="income label") as err:
        census.read_census(path)
    assert err.value.line == 3


# ---------------------------------------------------------------------------------- downloads
def _gunzip(src, dest):
    with gzip.open(src, "rb") as f, open(dest, "wb") as out:
        shutil.copyfileobj(f, out)


def test_downloads_from_file_urls(shared_data, tmp_path, monkeypatch):
    """Each download() fetches (file:// stand-ins for the official URLs), stores and verifies its files."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # avazu-head-10k: the Wide-ResDNN files, uncompressed
    _gunzip(shared_data / "avazu-head-10k" / "train.gz", mirror / "train")
    _gunzip(shared_data / "avazu-head-10k" / "test.gz", mirror / "test")
    monkeypatch.setattr(avazu, "WIDE_RESDNN_RAW", mirror.as_uri())
    # census: the UCI gzip, stored decompressed
    shutil.copy(shared_data / "census-income-kdd" / "census-income.test.gz", mirror / "census-income.test.gz")
    monkeypatch.setattr(census, "UCI", mirror.as_uri())
    # frappe: the NFM libfm files and the authors' zip
    for name in ("frappe.validation.libfm", "frappe.test.libfm"):
        _gunzip(shared_data / "frappe" / f"{name}.gz", mirror / name)
    monkeypatch.setattr(frappe, "NFM_RAW", mirror.as_uri())
    with zipfile.ZipFile(mirror / "Mobile_Frappe.zip", "w") as zf:
        zf.writestr("Mobile_Frappe/frappe/frappe.csv", gzip.decompress((shared_data / "frappe" / "frappe.csv.gz").read_bytes()))
    monkeypatch.setattr(frappe, "FRAPPE_ZIP", (mirror / "Mobile_Frappe.zip").as_uri())
    from recforge.data.files import Checksum

    monkeypatch.setattr(frappe, "FRAPPE_ZIP_SHA256", Checksum("sha256", "").compute(mirror / "Mobile_Frappe.zip"))
    # movielens-100k-ctr: the GroupLens zip
    with zipfile.ZipFile(mirror / "ml-100k.zip", "w") as zf:
        zf.writestr("ml-100k/u.data", gzip.decompress((shared_data / "ml-100k" / "u.data.gz").read_bytes()))
        zf.writestr("ml-100k/u.item", gzip.decompress((shared_data / "ml-100k" / "u.item.gz").read_bytes()))
        zf.write(shared_data / "ml-100k" / "u.user", "ml-100k/u.user")
    monkeypatch.setattr(movielens, "GROUPLENS", mirror.as_uri())

    target = tmp_path / "data"
    for name in ("avazu-head-10k", "census-income", "frappe", "movielens-100k-ctr"):
        source = get_dataset(name)
        with pytest.raises(DataMissingError):
            source.verify(target)
        source.download(target)
        paths = source.verify(target)
        assert all(p.parent == target / source.folder for p in paths.values())
    assert not list((target / "census-income-kdd").glob(".*"))  # no temporary download left


def test_cache_round_trip_keeps_arrays_and_info(shared_data):
    source = get_dataset("frappe")
    first = source.load(shared_data, seed=0)  # writes the cache (temp cache dir)
    again = source.load(shared_data, seed=0)  # reads it
    assert again.info["train_rebuilt"] is True and again.info["split"] == first.info["split"]
    for split in ("train", "valid", "test"):
        assert np.array_equal(first.split(split).sparse, again.split(split).sparse)
        assert np.array_equal(first.split(split).labels, again.split(split).labels)
