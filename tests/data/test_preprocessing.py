"""Preprocessing fitted on training rows: reserved ids, vocabularies, numeric transforms, sequences."""

import math

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.preprocessing import OOV_ID, PADDING_ID, Preprocessor
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError


def _schema(*features, labels=("y",)):
    return Schema(features=tuple(features), labels=labels)


def test_reserved_ids_and_frequency_order():
    table = pa.table({"c": ["b", "a", "b", None, "", "c", "b", "a"], "y": [0, 1, 0, 1, 0, 1, 0, 1]})
    pre = Preprocessor(_schema(FeatureSpec("c"))).fit(table)
    assert pre.vocabularies["c"].values == ("b", "a", "c")  # by count, ties by value
    assert pre.schema["c"].vocab_size == 3 + 2  # padding/missing and OOV rows counted
    ids = pre.transform(table).sparse[:, 0]
    assert ids.tolist() == [2, 3, 2, PADDING_ID, PADDING_ID, 4, 2, 3]
    unseen = pre.transform(pa.table({"c": ["zzz", "a"], "y": [0, 1]})).sparse[:, 0]
    assert unseen.tolist() == [OOV_ID, 3]


def test_vocabulary_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    values = rng.choice(list("abcdefg"), size=200).tolist()
    table = pa.table({"c": values, "y": [0] * 200})
    perm = rng.permutation(200)
    shuffled = pa.table({"c": [values[i] for i in perm], "y": [0] * 200})
    spec = FeatureSpec("c")
    assert Preprocessor(_schema(spec)).fit(table).vocabularies == Preprocessor(_schema(spec)).fit(shuffled).vocabularies


