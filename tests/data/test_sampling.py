import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.sampling import InteractionIndex, pointwise_examples, sample_distinct_negatives, sample_negatives
from recforge.errors import DataError


@st.composite
def interactions(draw):
    num_users = draw(st.integers(1, 12))
    num_items = draw(st.integers(2, 40))
    pairs = draw(
        st.sets(st.tuples(st.integers(0, num_users - 1), st.integers(0, num_items - 1)), min_size=1, max_size=120)
    )
    users = np.array([p[0] for p in pairs], np.int64)
    items = np.array([p[1] for p in pairs], np.int64)
    return users, items, num_items


@settings(max_examples=150, deadline=None)
@given(interactions(), st.integers(0, 2**32 - 1))
def test_negatives_never_a_training_positive(data, seed):
    users, items, num_items = data
    index = InteractionIndex(users, items, num_items)
    counts = np.bincount(users)
    eligible = np.flatnonzero(counts[np.arange(len(counts))] < num_items)
    query = np.repeat(np.intersect1d(users, eligible), 7)
    if len(query) == 0:
        return
    negs = sample_negatives(query, index, np.random.default_rng(seed))
    positives = set(zip(users.tolist(), items.tolist()))
    assert all((u, i) not in positives for u, i in zip(query.tolist(), negs.tolist()))
    assert ((negs >= 0) & (negs < num_items)).all()


@settings(max_examples=150, deadline=None)
@given(interactions(), st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_distinct_negatives_exclude_positives_and_are_distinct(data, seed, k):
    users, items, num_items = data
    index = InteractionIndex(users, items, num_items)
    uniq = np.unique(users)
    ok = uniq[np.bincount(users)[uniq] <= num_items - k]
    if len(ok) == 0:
        return
    negs = sample_distinct_negatives(ok, k, index, np.random.default_rng(seed))
    positives = set(zip(users.tolist(), items.tolist()))
    for u, row in zip(ok.tolist(), negs.tolist()):
        assert len(set(row)) == k
        assert all((u, i) not in positives for i in row)


def test_sampling_is_seeded_and_roughly_uniform():
    users = np.zeros(3, np.int64)
    items = np.array([0, 1, 2])
    index = InteractionIndex(users, items, 10)
    a = sample_negatives(np.zeros(70000, np.int64), index, np.random.default_rng(1))
    b = sample_negatives(np.zeros(70000, np.int64), index, np.random.default_rng(1))
    assert np.array_equal(a, b)
    freq = np.bincount(a, minlength=10)
    assert freq[:3].sum() == 0
    assert np.allclose(freq[3:] / len(a), 1 / 7, atol=0.01)


def test_user_with_every_item_raises():
    index = InteractionIndex(np.zeros(3, np.int64), np.arange(3), 3)
    with pytest.raises(DataError, match="all 3 items"):
        sample_negatives(np.zeros(2, np.int64), index, np.random.default_rng(0))
    with pytest.raises(DataError, match="fewer than"):
        sample_distinct_negatives(np.zeros(1, np.int64), 1, index, np.random.default_rng(0))


def test_pointwise_examples_layout():
    users = np.array([0, 0, 1], np.int64)
    items = np.array([1, 2, 0], np.int64)
    index = InteractionIndex(users, items, 50)
    pairs, labels = pointwise_examples(users, items, index, 4, np.random.default_rng(0))
    assert pairs.shape == (15, 2) and labels.shape == (15, 1)
    assert labels[:3].ravel().tolist() == [1, 1, 1] and labels[3:].sum() == 0
    assert np.array_equal(pairs[:3], np.stack([users, items], 1))
    assert np.array_equal(pairs[3:, 0], np.repeat(users, 4))
    assert not index.contains(pairs[3:, 0], pairs[3:, 1]).any()


@settings(max_examples=100, deadline=None)
@given(interactions(), st.integers(0, 2**32 - 1))
def test_dense_table_and_binary_search_agree_with_a_set(data, seed):
    users, items, num_items = data
    rng = np.random.default_rng(seed)
    # queries include users with no positives, beyond the largest known user id
    q_users = rng.integers(0, users.max() + 3, size=200)
    q_items = rng.integers(0, num_items, size=200)
    positives = set(zip(users.tolist(), items.tolist()))
    expected = np.array([(u, i) in positives for u, i in zip(q_users.tolist(), q_items.tolist())])
    dense = InteractionIndex(users, items, num_items)
    searched = InteractionIndex(users, items, num_items)
    searched.DENSE_CELLS = 0  # force the sorted-key path
    np.testing.assert_array_equal(dense.contains(q_users, q_items), expected)
    np.testing.assert_array_equal(searched.contains(q_users, q_items), expected)
    assert dense._dense is not None and searched._dense is None
