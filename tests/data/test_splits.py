import numpy as np

from recforge.data.splits import complement, holdout_one_per_user


def test_latest_interaction_is_held_out_with_deterministic_ties():
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([5, 7, 3, 1, 2, 9])
    times = np.array([10, 30, 30, 5, 4, 1])
    held = holdout_one_per_user(users, items, times)
    # user 0: items 7 and 3 tie at t=30 -> largest item id (7); user 1: t=5 -> item 1; user 2 has 1 row
    assert items[held].tolist() == [7, 1]
    assert users[held].tolist() == [0, 1]


def test_holdout_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 500)
    items = rng.permutation(500)
    times = rng.integers(0, 20, 500)  # many ties
    for ts, seed in ((times, None), (None, 7)):
        held = holdout_one_per_user(users, items, ts, seed=seed)
        perm = rng.permutation(500)
        held_p = holdout_one_per_user(users[perm], items[perm], None if ts is None else ts[perm], seed=seed)
        assert sorted(zip(users[held], items[held])) == sorted(zip(users[perm][held_p], items[perm][held_p]))


def test_random_holdout_changes_with_seed_and_complement():
    users = np.repeat(np.arange(50), 10)
    items = np.tile(np.arange(10), 50)
    a = holdout_one_per_user(users, items, seed=1)
    b = holdout_one_per_user(users, items, seed=2)
    assert len(a) == 50 and not np.array_equal(items[a], items[b])
    rest = complement(len(users), a)
    assert len(rest) == 450 and not np.isin(a, rest).any()
