import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.batches import iterate_batches, take_rows


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 40),
    width=st.integers(0, 3),
    m=st.integers(0, 60),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.float32, torch.float64, torch.bool]),
    seed=st.integers(0, 2**31 - 1),
)
def test_take_rows_equals_advanced_indexing(n, width, m, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    table = (torch.randint(0, 5, (n, width), generator=g) if width else torch.randint(0, 5, (n,), generator=g)).to(dtype)
    rows = torch.randint(0, n, (m,), generator=g)
    out = take_rows(table, rows)
    assert out.dtype == table.dtype and out.shape == table[rows].shape
    assert torch.equal(out, table[rows])


def test_take_rows_non_contiguous_and_bfloat16():
    table = torch.arange(24, dtype=torch.float32).reshape(6, 4)[:, ::2]  # a strided view
    rows = torch.tensor([5, 0, 0, 3])
    assert torch.equal(take_rows(table, rows), table[rows])
    half = table.to(torch.bfloat16)
    assert torch.equal(take_rows(half, rows), half[rows])


def test_take_rows_out_of_range_raises():
    with pytest.raises(IndexError):
        take_rows(torch.zeros(3, 2), torch.tensor([0, 3]))


def test_take_rows_result_does_not_alias_the_table():
    table = torch.zeros(4, 2)
    out = take_rows(table, torch.tensor([1, 2]))
    out += 1
    assert table.sum() == 0


def test_iterate_batches_is_a_permutation_of_rows_with_labels_attached():
    x = torch.arange(23).reshape(-1, 1).repeat(1, 2)
    y = torch.arange(23, dtype=torch.float32).reshape(-1, 1)
    batches = list(iterate_batches(x, y, 5, torch.Generator().manual_seed(3)))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    seen = torch.cat([b.sparse_features for b in batches])
    assert sorted(seen[:, 0].tolist()) == list(range(23))
    labels = torch.cat([b.labels for b in batches])
    assert np.array_equal(labels[:, 0].numpy(), seen[:, 0].numpy().astype(np.float32))