def test_min_count_and_max_size():
    table = pa.table({"c": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"], "y": [0] * 11})
    assert Preprocessor(_schema(FeatureSpec("c", min_count=2))).fit(table).vocabularies["c"].values == ("a", "b", "c")
    assert Preprocessor(_schema(FeatureSpec("c", max_size=2))).fit(table).vocabularies["c"].values == ("a", "b")
    ids = Preprocessor(_schema(FeatureSpec("c", min_count=3))).fit(table).transform(table).sparse[:, 0]
    assert set(ids[-3:].tolist()) == {OOV_ID}  # c, c, d are rare -> OOV


def test_numeric_transforms_and_missing_values():
    x = [1.0, -5.0, None, 9.0]
    table = pa.table({"x": x, "y": [0, 1, 0, 1]})
    log = Preprocessor(_schema(FeatureSpec("x", "dense", transform="log1p"))).fit(table).transform(table).dense[:, 0]
    np.testing.assert_allclose(log, [math.log(2), 0.0, 0.0, math.log(10)], rtol=1e-6)  # negatives clamp to 0
    pre = Preprocessor(_schema(FeatureSpec("x", "dense", transform="standardize"))).fit(table)
    mean, std = np.mean([1, -5, 9]), np.std([1, -5, 9])
    assert pre.numeric["x"] == pytest.approx({"mean": mean, "std": std})
    std_x = pre.transform(table).dense[:, 0]
    np.testing.assert_allclose(std_x, [(1 - mean) / std, (-5 - mean) / std, 0.0, (9 - mean) / std], rtol=1e-5)


def test_bucketizers():
    values = np.arange(100, dtype=float)
    table = pa.table({"x": values, "y": np.zeros(100)})
    pre = Preprocessor(_schema(FeatureSpec("b", source="x", bucketize="quantile", num_buckets=4))).fit(table)
    ids = pre.transform(table).sparse[:, 0]
    assert sorted(set(ids.tolist())) == [2, 3, 4, 5] and np.bincount(ids)[2:].tolist() == [25, 25, 25, 25]
    crit = pa.table({"x": [-1.0, 2.0, 3.0, 100.0, None], "y": [0] * 5})
    pre = Preprocessor(_schema(FeatureSpec("b", source="x", bucketize="log_squared"))).fit(crit)
    # floor(ln(x)^2) for x > 2 else x: -1, 2, 1, 21, missing
    expected_keys = ["-1", "2", "1", "21"]
    ids = pre.transform(crit).sparse[:, 0]
    assert [pre.vocabularies["b"].values[i - 2] for i in ids[:4]] == expected_keys and ids[4] == PADDING_ID


def test_cross_product_feature_is_missing_when_a_part_is():
    table = pa.table({"a": ["x", "x", "y", None], "b": [1, 2, 1, 1], "y": [0, 1, 0, 1]})
    pre = Preprocessor(_schema(FeatureSpec("ab", cross=("a", "b")))).fit(table)
    ids = pre.transform(table).sparse[:, 0]
    assert len(set(ids[:3].tolist())) == 3 and ids[3] == PADDING_ID
    assert pre.transform(pa.table({"a": ["y"], "b": [2], "y": [1]})).sparse[0, 0] == OOV_ID


def test_sequences_keep_the_latest_values_and_allow_empty():
    table = pa.table({"g": ["a|b|c|d", "b", None, "", "c|a"], "y": [0] * 5})
    pre = Preprocessor(_schema(FeatureSpec("g", "sequence", separator="|", max_length=3))).fit(table)
    enc = pre.transform(table)
    vocab = pre.vocabularies["g"].values
    decode = lambda row: [vocab[i - 2] for i in row if i]  # noqa: E731
    assert decode(enc.sequences["g"][0]) == ["b", "c", "d"]  # truncation keeps the last ones
    assert enc.lengths["g"].tolist() == [3, 1, 0, 0, 2]
    assert enc.sequences["g"][2].tolist() == [0, 0, 0] and enc.sequences["g"][4, 2] == 0


def test_shared_table_counts_both_features():
    table = pa.table({"item": ["a", "b"], "hist": [["c"], ["c", "a"]], "y": [0, 1]})
    schema = _schema(FeatureSpec("item"), FeatureSpec("hist", "sequence", table="item"))
    pre = Preprocessor(schema).fit(table)
    assert set(pre.vocabularies["item"].values) == {"a", "b", "c"} and "hist" not in pre.vocabularies
    enc = pre.transform(table)
    c = pre.vocabularies["item"].values.index("c") + 2
    assert enc.sequences["hist"][0, 0] == c and pre.schema.vocab_size("hist") == 5


def test_streaming_fit_equals_in_memory_fit_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    table = pa.table({
        "c": rng.choice([f"v{i}" for i in range(50)], size=n, p=np.r_[[0.5], np.full(49, 0.5 / 49)]).tolist(),
        "x": rng.normal(size=n), "y": rng.integers(0, 2, n).astype(float),
    })
    schema = _schema(FeatureSpec("c", min_count=3), FeatureSpec("x", "dense", transform="standardize"))
    whole = Preprocessor(schema).fit(table)
    streamed = Preprocessor(schema)
    for start in range(0, n, 170):  # > _COMPACT_EVERY chunks, so counts get merged on the way
        streamed.partial_fit(table.slice(start, 170))
    streamed.finish()
    assert streamed.vocabularies == whole.vocabularies
    assert streamed.numeric["x"] == pytest.approx(whole.numeric["x"])
    whole.save(tmp_path / "p.json")
    again = Preprocessor.load(tmp_path / "p.json")
    np.testing.assert_array_equal(again.transform(table).sparse, whole.transform(table).sparse)


def test_fit_transform_equals_fit_then_transform():
    """The one-pass path (dictionary-encode once) must give the same ids and state as fit + transform,
    with missing values, ties, min_count / max_size, crosses, shared tables and sequences mixed in."""
    rng = np.random.default_rng(7)
    n = 2000
    cats = [f"v{i}" for i in range(40)]
    c = rng.choice(cats, size=n).astype(object)
    c[rng.random(n) < 0.2] = None
    table = pa.table({
        "c": pa.array(c.tolist(), pa.string()),
        "d": pa.array(rng.integers(0, 30, n).astype(float)),  # whole floats: 3.0 and 3 are one category
        "e": pa.array(rng.choice(["a", "b", ""], size=n).tolist()),  # "" counts as missing
        "item": pa.array(rng.choice(cats, size=n).tolist()),
        "hist": pa.array([[str(x) for x in rng.choice(cats, size=rng.integers(0, 4))] for _ in range(n)]),
        "x": rng.normal(size=n), "y": rng.integers(0, 2, n).astype(float),
    })
    schema = _schema(
        FeatureSpec("c", min_count=40), FeatureSpec("d", max_size=7), FeatureSpec("e"),
        FeatureSpec("c_x_e", cross=("c", "e")), FeatureSpec("item"),
        FeatureSpec("hist", "sequence", table="item", max_length=3),
        FeatureSpec("xq", source="x", bucketize="quantile", num_buckets=4),
        FeatureSpec("x", "dense", transform="standardize"),
    )
    reference = Preprocessor(schema).fit(table)
    expected = reference.transform(table)
    one_pass = Preprocessor(schema)
    got = one_pass.fit_transform(table)
    assert one_pass.to_dict() == reference.to_dict()
    np.testing.assert_array_equal(got.sparse, expected.sparse)
    np.testing.assert_array_equal(got.dense, expected.dense)
    np.testing.assert_array_equal(got.sequences["hist"], expected.sequences["hist"])
    assert (got.sparse[:, 0] == PADDING_ID).sum() == (c == None).sum()  # noqa: E711 - object array
    assert (got.sparse[:, 0] == OOV_ID).any()  # min_count 40 drops some values


def test_bad_input_names_the_column():
    schema = _schema(FeatureSpec("c"), FeatureSpec("x", "dense"))
    with pytest.raises(DataError, match="column 'c'"):
        Preprocessor(schema).fit(pa.table({"x": [1.0], "y": [0]}), where="train.csv")
    with pytest.raises(DataError, match="'x' must be numeric"):
        Preprocessor(schema).fit(pa.table({"c": ["a"], "x": ["abc"], "y": [0]}))
    pre = Preprocessor(schema).fit(pa.table({"c": ["a"], "x": [1.0], "y": [0]}))
    with pytest.raises(DataError, match="label 'y' must be 0, 1 or missing; row 1 has 2"):
        pre.transform(pa.table({"c": ["a", "b"], "x": [1.0, 2.0], "y": [0, 2]}))
    with pytest.raises(DataError, match="empty training split"):
        Preprocessor(schema).fit(pa.table({"c": pa.array([], pa.string()), "x": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}))


class _Toy(TabularSource):
    name = "toy"

    def default_schema(self):
        return _schema(FeatureSpec("c"))


def test_vocabulary_is_fitted_on_the_training_split_only():
    n = 400
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n).astype(float)
    train = pa.table({"c": ["common"] * n, "y": y})
    test = pa.table({"c": ["only_in_test", "common"], "y": [0.0, 1.0]})
    data = _Toy().encode(RawSplits(train=train, test=test), _Toy().default_schema(), seed=0)
    assert data.test.sparse[:, 0].tolist() == [OOV_ID, 2]
    assert len(data.train) + len(data.valid) == n
    for split in (data.train, data.valid):  # stratified: both classes everywhere
        assert set(split.labels[:, 0].tolist()) == {0.0, 1.0}
