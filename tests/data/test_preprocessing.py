"""Preprocessing fitted on training rows: reserved ids, vocabularies, numeric transforms, sequences."""

import math

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.preprocessing import OOV_ID, PADDING_ID, Preprocessor
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import ConfigError, DataError


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
    assert {k: pre.numeric["x"][k] for k in ("mean", "std")} == pytest.approx({"mean": mean, "std": std})
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
    with pytest.raises(DataError, match="label 'y' must be 0, 1 or missing; data row 2 .1-based, a header line not counted. has 2"):
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


# ---------------------------------------------------------------- numeric safety (issue 13, item 2)
def _chunked_fit(schema, table, rows):
    pre = Preprocessor(schema)
    for start in range(0, table.num_rows, rows):
        pre.partial_fit(table.slice(start, rows))
    return pre.finish()


def test_standardize_is_stable_for_a_large_offset_and_exact_across_chunks():
    rng = np.random.default_rng(3)
    x = 1.7e12 + rng.normal(0.0, 1000.0, 20_000)
    table = pa.table({"x": x, "y": np.zeros(len(x))})
    schema = _schema(FeatureSpec("x", "dense", transform="standardize"))
    whole = Preprocessor(schema).fit(table)
    assert whole.numeric["x"]["std"] == pytest.approx(np.std(x), rel=0.01)  # one-pass E[x^2] - mean^2 gave ~23,000
    assert whole.numeric["x"]["mean"] == pytest.approx(np.mean(x), rel=1e-12)
    chunked = _chunked_fit(schema, table, 997)
    for key in ("mean", "std"):
        assert chunked.numeric["x"][key] == pytest.approx(whole.numeric["x"][key], rel=1e-9)
    z = whole.transform(table).dense[:, 0]
    assert abs(float(z.mean())) < 1e-3 and float(z.std()) == pytest.approx(1.0, rel=1e-3)


def test_standardize_matches_scikit_learn_and_reports_missing_values():
    sklearn_preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 2.0, 3000)
    x[rng.random(3000) < 0.1] = np.nan
    table = pa.table({"x": x, "y": np.zeros(len(x))})
    schema = _schema(FeatureSpec("x", "dense", transform="standardize"))
    pre = _chunked_fit(schema, table, 256)
    scaler = sklearn_preprocessing.StandardScaler()
    for start in range(0, len(x), 256):  # sklearn's own streaming fit ignores NaN too
        scaler.partial_fit(x[start:start + 256, None])
    assert pre.numeric["x"]["mean"] == pytest.approx(scaler.mean_[0], rel=1e-12)
    assert pre.numeric["x"]["std"] == pytest.approx(scaler.scale_[0], rel=1e-12)
    expected = np.nan_to_num(scaler.transform(x[:, None])[:, 0], nan=0.0)  # missing -> 0 = the train mean
    np.testing.assert_allclose(pre.transform(table).dense[:, 0], expected, rtol=1e-5, atol=1e-6)
    state = pre.to_dict()["numeric"]["x"]
    assert state["missing"] == int(np.isnan(x).sum()) and state["non_finite"] == 0
    assert state["min"] == np.nanmin(x) and state["max"] == np.nanmax(x)


def test_non_finite_values_are_an_error_by_default_at_fit_and_transform():
    clean = pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 0, 0]})
    for spec in (
        FeatureSpec("x", "dense", transform="standardize"),
        FeatureSpec("b", source="x", bucketize="quantile", num_buckets=2),
        FeatureSpec("b", source="x", bucketize="log_squared"),
    ):
        bad = pa.table({"x": [1.0, 2.0, float("-inf"), float("inf")], "y": [0, 0, 0, 0]})
        with pytest.raises(DataError, match=r"train\.csv: column 'x' .*-inf at data row 3 \(1-based.*non_finite"):
            Preprocessor(_schema(spec)).fit(bad, where="train.csv")
        with pytest.raises(DataError, match=r"data row 3 "):
            Preprocessor(_schema(spec)).fit_transform(bad, where="train.csv")
        pre = Preprocessor(_schema(spec)).fit(clean)
        with pytest.raises(DataError, match=r"test\.csv: column 'x' .*inf at data row 2 "):
            pre.transform(pa.table({"x": ["1", "inf"], "y": [0, 0]}), where="test.csv")  # parsed text too
    streamed = Preprocessor(_schema(FeatureSpec("x", "dense")))
    streamed.partial_fit(clean, where="part-0")
    with pytest.raises(DataError, match=r"part-1: .*inf at data row 5 "):  # counts the training rows seen so far, from 1
        streamed.partial_fit(pa.table({"x": [5.0, float("inf")], "y": [0, 0]}), where="part-1")


