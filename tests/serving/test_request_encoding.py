"""The service's request encoder equals ``Predictor.encode`` element for element.

Random request rows over a schema with every feature kind the service reads (plain categories
with integer-like values, a cross, quantile and log_squared buckets, dense transforms under each
``non_finite`` policy, histories as lists and as strings with and without a declared separator,
a shared table) and the values a client may send: known, unseen, integers for string
categories, ``""``, ``None``, NaN, +-inf, numbers that overflow float32 after standardizing.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest
from torch import nn

from recforge.data.preprocessing import OOV_ID, PADDING_ID, Preprocessor, Vocabulary
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError
from recforge.serving.predictor import Predictor
from recforge.serving.request_encoding import RequestEncoder, key_lookup
from recforge.serving.requests import RequestColumns

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 -> float32 inf, on purpose

USERS = ["17", "017", "-3", "0", "u1", "u2", "١٢", "+5", "1_000", "x y"]
ITEMS = [f"i{i}" for i in range(30)] + ["42", "7"]


def schema() -> Schema:
    return Schema(
        features=(
            FeatureSpec("user"),
            FeatureSpec("item"),
            FeatureSpec("shop", min_count=3),
            FeatureSpec("user_x_shop", cross=("user", "shop")),
            FeatureSpec("age_q", source="age", bucketize="quantile", num_buckets=5, non_finite="missing"),
            FeatureSpec("count_b", source="count", bucketize="log_squared", non_finite="clip"),
            FeatureSpec("count_n", "dense", source="count", transform="log1p_standardize", non_finite="clip"),
            FeatureSpec("price", "dense", transform="standardize", non_finite="missing"),
            FeatureSpec("age", "dense", transform="none", non_finite="missing"),
            FeatureSpec("strict", "dense", transform="log1p"),  # non_finite: error
            FeatureSpec("history", "sequence", table="item", max_length=4),
            FeatureSpec("tags", "sequence", separator=";", max_length=3),
        ),
        labels=("click", "buy"),
    )


def training_table(n: int = 600, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "user": pa.array([USERS[i] for i in rng.integers(0, len(USERS), n)]),
        "item": pa.array([ITEMS[i] for i in rng.integers(0, len(ITEMS), n)]),
        "shop": pa.array([f"s{i}" for i in rng.integers(0, 12, n)]),
        "age": pa.array(rng.integers(18, 80, n).astype(np.float64)),
        "count": pa.array(np.concatenate([rng.gamma(1.5, 30.0, n - 2), [math.inf, -math.inf]])),
        "price": pa.array(rng.gamma(2.0, 10.0, n)),
        "strict": pa.array(rng.gamma(2.0, 3.0, n)),
        "history": pa.array([[ITEMS[j] for j in rng.integers(0, len(ITEMS), k)] for k in rng.integers(0, 7, n)], pa.list_(pa.string())),
        "tags": pa.array([";".join(f"t{j}" for j in rng.integers(0, 6, k)) for k in rng.integers(0, 4, n)]),
        "click": pa.array(rng.integers(0, 2, n).astype(np.float64)),
        "buy": pa.array(rng.integers(0, 2, n).astype(np.float64)),
    })


def category(rng: random.Random, known: list[str]) -> object:
    return rng.choice([
        lambda: rng.choice(known),
        lambda: f"unseen{rng.randrange(5)}",
        lambda: rng.choice([17, 0, -3, 42, 7, 12, 5, 1000, 99]),  # ints: "17" known, 12 is not "١٢"
        lambda: "",
        lambda: None,
    ])()


def number(rng: random.Random, infinities: bool = True) -> object:
    choices = [lambda: rng.uniform(-5.0, 200.0), lambda: float(rng.randrange(0, 90)), lambda: None, lambda: math.nan, lambda: 1e300]
    if infinities:
        choices += [lambda: math.inf, lambda: -math.inf]
    return rng.choice(choices)()


def history(rng: random.Random, separator: str, known: list[str]) -> object:
    tokens = [category(rng, known) for _ in range(rng.randrange(0, 8))]
    if rng.random() < 0.2:
        return None
    if rng.random() < 0.5 and all(t is None or isinstance(t, str) for t in tokens):
        return separator.join(t or "" for t in tokens)
    return tokens


def request_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tags = [f"t{j}" for j in range(6)]
    return [{
        "user": category(rng, USERS), "item": category(rng, ITEMS), "shop": category(rng, [f"s{i}" for i in range(12)]),
        "age": number(rng), "count": number(rng), "price": number(rng), "strict": number(rng, infinities=False),
        "history": history(rng, "|", ITEMS), "tags": history(rng, ";", tags),
    } for _ in range(n)]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(nn.Identity(), Preprocessor(schema()).fit(training_table()))


def assert_same(a, b) -> None:
    assert a.sparse.dtype == b.sparse.dtype == np.int64 and a.sparse.shape == b.sparse.shape
    np.testing.assert_array_equal(a.sparse, b.sparse)
    assert a.dense.dtype == b.dense.dtype == np.float32
    np.testing.assert_array_equal(a.dense.view(np.int32), b.dense.view(np.int32))  # bit for bit, inf included
    assert a.sequences.keys() == b.sequences.keys()
    for name in a.sequences:
        np.testing.assert_array_equal(a.sequences[name], b.sequences[name])
        np.testing.assert_array_equal(a.lengths[name], b.lengths[name])
    assert a.labels.shape == b.labels.shape and np.isnan(a.labels).all() and np.isnan(b.labels).all()


@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_equals_the_predictor_encode(predictor, n):
    columns = RequestColumns.of(predictor.schema)
    encoder = RequestEncoder(predictor, columns)
    assert encoder.fallback == ""
    for seed in range(4 if n < 300 else 2):
        rows = request_rows(n, seed=100 * n + seed)
        assert_same(encoder.encode(rows), predictor.encode(columns.to_arrays(rows), "the request"))


def test_the_value_kinds_it_must_get_right(predictor):
    """A few cases spelt out: int 17 is "17" (not "017"), an unseen int and string are OOV,
    "" and None are padding, a history keeps its last 4 known-or-OOV tokens."""
    columns = RequestColumns.of(predictor.schema)
    encoder = RequestEncoder(predictor, columns)
    vocab = predictor.preprocessor.vocabularies["user"]
    base = request_rows(1, seed=1)[0]
    rows = [dict(base, user=u, history=h) for u, h in [
        (17, ["i1", None, "", "i2", "nope", "i3", 42]), ("017", "i1||i2"), (12, None), ("", []), (None, "i3"),
    ]]
    encoded = encoder.encode(rows)
    user = encoded.sparse[:, 0]
    ids = vocab.encode(pa.array(["17", "017"]))
    assert user.tolist() == [ids[0], ids[1], OOV_ID, PADDING_ID, PADDING_ID]
    assert encoded.lengths["history"].tolist() == [4, 2, 0, 0, 1]
    assert (encoded.sequences["history"][0] != PADDING_ID).all() and encoded.sequences["history"][0][1] == OOV_ID  # i2, nope, i3, 42
    assert_same(encoded, predictor.encode(columns.to_arrays(rows), "the request"))


def test_an_infinity_under_non_finite_error_is_the_same_error(predictor):
    columns = RequestColumns.of(predictor.schema)
    rows = request_rows(3, seed=5)
    rows[2]["strict"] = math.inf
    with pytest.raises(DataError) as fast:
        RequestEncoder(predictor, columns).encode(rows)
    with pytest.raises(DataError) as arrow:
        predictor.encode(columns.to_arrays(rows), "the request")
    assert str(fast.value) == str(arrow.value)
    assert "'strict'" in str(fast.value) and "data row 3" in str(fast.value)


def test_a_schema_it_does_not_cover_falls_back_to_the_arrow_path():
    """A cross over a number column: the request sends a number where the cross reads a category."""
    declared = Schema(features=(FeatureSpec("shop"), FeatureSpec("age", "dense", non_finite="missing"), FeatureSpec("shop_x_age", cross=("shop", "age"))), labels=("click",))
    table = training_table()
    predictor = Predictor(nn.Identity(), Preprocessor(declared).fit(table))
    columns = RequestColumns.of(predictor.schema)
    encoder = RequestEncoder(predictor, columns)
    assert "shop_x_age" in encoder.fallback and "'age'" in encoder.fallback
    rows = [{"shop": r["shop"], "age": r["age"]} for r in request_rows(20, seed=3)]
    assert_same(encoder.encode(rows), predictor.encode(columns.to_arrays(rows), "the request"))


def test_key_lookup_maps_only_canonical_integers():
    lookup = key_lookup(Vocabulary(["17", "017", "-3", "-0", "+5", "١٢", "1_000", " 8", "abc"]))
    assert lookup[17] == lookup["17"] and lookup[-3] == lookup["-3"]
    for number in (0, 5, 12, 1000, 8):
        assert number not in lookup
    assert lookup[None] == lookup[""] == PADDING_ID
