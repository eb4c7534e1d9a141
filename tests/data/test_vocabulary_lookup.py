"""Large vocabularies are looked up through a sorted packed index (``Vocabulary.encode``): the
same ids as ``pc.index_in``, for unknown, null, long, non-ASCII and NUL-holding keys."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recforge.data import preprocessing
from recforge.data.preprocessing import OOV_ID, PADDING_ID, Vocabulary, _PackedIndex


def _reference(vocabulary: Vocabulary, keys: pa.Array) -> np.ndarray:
    """The ids by ``pc.index_in`` alone (the encoding below the size threshold)."""
    index = pc.index_in(keys, value_set=vocabulary.array)
    ids = pc.fill_null(index, OOV_ID - 2).to_numpy(zero_copy_only=False).astype(np.int64) + 2
    ids[keys.is_null().to_numpy(zero_copy_only=False)] = PADDING_ID
    return ids


@pytest.mark.parametrize("width", [8, 20])
def test_packed_lookup_gives_the_ids_of_index_in(monkeypatch, width):
    monkeypatch.setattr(preprocessing, "PACKED_MIN_VALUES", 1)
    rng = np.random.default_rng(width)
    values = sorted({f"{x:0{width}x}"[: rng.integers(1, width + 1)] for x in rng.integers(0, 2**62, 3000)})
    values += ["é", "ab", "ab c", "日本"]  # multi-byte UTF-8, a prefix of another value, a space
    vocabulary = Vocabulary(list(dict.fromkeys(values)))
    known = list(rng.choice(vocabulary.values, 500))
    tricky = ["a", "ab\x00", "ab ", "x" * 40, "é" * 3, "日", None, "zz-unknown"]  # prefixes, NUL, longer than any value
    keys = pa.array(known + tricky + known[:5], pa.string()).slice(3)  # a sliced array: offsets do not start at 0
    assert _PackedIndex.build(vocabulary.array) is not None
    np.testing.assert_array_equal(vocabulary.encode(keys), _reference(vocabulary, keys))
    assert vocabulary.encode(pa.array([], pa.string())).shape == (0,)


def test_values_the_index_cannot_hold_fall_back_to_index_in(monkeypatch):
    monkeypatch.setattr(preprocessing, "PACKED_MIN_VALUES", 1)
    for values in (["a", "b\x00c"], ["a", "y" * 33]):
        vocabulary = Vocabulary(values)
        assert _PackedIndex.build(vocabulary.array) is None
        keys = pa.array(["a", "b\x00c", "y" * 33, None, "q"])
        np.testing.assert_array_equal(vocabulary.encode(keys), _reference(vocabulary, keys))