def test_non_finite_missing_policy_treats_infinity_as_a_missing_value():
    table = pa.table({"x": [1.0, float("inf"), 3.0, None, float("-inf")], "y": [0] * 5})
    schema = _schema(
        FeatureSpec("x", "dense", transform="standardize", non_finite="missing"),
        FeatureSpec("q", source="x", bucketize="quantile", num_buckets=2, non_finite="missing"),
        FeatureSpec("l", source="x", bucketize="log_squared", non_finite="missing"),
    )
    pre = Preprocessor(schema).fit(table)
    assert pre.numeric["x"]["mean"] == 2.0 and pre.numeric["x"]["std"] == 1.0
    assert pre.numeric["x"]["missing"] == 3 and pre.numeric["x"]["non_finite"] == 2
    enc = pre.transform(table)
    np.testing.assert_allclose(enc.dense[:, 0], [-1.0, 0.0, 1.0, 0.0, 0.0])
    assert enc.sparse[[1, 3, 4]].tolist() == [[PADDING_ID, PADDING_ID]] * 3
    assert (enc.sparse[[0, 2]] >= 2).all()


def test_non_finite_clip_policy_uses_the_training_range_in_fit_and_transform():
    x = [1.0, float("inf"), 2.0, float("-inf"), 100.0, None]
    table = pa.table({"x": x, "y": [0] * 6})
    schema = _schema(
        FeatureSpec("x", "dense", transform="standardize", non_finite="clip"),
        FeatureSpec("lx", source="x", kind="dense", transform="log1p", non_finite="clip"),
        FeatureSpec("l", source="x", bucketize="log_squared", non_finite="clip"),
        FeatureSpec("q", source="x", bucketize="quantile", num_buckets=2, non_finite="clip"),
    )
    clipped = np.array([1.0, 100.0, 2.0, 1.0, 100.0])
    for pre in (Preprocessor(schema).fit(table), _chunked_fit(schema, table, 2)):  # inf seen before the max
        assert pre.numeric["x"]["mean"] == pytest.approx(clipped.mean(), rel=1e-12)
        assert pre.numeric["x"]["std"] == pytest.approx(clipped.std(), rel=1e-12)
        assert (pre.numeric["x"]["min"], pre.numeric["x"]["max"], pre.numeric["x"]["non_finite"]) == (1.0, 100.0, 2)
        vocab = pre.vocabularies["l"].values
        assert vocab == ("1", "21", "2")  # 1 and -inf -> "1"; 100 and inf -> floor(ln(100)^2) = "21"
    one_pass = Preprocessor(schema)
    got = one_pass.fit_transform(table)
    assert one_pass.to_dict() == pre.to_dict()
    new = pa.table({"x": [float("inf"), float("-inf"), -1e9, 1e9], "y": [0] * 4})
    enc = pre.transform(new)
    mean, std = clipped.mean(), clipped.std()
    np.testing.assert_allclose(enc.dense[:, 0], [(100 - mean) / std, (1 - mean) / std, (-1e9 - mean) / std, (1e9 - mean) / std], rtol=1e-6)
    np.testing.assert_allclose(enc.dense[:2, 1], np.log1p([100.0, 1.0]), rtol=1e-6)
    l_ids = pre.vocabularies["l"].encode(pa.array(["21", "1"]))
    assert enc.sparse[:2, 0].tolist() == l_ids.tolist()
    # Quantile: below the lowest edge -> first bucket, above the highest -> last, clipped infinities alike.
    last = pre.vocabularies["q"].num_embeddings - 1
    assert enc.sparse[:, 1].tolist() == [last, 2, 2, last]
    np.testing.assert_array_equal(got.sparse, Preprocessor(schema).fit(table).transform(table).sparse)


def test_quantile_edges_with_many_equal_values_give_fewer_buckets_and_none_empty():
    values = np.r_[[0.0, 1.0], np.full(36, 7.0), [100.0, 200.0]]  # 90 % equal, 20 buckets asked for
    table = pa.table({"x": values, "y": np.zeros(len(values))})
    pre = Preprocessor(_schema(FeatureSpec("q", source="x", bucketize="quantile", num_buckets=20))).fit(table)
    edges = pre.quantile_edges["q"]
    assert edges == sorted(set(edges)) and 7.0 in edges
    buckets = len(pre.vocabularies["q"])
    assert 2 <= buckets < 20
    ids = pre.transform(table).sparse[:, 0]
    counts = np.bincount(ids, minlength=buckets + 2)[2:]
    assert len(counts) == buckets and (counts > 0).all()  # every bucket id is used in training
    assert len(set(ids[2:38].tolist())) == 1  # the repeated value is one bucket


def test_all_missing_numeric_column_in_training():
    table = pa.table({"x": pa.array([None, None, None], pa.float64()), "y": [0, 0, 0]})
    schema = _schema(
        FeatureSpec("x", "dense", transform="standardize", non_finite="clip"),
        FeatureSpec("q", source="x", bucketize="quantile", num_buckets=4, non_finite="clip"),
    )
    pre = Preprocessor(schema).fit(table)
    assert pre.numeric["x"] == {"mean": 0.0, "std": 1.0, "missing": 3, "non_finite": 0, "min": None, "max": None}
    assert pre.numeric["q"]["missing"] == 3 and len(pre.vocabularies["q"]) == 1
    assert pre.transform(table).sparse[:, 0].tolist() == [PADDING_ID] * 3
    enc = pre.transform(pa.table({"x": [5.0, float("inf"), None], "y": [0, 0, 0]}))
    assert enc.dense[:, 0].tolist() == [5.0, 0.0, 0.0]  # nothing to clip to: inf is missing
    assert enc.sparse[:, 0].tolist() == [2, PADDING_ID, PADDING_ID]  # one bucket for any value


def test_log_squared_on_negative_fractional_and_missing_values():
    x = [-3.0, -1.5, 0.5, 2.0, 3.0, 1e6, None, float("nan"), -1e30]
    table = pa.table({"x": x, "y": [0] * len(x)})
    pre = Preprocessor(_schema(FeatureSpec("l", source="x", bucketize="log_squared"))).fit(table)
    ids = pre.transform(table).sparse[:, 0]
    keys = [pre.vocabularies["l"].values[i - 2] if i >= 2 else None for i in ids]
    # x <= 2: its integer part (floor); x > 2: floor(ln(x)^2); NaN/null: missing (id 0)
    assert keys[:6] == ["-3", "-2", "0", "2", "1", str(math.floor(math.log(1e6) ** 2))]
    assert keys[6:8] == [None, None] and keys[8] is not None


def test_non_finite_option_is_validated_and_saved(tmp_path):
    with pytest.raises(ConfigError, match="non_finite must be one of error, missing, clip"):
        FeatureSpec("x", "dense", non_finite="zero")
    with pytest.raises(ConfigError, match="non_finite applies to dense"):
        FeatureSpec("c", non_finite="clip")
    schema = _schema(FeatureSpec("x", "dense", transform="standardize", non_finite="clip"))
    assert Schema.from_dict(schema.to_dict()) == schema
    table = pa.table({"x": [1.0, 3.0, None], "y": [0, 0, 0]})
    pre = Preprocessor(schema).fit(table)
    pre.save(tmp_path / "p.json")
    again = Preprocessor.load(tmp_path / "p.json")
    assert again.numeric == pre.numeric and again.numeric["x"]["missing"] == 1
    np.testing.assert_array_equal(again.transform(pa.table({"x": [float("inf")], "y": [0]})).dense, [[1.0]])
    # A state written before these statistics existed (format 1, mean/std only) still loads.
    old = pre.to_dict()
    old["numeric"] = {"x": {"mean": 2.0, "std": 1.0}}
    old["schema"] = _schema(FeatureSpec("x", "dense", transform="standardize")).to_dict()
    legacy = Preprocessor.from_dict(old)
    np.testing.assert_array_equal(legacy.transform(table).dense[:, 0], [-1.0, 1.0, 0.0])


def test_constant_column_keeps_std_one_and_encodes_to_zero():
    table = pa.table({"x": np.full(1001, 123.456), "y": np.zeros(1001)})
    pre = _chunked_fit(_schema(FeatureSpec("x", "dense", transform="standardize")), table, 7)
    assert pre.numeric["x"]["mean"] == 123.456 and pre.numeric["x"]["std"] == 1.0  # E[x^2] - mean^2 gave 6e-6
    assert not pre.transform(table).dense.any()
